"""dhs.engine.nmodl.fast_exp: glibc's ``exp`` bit for bit, inlined and vectorised.

The fast ``exp`` must equal the C library's (the one NEURON's mechanisms call) in every
bit, or not be used at all: the runtime binds it only after its self-check passes, so
on a machine with another ``exp`` the equality tests are skipped, not failed.
"""

from __future__ import annotations

import math
import platform
import re
import subprocess
import sys

import numba
import numpy as np
import pytest

from dhs.engine.nmodl import fast_exp as fe
from dhs.engine.nmodl import runtime

FAST = runtime.EXP_IMPLEMENTATION == "vectorisable glibc algorithm"
needs_fast = pytest.mark.skipif(
    not FAST, reason="this C library's exp is not the glibc variant fast_exp reproduces"
)


def _cpu_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("flags") and flag in line.split() for line in cpuinfo)
    except OSError:
        return False


def _bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)


# --------------------------------------------------------------------------- the runtime
def test_runtime_reports_the_exp_in_use():
    assert runtime.EXP_IMPLEMENTATION in ("vectorisable glibc algorithm", "libm")
    assert (runtime._exp is fe.fast_exp) == FAST
    assert (runtime._exp is runtime._libm_exp) == (not FAST)
    assert fe.fast_exp_matches_libm() == FAST


def test_runtime_keeps_libm_when_the_self_check_fails():
    code = (
        "import dhs.engine.nmodl.fast_exp as fe\n"
        "fe.fast_exp_matches_libm = lambda n=0: False\n"
        "from dhs.engine.nmodl import runtime\n"
        "assert runtime.EXP_IMPLEMENTATION == 'libm', runtime.EXP_IMPLEMENTATION\n"
        "assert runtime._exp is runtime._libm_exp\n"
        "import math\n"
        "assert runtime.hoc_exp(1.5) == math.exp(1.5)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_hoc_exp_keeps_neurons_limits():
    assert runtime.hoc_exp(-700.5) == 0.0
    assert runtime.hoc_exp(-1e308) == 0.0
    assert runtime.hoc_exp(700.5) == math.exp(700.0)
    assert runtime.hoc_exp(math.inf) == math.exp(700.0)
    assert runtime.hoc_exp(-700.0) == math.exp(-700.0)
    assert runtime.hoc_exp(700.0) == math.exp(700.0)
    assert math.isnan(runtime.hoc_exp(math.nan))
    for x in (-123.456, -1.0, 0.0, 1e-300, 0.5, 3.0, 99.9):
        assert runtime.hoc_exp(x) == math.exp(x)


# --------------------------------------------------------------------------- the table
def test_table_is_exact():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 300
    table = fe.exp_table()
    for k in range(128):
        exact = mpmath.power(2, mpmath.mpf(k) / 128)
        head = float(exact)
        tail = float((exact - head) / head)
        expected_head = int(np.array([head]).view(np.int64)[0]) - (k << 45)
        assert table[2 * k] == np.array([tail]).view(np.int64)[0], k
        assert table[2 * k + 1] == expected_head, k


# --------------------------------------------------------------------------- bit equality
@needs_fast
def test_equals_libm_on_a_million_random_inputs():
    x = fe.check_inputs(1_200_000, seed=31415)
    assert x.size >= 1_000_000
    bad = fe.mismatches(x)
    assert bad.size == 0, f"{bad.size} mismatches, e.g. {bad[:5].tolist()}"


@needs_fast
def test_equals_libm_at_the_edges():
    x = fe.edge_cases()
    ours = fe.fast_exp_array(x)
    theirs = fe.libm_exp_array(x)
    np.testing.assert_array_equal(_bits(ours), _bits(theirs))
    assert np.isnan(fe.fast_exp_array(np.array([np.nan]))[0])
    assert fe.fast_exp_array(np.array([-np.inf]))[0] == 0.0
    assert fe.fast_exp_array(np.array([np.inf]))[0] == np.inf
    assert fe.fast_exp_array(np.array([710.0]))[0] == np.inf
    assert fe.fast_exp_array(np.array([-746.0]))[0] == 0.0
    subnormal = fe.fast_exp_array(np.array([-740.0]))[0]
    assert 0.0 < subnormal < 2.2250738585072014e-308


@needs_fast
def test_bounded_variant_equals_libm_on_hoc_exps_range():
    """fast_exp_bounded (hoc_exp's, no branch) on |x| <= 700 and NaN: random inputs,
    glibc's case borders (2^-54, 512) and the range's ends."""
    x = fe.check_inputs(1_200_000, seed=4242)
    inside = x[np.isnan(x) | (np.abs(x) <= fe.BOUND)]
    assert inside.size >= 800_000
    tiny = float.fromhex("0x1p-54")
    borders = np.array([0.0, -0.0, 5e-324, -5e-324, tiny, -tiny, 512.0, -512.0, 700.0, -700.0])
    with np.errstate(over="ignore"):
        around = np.concatenate([np.nextafter(borders, np.inf), np.nextafter(borders, -np.inf)])
    dense = np.linspace(-fe.BOUND, fe.BOUND, 200_001)
    for values in (inside, np.concatenate([borders, around, [np.nan, -np.nan]]), dense):
        bad = fe.mismatches(values, bounded=True)
        assert bad.size == 0, f"{bad.size} mismatches, e.g. {bad[:5].tolist()}"


@needs_fast
def test_scalar_calls_equal_libm():
    """The function outside a vectorised loop (as most kernels call it)."""
    x = fe.check_inputs(3_000, seed=2718)
    ours = np.array([fe.fast_exp_scalar(value) for value in x.tolist()])
    np.testing.assert_array_equal(_bits(ours), _bits(fe.libm_exp_array(x)))


@needs_fast
def test_hoc_exp_equals_libm_in_a_loop():
    @numba.njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.size):
            out[i] = runtime.hoc_exp(x[i])

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-720.0, 720.0, 200_000), [-700.0, 700.0, np.nan]])
    out = np.empty_like(x)
    loop(x, out)
    expected = np.where(x < -700.0, 0.0, np.where(x > 700.0, math.exp(700.0), fe.libm_exp_array(x)))
    np.testing.assert_array_equal(_bits(out), _bits(expected))


