"""glibc's ``exp``, operation for operation, in code that LLVM can inline and vectorise.

NEURON's mechanisms call the C library's ``exp``. On x86_64, glibc ≥ 2.28 computes it
with the algorithm of ARM's optimized-routines (``sysdeps/ieee754/dbl-64/e_exp.c``,
table in ``e_exp_data.c``) and, on CPUs with FMA and AVX2, dispatches through an IFUNC
to ``__exp_fma``: the same C compiled with ``-mfma -mavx2``, where GCC contracts each
``a * b + c`` whose product has no other use into one fused multiply-add. This module
repeats that variant exactly: the same constants, the same 2^(k/128) table (computed
here to 100 digits), the same operations in the same order, and an ``llvm.fma.f64``
wherever ``__exp_fma`` has a ``vfmadd`` (read off its disassembly in glibc 2.36):

* ``kd = fma(x, InvLn2N, Shift)``; ``ki = bits(kd)``; ``kd -= Shift``
* ``r = fma(kd, NegLn2loN, fma(kd, NegLn2hiN, x))``
* ``tmp = fma(r2 * r2, fma(r, C5, C4), fma(r2, fma(r, C3, C2), tail + r))``, ``r2 = r * r``
* ``exp(x) = fma(scale, tmp, scale)``

and, for 512 ≤ |x| < 1024, glibc's ``specialcase`` (``scale * tmp`` has two uses there,
so its ``y = scale + scale * tmp`` is *not* fused); |x| < 2^-54, |x| ≥ 1024, inf and NaN
return what glibc returns (``1.0 + x``, 0, inf, x's NaN quieted). The result equals glibc's
bit for bit for every input (checked on 10^8 random inputs and the edge cases), but only
where the C library really is that variant: another glibc, a CPU without FMA (glibc then
runs an unfused build) or another libm may differ in the last bit.
:func:`fast_exp_matches_libm` checks, and the runtime uses :func:`fast_exp` only when it
passes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import decimal

import llvmlite.ir as llvm_ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "check_inputs",
    "edge_cases",
    "exp_table",
    "fast_exp",
    "fast_exp_array",
    "fast_exp_matches_libm",
    "libm_exp_array",
    "mismatches",
]

#: log2(N) of glibc's ``EXP_TABLE_BITS``: the table holds 2^(k/N) for k in [0, N).
_TABLE_BITS = 7
_N = 1 << _TABLE_BITS

# __exp_data (e_exp_data.c): N/ln2, -ln2/N split in two, the polynomial, the shift.
_INV_LN2_N = float.fromhex("0x1.71547652b82fep0") * _N
_NEG_LN2_HI_N = float.fromhex("-0x1.62e42fefa0000p-8")
_NEG_LN2_LO_N = float.fromhex("-0x1.cf79abc9e3b3ap-47")
_C2 = float.fromhex("0x1.ffffffffffdbdp-2")
_C3 = float.fromhex("0x1.555555555543cp-3")
_C4 = float.fromhex("0x1.55555cf172b91p-5")
_C5 = float.fromhex("0x1.1111167a4d017p-7")
_SHIFT = float.fromhex("0x1.8p52")
_TWO_POW_1009 = float.fromhex("0x1p1009")
_TWO_POW_MINUS_1022 = float.fromhex("0x1p-1022")


def exp_table() -> np.ndarray:
    """glibc's ``__exp_data.tab``, computed: 2N 64-bit words, as ``int64``.

    For k in [0, N), with ``H`` the double nearest 2^(k/N) and ``T`` the double nearest
    (2^(k/N) - H)/H: word 2k is the bits of ``T`` and word 2k+1 the bits of ``H`` minus
    ``k << 45`` (so that adding ``ki << 45`` puts the exponent of 2^(ki/N) back).
    """
    context = decimal.Context(prec=100)
    words = []
    for k in range(_N):
        exact = context.power(decimal.Decimal(2), context.divide(k, _N))
        head = float(exact)
        head_exact = decimal.Decimal(head)  # a double is a finite decimal: exact
        tail = float(context.divide(context.subtract(exact, head_exact), head_exact))
        head_bits = int(np.array([head]).view(np.int64)[0])
        words += [int(np.array([tail]).view(np.int64)[0]), head_bits - (k << 45)]
    return np.array(words, dtype=np.int64)


_TABLE = exp_table()


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding: ``llvm.fma.f64`` (``vfmadd`` on FMA CPUs)."""
    signature = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, sig, arguments):
        double = llvm_ir.DoubleType()
        function = cgutils.get_or_insert_function(
            builder.module, llvm_ir.FunctionType(double, [double] * 3), "llvm.fma.f64"
        )
        values = [
            context.cast(builder, value, type_, types.float64)
            for value, type_ in zip(arguments, sig.args, strict=True)
        ]
        return builder.call(function, values)

    return signature, codegen


