"""The functions that generated mechanism code calls, built for the CPU.

Translated ``.mod`` code calls only the names in :data:`CPU_FUNCTIONS` (``hoc_exp``,
``power``, ``log``, ...). On the CPU they are the C library's own functions, called
opaquely: LLVM would otherwise rewrite ``pow(x, 2.0)`` as ``x * x`` (which differs
from glibc's ``pow`` in about 0.1 % of cases) or vectorise ``exp`` with another
library, and the results would no longer be NEURON's, whose mechanisms call these
functions through ``hoc_Exp``/``hoc_pow``. The exception is ``exp``, the most called:
where :mod:`dhs.engine.nmodl.fast_exp` (glibc's own algorithm, which LLVM inlines and
vectorises) passes its self-check against the C library's ``exp`` at import, it replaces
the opaque call (:data:`EXP_IMPLEMENTATION` says which is in use).
:mod:`dhs.engine.nmodl.runtime_cuda` has the device versions of the same names.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import llvmlite.binding as llvm_binding
import llvmlite.ir as llvm_ir
import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .fast_exp import fast_exp, fast_exp_bounded, fast_exp_matches_libm, load_libm

__all__ = [
    "CPU_FUNCTIONS",
    "acos",
    "asin",
    "atan",
    "atan2",
    "ceil",
    "cos",
    "cosh",
    "erf",
    "erfc",
    "fabs",
    "floor",
    "fmod",
    "hoc_exp",
    "jit",
    "log",
    "log10",
    "nrn_ghk",
    "nrn_nernst",
    "power",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
]


_LIBM = load_libm()


def _opaque(name: str, arity: int):
    """An intrinsic calling libm's ``name`` through a symbol LLVM does not recognise."""
    symbol = f"dhs_libm_{name}"
    address = ctypes.cast(getattr(_LIBM, name), ctypes.c_void_p).value
    llvm_binding.add_symbol(symbol, address)
    double = llvm_ir.DoubleType()
    function_type = llvm_ir.FunctionType(double, [double] * arity)

    def typer(typingctx, *args):
        signature = types.float64(*([types.float64] * arity))

        def codegen(context, builder, sig, arguments):
            arguments = [
                context.cast(builder, value, type_, types.float64)
                for value, type_ in zip(arguments, sig.args, strict=True)
            ]
            function = cgutils.get_or_insert_function(builder.module, function_type, symbol)
            # A pure function to LLVM (which still cannot replace it: it does not know the
            # name), so calls with loop-invariant arguments, such as a channel's
            # pow(q10, (celsius - 22)/10), are hoisted out of the loops and shared.
            for attribute in ("readnone", "nounwind"):
                function.attributes.add(attribute)
            return builder.call(function, arguments)

        return signature, codegen

    if arity == 1:

        def unary(typingctx, x):
            return typer(typingctx, x)

        unary.__name__ = f"libm_{name}"
        return intrinsic(unary)

    def binary(typingctx, x, y):
        return typer(typingctx, x, y)

    binary.__name__ = f"libm_{name}"
    return intrinsic(binary)


_libm_exp = _opaque("exp", 1)
_pow = _opaque("pow", 2)
_log = _opaque("log", 1)
_log10 = _opaque("log10", 1)
_sin = _opaque("sin", 1)
_cos = _opaque("cos", 1)
_tan = _opaque("tan", 1)
_asin = _opaque("asin", 1)
_acos = _opaque("acos", 1)
_atan = _opaque("atan", 1)
_atan2 = _opaque("atan2", 2)
_sinh = _opaque("sinh", 1)
_cosh = _opaque("cosh", 1)
_tanh = _opaque("tanh", 1)
_erf = _opaque("erf", 1)
_erfc = _opaque("erfc", 1)
_fmod = _opaque("fmod", 2)

#: Which ``exp`` the CPU build calls: :func:`~dhs.engine.nmodl.fast_exp.fast_exp` (glibc's
#: algorithm, inlined and vectorisable) where it equals this C library's ``exp`` on the
#: self-check's inputs, else the library's own, opaquely. Either gives NEURON's numbers.
if fast_exp_matches_libm():
    _exp = fast_exp
    _exp_bounded = fast_exp_bounded  # hoc_exp's clamped argument: a branch-free variant
    EXP_IMPLEMENTATION = "vectorisable glibc algorithm"