# --------------------------------------------------------------------------- vectorisation
def _packed(asm: str) -> list[str]:
    return re.findall(r"\b(v?[a-z0-9]+pd)\b", asm)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 assembly")
def test_a_loop_of_fast_exp_is_vectorised():
    @numba.njit(error_model="numpy")
    def plain(x, out):
        for i in range(x.size):
            out[i] = fe.fast_exp(x[i])

    @numba.njit(error_model="numpy")
    def through_hoc_exp(x, out):
        for i in range(x.size):
            out[i] = 0.5 * runtime.hoc_exp(x[i] / 6.0) + runtime.hoc_exp(-x[i])

    for loop in (plain, through_hoc_exp):
        x = np.linspace(-50.0, 50.0, 64)
        out = np.empty_like(x)
        loop(x, out)
        asm = "\n".join(loop.inspect_asm().values())
        packed = _packed(asm)
        assert {"vaddpd", "vmulpd"} <= set(packed) or {"addpd", "mulpd"} <= set(packed)
        if _cpu_has("fma") and _cpu_has("avx2"):
            assert any(re.fullmatch(r"vfmadd\d+pd", name) for name in packed)
        assert "dhs_libm_exp" not in asm
        assert re.search(r"call\w*\s+\S*dhs_fast_exp\b", asm) is None  # inlined, not called


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not _cpu_has("avx2"), reason="x86 AVX2"
)
def test_vector_gathers_keep_the_chain_before_exp_in_vectors():
    """With the kernels' tuning flag the table lookup is a gather and the division that
    computes exp's argument stays packed (LLVM's Zen models otherwise load lane by lane
    and keep the whole chain scalar)."""
    from dhs.engine.kernel_runtime import vector_gathers

    @numba.njit(error_model="numpy")
    def rate(v, out):
        vector_gathers()
        for i in range(v.size):
            out[i] = 0.182 * (v[i] + 32.0) / (1.0 - runtime.hoc_exp(-(v[i] + 32.0) / 6.0))

    v = np.linspace(-80.0, 40.0, 64)
    out = np.empty_like(v)
    rate(v, out)
    expected = 0.182 * (v + 32.0) / (1.0 - fe.libm_exp_array(-(v + 32.0) / 6.0))
    if FAST:
        np.testing.assert_array_equal(_bits(out), _bits(expected))
    asm = "\n".join(rate.inspect_asm().values())
    assert re.search(r"\bv(p?)gatherq(pd|q)\b", asm), "no gather"
    assert len(re.findall(r"\bvdivpd\b", asm)) >= 2  # both divisions, packed
