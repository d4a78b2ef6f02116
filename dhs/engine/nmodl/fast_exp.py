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
bit for bit (checked on 6·10^6 seeded inputs and the edge cases; the suite checks 10^6),
but only where the C library really is that variant: another glibc, a CPU without FMA (glibc then
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
from numba.extending import intrinsic

__all__ = [
    "BOUND",
    "check_inputs",
    "edge_cases",
    "exp_table",
    "fast_exp",
    "fast_exp_array",
    "fast_exp_bounded",
    "fast_exp_matches_libm",
    "fast_exp_scalar",
    "libm_exp_array",
    "load_libm",
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


_FUNCTION = "dhs_fast_exp"
_BOUNDED = "dhs_fast_exp_bounded"
#: hoc_Exp's range: :func:`fast_exp_bounded` is exact for |x| <= BOUND and NaN.
BOUND = 700.0


class _Emitter:
    """Builds one internal, ``alwaysinline`` LLVM function ``double name(double)`` of the
    module, with helpers for glibc's arithmetic."""

    def __init__(self, module: llvm_ir.Module, name: str) -> None:
        self.double, self.int64 = llvm_ir.DoubleType(), llvm_ir.IntType(64)
        self.module = module
        self.function = llvm_ir.Function(
            module, llvm_ir.FunctionType(self.double, [self.double]), name
        )
        self.function.linkage = "internal"
        for attribute in ("alwaysinline", "readnone", "nounwind"):
            self.function.attributes.add(attribute)
        self.fma_function = module.declare_intrinsic(
            "llvm.fma", [self.double], llvm_ir.FunctionType(self.double, [self.double] * 3)
        )
        self.builder = llvm_ir.IRBuilder(self.function.append_basic_block("entry"))

    def table(self) -> llvm_ir.GlobalVariable:
        name = f"{_FUNCTION}_table"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        table_type = llvm_ir.ArrayType(self.int64, 2 * _N)
        table = llvm_ir.GlobalVariable(self.module, table_type, name)
        table.linkage = "internal"
        table.global_constant = True
        table.initializer = llvm_ir.Constant(table_type, [int(word) for word in _TABLE])
        return table

    def constant(self, value: float) -> llvm_ir.Constant:
        return llvm_ir.Constant(self.double, value)

    def integer(self, value: int) -> llvm_ir.Constant:
        return llvm_ir.Constant(self.int64, value)

    def fma(self, a, b, c):
        return self.builder.call(self.fma_function, [a, b, c])

    def bits(self, value):
        return self.builder.bitcast(value, self.int64)

    def as_double(self, value):
        return self.builder.bitcast(value, self.double)

    def reduce(self, x):
        """glibc's common path up to the last step: (abstop, ki, sbits, tmp), with
        exp(x) ~= scale * (1 + tmp), scale = asdouble(sbits)."""
        builder, constant, integer, fma = self.builder, self.constant, self.integer, self.fma
        abstop = builder.and_(builder.lshr(self.bits(x), integer(52)), integer(0x7FF))
        # x = k ln2/N + r with |r| <= ln2/2N: kd + Shift holds round(x N/ln2) in its low bits
        kd = fma(x, constant(_INV_LN2_N), constant(_SHIFT))
        ki = self.bits(kd)
        kd = builder.fsub(kd, constant(_SHIFT))
        r = fma(kd, constant(_NEG_LN2_LO_N), fma(kd, constant(_NEG_LN2_HI_N), x))
        # 2^(k/N) ~= scale * (1 + tail)
        table = self.table()
        index = builder.shl(builder.and_(ki, integer(_N - 1)), integer(1))
        tail_word = builder.load(builder.gep(table, [integer(0), index], inbounds=True))
        head_index = builder.add(index, integer(1))
        head_word = builder.load(builder.gep(table, [integer(0), head_index], inbounds=True))
        tail = self.as_double(tail_word)
        sbits = builder.add(head_word, builder.shl(ki, integer(52 - _TABLE_BITS)))
        # exp(x) = 2^(k/N) * exp(r) ~= scale + scale * (tail + exp(r) - 1)
        r2 = builder.fmul(r, r)
        tmp = fma(
            builder.fmul(r2, r2),
            fma(r, constant(_C5), constant(_C4)),
            fma(r2, fma(r, constant(_C3), constant(_C2)), builder.fadd(tail, r)),
        )
        return abstop, ki, sbits, tmp

    def scaled_down(self, sbits, tmp):
        """glibc's ``specialcase`` for k < 0 before its subnormal correction:
        (y, scale, scale * tmp) with scale = 2^1022 asdouble(sbits), y unfused."""
        builder = self.builder
        scale = self.as_double(builder.add(sbits, self.integer(1022 << 52)))
        scaled_tmp = builder.fmul(scale, tmp)
        return builder.fadd(scale, scaled_tmp), scale, scaled_tmp

    def safe(self, condition, sbits, tmp):
        """(sbits, tmp) where ``condition``, else those of scale = 1, tmp = 0. A vectorised
        loop computes the special cases in every lane and keeps them only where they
        apply; elsewhere they would make subnormals from ordinary inputs, each a
        microcode assist (measured: exp 2x slower over [-10, 10] than over [-1, 1])."""
        one_bits = self.integer(int(np.array([1.0]).view(np.int64)[0]))
        return (
            self.builder.select(condition, sbits, one_bits),
            self.builder.select(condition, tmp, self.constant(0.0)),
        )


def _define(module: llvm_ir.Module) -> llvm_ir.Function:
    """``dhs_fast_exp`` in ``module`` (defined once per module): an internal,
    ``alwaysinline`` LLVM function, so that LLVM, not Numba, inlines it at each call (Numba's
    own inlining re-types the body at every call site: 2.4x the compile time)."""
    existing = module.globals.get(_FUNCTION)
    if existing is not None:
        return existing
    emit = _Emitter(module, _FUNCTION)
    builder, constant, integer = emit.builder, emit.constant, emit.integer
    (x,) = emit.function.args
    abstop, ki, sbits, tmp = emit.reduce(x)
    rare = emit.function.append_basic_block("rare")
    common = emit.function.append_basic_block("common")
    tiny = builder.icmp_unsigned("<", abstop, integer(0x3C9))  # |x| < 2^-54
    large = builder.icmp_unsigned(">=", abstop, integer(0x408))  # |x| >= 512, inf, NaN
    builder.cbranch(builder.or_(tiny, large), rare, common)

    builder.position_at_end(common)
    scale = emit.as_double(sbits)
    builder.ret(emit.fma(scale, tmp, scale))

    # glibc's rare cases, each computed and the right one selected: straight-line code,
    # which a vectorised loop runs for every lane and a scalar one skips
    builder.position_at_end(rare)
    sbits, tmp = emit.safe(large, sbits, tmp)
    # specialcase, k > 0: the exponent of scale might have overflowed by <= 460
    scale_up = emit.as_double(builder.sub(sbits, integer(1009 << 52)))
    up = builder.fmul(constant(_TWO_POW_1009), emit.fma(scale_up, tmp, scale_up))
    # specialcase, k < 0: scale * tmp has two uses, so y = scale + scale * tmp is not
    # fused; a y < 1 (a subnormal result) is rounded once by glibc's hi/lo correction
    y, scale, scaled_tmp = emit.scaled_down(sbits, tmp)
    lo = builder.fadd(builder.fsub(scale, y), scaled_tmp)
    hi = builder.fadd(constant(1.0), y)
    lo = builder.fadd(builder.fadd(builder.fsub(constant(1.0), hi), y), lo)
    corrected = builder.fsub(builder.fadd(hi, lo), constant(1.0))
    is_zero = builder.fcmp_ordered("==", corrected, constant(0.0))
    corrected = builder.select(is_zero, constant(0.0), corrected)
    below_one = builder.fcmp_ordered("<", y, constant(1.0))
    down = builder.fmul(constant(_TWO_POW_MINUS_1022), builder.select(below_one, corrected, y))
    k_positive = builder.icmp_unsigned("==", builder.and_(ki, integer(0x80000000)), integer(0))
    result = builder.select(k_positive, up, down)
    # |x| >= 1024, inf, NaN: __math_uflow (0x1p-767 * 0x1p-767 = 0) for x < 0 and -inf;
    # else __math_oflow (0x1p769 * 0x1p769 = inf) or, for inf and NaN, 1.0 + x, all of
    # which x * inf equals (x's NaN, quieted, as 1.0 + x gives it)
    negative = builder.fcmp_ordered("<", x, constant(0.0))
    beyond = builder.select(negative, constant(0.0), builder.fmul(x, constant(np.inf)))
    huge = builder.icmp_unsigned(">=", abstop, integer(0x409))
    result = builder.select(huge, beyond, result)
    builder.ret(builder.select(tiny, builder.fadd(constant(1.0), x), result))
    return emit.function


def _define_bounded(module: llvm_ir.Module) -> llvm_ir.Function:
    """``dhs_fast_exp_bounded``: glibc's ``exp`` for |x| <= 700 (hoc_Exp's range) and
    NaN, without a branch. There glibc's cases reduce to three:

    * |x| < 2^-54: glibc returns 1.0 + x, which the common path gives too (k = 0,
      r = x, tmp rounds to x, fma(1, x, 1) = 1 + x);
    * 512 <= x <= 700: ``specialcase`` with k > 0 scales by 2^-1009 and back, exact
      powers of two around one fused rounding of scale (1 + tmp): the common path's
      fma gives the same double (the result is normal);
    * -700 <= x <= -512: ``specialcase`` with k < 0, y = scale' + scale' tmp unfused with
      scale' = 2^1022 scale; y >= 1 there (exp(-700) 2^1022 > 4e3), so glibc returns
      2^-1022 y, exact.

    So a vectorised loop runs a handful of selects instead of the general rare path."""
    existing = module.globals.get(_BOUNDED)
    if existing is not None:
        return existing
    emit = _Emitter(module, _BOUNDED)
    builder, constant = emit.builder, emit.constant
    (x,) = emit.function.args
    _abstop, _ki, sbits, tmp = emit.reduce(x)
    scale = emit.as_double(sbits)
    fused = emit.fma(scale, tmp, scale)
    negative_special = builder.fcmp_ordered("<=", x, constant(-512.0))
    down_sbits, down_tmp = emit.safe(negative_special, sbits, tmp)
    y, _scale, _scaled = emit.scaled_down(down_sbits, down_tmp)
    down = builder.fmul(constant(_TWO_POW_MINUS_1022), y)
    result = builder.select(negative_special, down, fused)
    # NaN: glibc returns 1.0 + x (x's NaN, quieted)
    is_nan = builder.fcmp_unordered("uno", x, x)
    builder.ret(builder.select(is_nan, builder.fadd(constant(1.0), x), result))
    return emit.function


@intrinsic
def fast_exp(typingctx, x):
    """``exp(x)`` as glibc's ``__exp_fma`` computes it, bit for bit, for Numba code.

    Straight-line code around one table lookup, with one branch, to glibc's rare cases
    (|x| < 2^-54 or ≥ 512, inf, NaN); LLVM inlines it at every call and can vectorise the
    loop around it. :func:`fast_exp_scalar` is the same for Python callers.
    """

    def codegen(context, builder, sig, arguments):
        value = context.cast(builder, arguments[0], sig.args[0], types.float64)
        return builder.call(_define(builder.module), [value])

    return types.float64(x), codegen


@intrinsic
def fast_exp_bounded(typingctx, x):
    """:func:`fast_exp` for |x| <= :data:`BOUND` or NaN (``hoc_Exp`` clamps its argument
    there), without a branch: fewer operations in a vectorised loop. Other x: undefined."""

    def codegen(context, builder, sig, arguments):
        value = context.cast(builder, arguments[0], sig.args[0], types.float64)
        return builder.call(_define_bounded(builder.module), [value])

    return types.float64(x), codegen


@numba.njit(cache=True, error_model="numpy")
def fast_exp_scalar(x):
    """:func:`fast_exp`, callable from Python."""
    return fast_exp(x)


@numba.njit(cache=True, error_model="numpy")
def _fast_exp_array(x, out):
    for i in range(x.size):
        out[i] = fast_exp(x[i])


@numba.njit(cache=True, error_model="numpy")
def _fast_exp_bounded_array(x, out):
    for i in range(x.size):
        out[i] = fast_exp_bounded(x[i])


def load_libm() -> ctypes.CDLL:
    """The C library's math functions (the runtime's opaque calls and the self-check)."""
    name = ctypes.util.find_library("m")
    try:
        return ctypes.CDLL(name) if name else ctypes.CDLL(None)
    except OSError:  # pragma: no cover - every supported platform has a libm
        return ctypes.CDLL(None)


_LIBM_EXP = load_libm().exp
_LIBM_EXP.argtypes = [ctypes.c_double]
_LIBM_EXP.restype = ctypes.c_double


def libm_exp_array(x: np.ndarray) -> np.ndarray:
    """The C library's ``exp`` of each element (the function the runtime calls)."""
    return np.fromiter((_LIBM_EXP(value) for value in x.tolist()), np.float64, x.size)


def fast_exp_array(x: np.ndarray, bounded: bool = False) -> np.ndarray:
    """:func:`fast_exp` (or :func:`fast_exp_bounded`) of each element, in a loop that LLVM
    vectorises."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    (_fast_exp_bounded_array if bounded else _fast_exp_array)(x, out)
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
    subnormal-result range, over 500 ≤ |x| ≤ 700, and doubles with random bits; then
    :func:`edge_cases`."""
    rng = np.random.default_rng(seed)
    part = max(n // 8, 1)
    return np.concatenate(
        [
            rng.uniform(-750.0, 750.0, part),
            rng.uniform(-100.0, 100.0, part),
            rng.uniform(-1.0, 1.0, part),
            rng.uniform(-1.0, 1.0, part) * float.fromhex("0x1p-50"),
            rng.uniform(-746.0, -700.0, part),
            rng.uniform(-BOUND, -500.0, part),
            rng.uniform(500.0, BOUND, part),
            rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, part).view(np.float64),
            edge_cases(),
        ]
    )


def mismatches(x: np.ndarray, bounded: bool = False) -> np.ndarray:
    """The inputs where :func:`fast_exp` (``bounded``: :func:`fast_exp_bounded`, on the
    inputs in its domain) and the C library's ``exp`` differ in any bit (NaN compared by
    its bits)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if bounded:
        x = x[np.isnan(x) | (np.abs(x) <= BOUND)]
    ours = fast_exp_array(x, bounded).view(np.int64)
    theirs = libm_exp_array(x).view(np.int64)
    return x[ours != theirs]


def fast_exp_matches_libm(n: int = 100_000) -> bool:
    """Whether :func:`fast_exp` and :func:`fast_exp_bounded` equal the C library's ``exp``
    on ``n`` seeded inputs and the edge cases (False too if they cannot be compiled)."""
    try:
        inputs = check_inputs(n)
        return mismatches(inputs).size == 0 and mismatches(inputs, bounded=True).size == 0
    except Exception:  # a failed build or run means: keep libm
        return False