else:
    _exp = _exp_bounded = _libm_exp
    EXP_IMPLEMENTATION = "libm"

_EXP_700 = math.exp(700.0)


def jit(function):
    """The CPU build of a generated function: inlined into its callers, cached."""
    return numba.njit(inline="always", cache=True, error_model="numpy")(function)


@jit
def hoc_exp(x):
    """NEURON's ``hoc_Exp``: 0 below -700, ``exp(700)`` above 700, else ``exp``."""
    # exp is evaluated for every x (clamped, so that it cannot overflow) and its value
    # then replaced: selects, not a branch around the call, so that a loop of the inlined
    # fast exp has no conditional table load and vectorises.
    clamped = x
    if x < -700.0:
        clamped = -700.0
    if x > 700.0:
        clamped = 700.0
    y = _exp_bounded(clamped)
    if x < -700.0:
        y = 0.0
    if x > 700.0:
        y = _EXP_700
    return y


@jit
def power(x, y):
    """NMODL's ``^`` and ``pow`` (``hoc_pow``): the C library's ``pow``."""
    return _pow(x, y)


@jit
def log(x):
    return _log(x)


@jit
def log10(x):
    return _log10(x)


@jit
def sqrt(x):
    return math.sqrt(x)  # correctly rounded everywhere


@jit
def fabs(x):
    return math.fabs(x)


@jit
def floor(x):
    return math.floor(x)


@jit
def ceil(x):
    return math.ceil(x)


@jit
def sin(x):
    return _sin(x)


@jit
def cos(x):
    return _cos(x)


@jit
def tan(x):
    return _tan(x)


@jit
def asin(x):
    return _asin(x)


@jit
def acos(x):
    return _acos(x)


@jit
def atan(x):
    return _atan(x)


@jit
def atan2(y, x):
    return _atan2(y, x)


@jit
def sinh(x):
    return _sinh(x)


@jit
def cosh(x):
    return _cosh(x)


@jit
def tanh(x):
    return _tanh(x)


@jit
def erf(x):
    return _erf(x)


@jit
def erfc(x):
    return _erfc(x)


@jit
def fmod(x, y):
    return _fmod(x, y)


_FARADAY = float.fromhex("0x1.78e555060882cp+16")  # eion.cpp: _faraday_codata2018
_GAS_CONSTANT = float.fromhex("0x1.0a1013e8990bep+3")  # _gasconstant_codata2018


@jit
def _efun(x):
    if math.fabs(x) < 1e-4:
        return 1.0 - x / 2.0
    return x / (_exp(x) - 1.0)


@jit
def nrn_ghk(v, ci, co, z, celsius):
    """NEURON's ``nrn_ghk`` (eion.cpp): the GHK current-density factor, mA/cm2 per
    (cm/s)."""
    ktf = 1000.0 * _GAS_CONSTANT * (celsius + 273.15) / _FARADAY
    temp = z * v / ktf
    eco = co * _efun(temp)
    eci = ci * _efun(-temp)
    return 0.001 * z * _FARADAY * (eci - eco)


@jit
def nrn_nernst(ci, co, z, celsius):
    """NEURON's ``nrn_nernst`` (eion.cpp): the reversal potential in mV."""
    if z == 0.0:
        return 0.0
    if ci <= 0.0:
        return 1e6
    if co <= 0.0:
        return -1e6
    ktf = 1000.0 * _GAS_CONSTANT * (celsius + 273.15) / _FARADAY
    return ktf / z * _log(co / ci)


#: NMODL's built-in functions by their NMODL name, as generated code calls them.
CPU_FUNCTIONS = {
    "hoc_exp": hoc_exp,
    "power": power,
    "log": log,
    "log10": log10,
    "sqrt": sqrt,
    "fabs": fabs,
    "floor": floor,
    "ceil": ceil,
    "sin": sin,
    "cos": cos,
    "tan": tan,
    "asin": asin,
    "acos": acos,
    "atan": atan,
    "atan2": atan2,
    "sinh": sinh,
    "cosh": cosh,
    "tanh": tanh,
    "erf": erf,
    "erfc": erfc,
    "fmod": fmod,
    "nrn_ghk": nrn_ghk,
    "nrn_nernst": nrn_nernst,
}