@intrinsic
def _bits(typingctx, x):
    """The bits of a double, as ``int64``."""

    def codegen(context, builder, sig, arguments):
        return builder.bitcast(arguments[0], llvm_ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _double(typingctx, i):
    """The double whose bits are the ``int64`` ``i``."""

    def codegen(context, builder, sig, arguments):
        return builder.bitcast(arguments[0], llvm_ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _select(typingctx, condition, if_true, if_false):
    """``if_true if condition else if_false`` as one LLVM ``select``: no branch."""

    def codegen(context, builder, sig, arguments):
        condition, if_true, if_false = arguments
        if_true = context.cast(builder, if_true, sig.args[1], types.float64)
        if_false = context.cast(builder, if_false, sig.args[2], types.float64)
        return builder.select(condition, if_true, if_false)

    return types.float64(types.boolean, if_true, if_false), codegen


@numba.njit(inline="always", cache=True, error_model="numpy")
def _special(x, abstop, tmp, sbits, ki):
    """glibc's rare cases, each computed and the right one selected: straight-line code,
    which a vectorised loop runs for every lane and a scalar one skips."""
    # specialcase, k > 0: the exponent of scale might have overflowed by <= 460
    scale_up = _double(sbits - (1009 << 52))
    up = _TWO_POW_1009 * _fma(scale_up, tmp, scale_up)
    # specialcase, k < 0: scale * tmp has two uses, so y = scale + scale * tmp is not
    # fused; a y < 1 (a subnormal result) is rounded once by glibc's hi/lo correction
    scale = _double(sbits + (1022 << 52))
    scaled_tmp = scale * tmp
    y = scale + scaled_tmp
    lo = scale - y + scaled_tmp
    hi = 1.0 + y
    lo = 1.0 - hi + y + lo
    corrected = (hi + lo) - 1.0
    corrected = _select(corrected == 0.0, 0.0, corrected)
    down = _TWO_POW_MINUS_1022 * _select(y < 1.0, corrected, y)
    result = _select((ki & 0x80000000) == 0, up, down)
    # |x| >= 1024, inf, NaN: __math_uflow (0x1p-767 * 0x1p-767 = 0) for x < 0 and -inf;
    # else __math_oflow (0x1p769 * 0x1p769 = inf) or, for inf and NaN, 1.0 + x, all of
    # which x * inf equals (x's NaN, quieted, as 1.0 + x gives it)
    result = _select(abstop >= 0x409, _select(x < 0.0, 0.0, x * np.inf), result)
    return _select(abstop < 0x3C9, 1.0 + x, result)  # |x| < 2^-54


@numba.njit(inline="always", cache=True, error_model="numpy")
def fast_exp(x):
    """``exp(x)`` as glibc's ``__exp_fma`` computes it, bit for bit.

    Straight-line code around one table lookup, with one branch, to glibc's rare cases
    (|x| < 2^-54 or ≥ 512, inf, NaN). Numba inlines it at every call site
    (``inline="always"``): a call to a function compiled on its own stays a call, which
    keeps its loop scalar (measured: the L5PC kernels called it at 24 sites).
    """
    ix = _bits(x)
    abstop = (ix >> 52) & 0x7FF
    # x = k ln2/N + r with |r| <= ln2/2N: kd + Shift holds round(x N/ln2) in its low bits
    kd = _fma(x, _INV_LN2_N, _SHIFT)
    ki = _bits(kd)
    kd = kd - _SHIFT
    r = _fma(kd, _NEG_LN2_LO_N, _fma(kd, _NEG_LN2_HI_N, x))
    # 2^(k/N) ~= scale * (1 + tail)
    index = 2 * (ki & (_N - 1))
    tail = _double(_TABLE[index])
    sbits = _TABLE[index + 1] + (ki << (52 - _TABLE_BITS))
    # exp(x) = 2^(k/N) * exp(r) ~= scale + scale * (tail + exp(r) - 1)
    r2 = r * r
    tmp = _fma(r2 * r2, _fma(r, _C5, _C4), _fma(r2, _fma(r, _C3, _C2), tail + r))
    if (abstop < 0x3C9) | (abstop >= 0x408):
        return _special(x, abstop, tmp, sbits, ki)
    scale = _double(sbits)
    return _fma(scale, tmp, scale)


@numba.njit(cache=True, error_model="numpy")
def _fast_exp_array(x, out):
    for i in range(x.size):
        out[i] = fast_exp(x[i])


def _libm() -> ctypes.CDLL:
    name = ctypes.util.find_library("m")
    try:
        return ctypes.CDLL(name) if name else ctypes.CDLL(None)
    except OSError:  # pragma: no cover - every supported platform has a libm
        return ctypes.CDLL(None)


_LIBM_EXP = _libm().exp
_LIBM_EXP.argtypes = [ctypes.c_double]
_LIBM_EXP.restype = ctypes.c_double


def libm_exp_array(x: np.ndarray) -> np.ndarray:
    """The C library's ``exp`` of each element (the function the runtime calls)."""
    return np.fromiter((_LIBM_EXP(value) for value in x.tolist()), np.float64, x.size)


def fast_exp_array(x: np.ndarray) -> np.ndarray:
    """:func:`fast_exp` of each element, in a loop that LLVM vectorises."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _fast_exp_array(x, out)
    return out


def edge_cases() -> np.ndarray:
    """Inputs at the borders of glibc's cases and of the double range."""
    tiny = float.fromhex("0x1p-54")
    values = [
        0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
        tiny, -tiny, 1.0, -1.0, 0.5, -0.5, 2.0, 10.0, -10.0,
        512.0, -512.0, 1024.0, -1024.0, 700.0, -700.0, 708.0, -708.0,
        709.782712893384, 709.7827128933841, -708.3964185322641, -708.39641853226,
        -745.1332191019411, -745.1332191019412, -744.44007192138126, -740.0, -730.0,
        1e308, -1e308, np.finfo(np.float64).max, -np.finfo(np.float64).max,
    ]  # fmt: skip
    finite = np.array([value for value in values if np.isfinite(value)])
    with np.errstate(over="ignore"):
        around = [np.nextafter(finite, np.inf), np.nextafter(finite, -np.inf)]
    # multiples of ln2/N: at integers r is near 0; at half-integers z = x N/ln2 rounds
    # either way, so only the fused kd = fma(x, N/ln2, Shift) picks glibc's k
    k = np.arange(-137_000, 131_000, 97, dtype=np.float64)
    multiples = np.concatenate([k, k + 0.5]) * (np.log(2.0) / _N)
    steps = [multiples]
    for direction in (np.inf, -np.inf):
        step = multiples
        for _ in range(3):
            step = np.nextafter(step, direction)
            steps.append(step)
    return np.concatenate([values, *around, *steps, [tiny * 0.999]])


def check_inputs(n: int, seed: int = 20240611) -> np.ndarray:
    """``n`` seeded inputs: uniform over [-750, 750], over |x| ≤ 1, ≤ 2^-50, over the
    subnormal-result range, and doubles with random bits; then :func:`edge_cases`."""
    rng = np.random.default_rng(seed)
    part = max(n // 6, 1)
    return np.concatenate(
        [
            rng.uniform(-750.0, 750.0, part),
            rng.uniform(-100.0, 100.0, part),
            rng.uniform(-1.0, 1.0, part),
            rng.uniform(-1.0, 1.0, part) * float.fromhex("0x1p-50"),
            rng.uniform(-746.0, -700.0, part),
            rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, part).view(np.float64),
            edge_cases(),
        ]
    )


def mismatches(x: np.ndarray) -> np.ndarray:
    """The inputs where :func:`fast_exp` and the C library's ``exp`` differ in any bit
    (NaN compared by its bits)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    ours = fast_exp_array(x).view(np.int64)
    theirs = libm_exp_array(x).view(np.int64)
    return x[ours != theirs]


def fast_exp_matches_libm(n: int = 100_000) -> bool:
    """Whether :func:`fast_exp` equals the C library's ``exp`` on ``n`` seeded inputs and
    the edge cases (False too if it cannot be compiled)."""
    try:
        return mismatches(check_inputs(n)).size == 0
    except Exception:  # a failed build or run means: keep libm
        return False
