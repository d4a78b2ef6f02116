"""The CUDA backend: PTX compilation (no GPU needed), the simulator, and a real GPU.

* Compilation: ``numba.cuda.compile_ptx`` needs NVVM but no GPU, so the kernel is typed
  and compiled for real architectures on any machine with the CUDA toolkit wheels.
* Simulator: ``tests/support/cudasim_check.py`` runs in a subprocess with
  ``NUMBA_ENABLE_CUDASIM=1`` (the simulator must be chosen before Numba is imported)
  and reports every small case as JSON (about 7 s on a 2-core machine).
* Real GPU: the same checks (:data:`cudasim_check.LARGE_CASES`) at realistic sizes,
  skipped with a reason when there is no GPU.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cudasim_check
import dhs
import trees
from dhs.backends import cuda_simulator_enabled
from dhs.solvers.cuda import kernel_signature, kernels

SIMULATOR_TIMEOUT_S = 300


# ----------------------------------------------------------------------------- PTX
def _compile_ptx(dtype, cc) -> str:
    """PTX of the kernel; skips only when the CUDA compiler libraries are missing."""
    try:
        from numba import cuda
        from numba.cuda.cudadrv.error import NvrtcSupportError, NvvmSupportError
    except ImportError as error:
        pytest.skip(f"numba-cuda cannot be imported, so no PTX can be compiled: {error}")
    try:
        ptx, _ = cuda.compile_ptx(kernels(dtype).py_func, kernel_signature(dtype), cc=cc)
    except (ImportError, OSError, NvvmSupportError, NvrtcSupportError) as error:
        pytest.skip(
            "the CUDA compiler libraries (NVVM/NVRTC) are missing, so no PTX can be "
            f"compiled: {type(error).__name__}: {error}"
        )
    return ptx


@pytest.mark.skipif(
    cuda_simulator_enabled(), reason="NUMBA_ENABLE_CUDASIM=1: the simulator compiles no PTX"
)
@pytest.mark.parametrize("cc", [(9, 0), (8, 0)], ids=["sm_90", "sm_80"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_kernel_compiles_to_ptx(dtype, cc):
    ptx = _compile_ptx(dtype, cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx
    # Barriers after the gather, after every elimination step and every back-substitution
    # step (the compiler may duplicate them, e.g. per memory path).
    assert ptx.count("bar.sync") >= 3
    instructions = re.findall(r"^\s+([a-z][\w.]*)", ptx, flags=re.MULTILINE)
    divisions = [op for op in instructions if op.startswith("div.")]
    suffix = "f64" if dtype == np.float64 else "f32"
    # IEEE round-to-nearest divisions in the solve's own precision, never approximate.
    assert divisions
    assert all(op == f"div.rn.{suffix}" for op in divisions if op.endswith(("f32", "f64")))
    if dtype == np.float32:  # nothing is silently promoted to double
        assert not [op for op in instructions if op.endswith(".f64")]


# ----------------------------------------------------------------------------- simulator
@pytest.fixture(scope="module")
def simulator_summary(run_simulated) -> dict:
    """``tests/support/cudasim_check.py`` under the simulator, once."""
    return run_simulated("cudasim_check.py", SIMULATOR_TIMEOUT_S)


@pytest.mark.cudasim
def test_simulator_run(simulator_summary):
    assert simulator_summary["simulator"], "NUMBA_ENABLE_CUDASIM=1 did not take effect"
    assert simulator_summary["cuda_backend"] == "cuda"
    assert simulator_summary["auto_backend"] == "cpu", "'auto' must never pick the simulator"
    assert simulator_summary["gpu_available"] is False
    names = [case["name"] for case in simulator_summary["cases"]]
    assert names == list(cudasim_check.SMALL_CASES)
    assert simulator_summary["returncode"] == (0 if simulator_summary["ok"] else 1)


@pytest.mark.cudasim
@pytest.mark.parametrize("name", list(cudasim_check.SMALL_CASES))
def test_simulator_case(simulator_summary, name):
    (case,) = [case for case in simulator_summary["cases"] if case["name"] == name]
    assert case["ok"], "\n".join(case["problems"])


@pytest.mark.cudasim
def test_simulator_bad_values_raise(simulator_summary):
    checks = simulator_summary["errors"]
    assert checks, "no error checks ran"
    failed = {name: check["message"] for name, check in checks.items() if not check["ok"]}
    assert not failed


# ----------------------------------------------------------------------------- real GPU
requires_gpu = pytest.mark.skipif(
    not dhs.gpu_available(),
    reason="no CUDA GPU: numba.cuda.is_available() is False (the PTX and simulator tests "
    "still cover the kernel)",
)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("name", list(cudasim_check.LARGE_CASES))
def test_gpu_case(name):
    result = cudasim_check.check_case(name, cudasim_check.LARGE_CASES[name]())
    assert result["ok"], "\n".join(result["problems"])


@pytest.mark.gpu
@requires_gpu
def test_gpu_bad_values_raise():
    failed = {
        name: check["message"]
        for name, check in cudasim_check.error_checks().items()
        if not check["ok"]
    }
    assert not failed


@pytest.mark.gpu
@requires_gpu
def test_gpu_auto_backend_is_cuda():
    assert dhs.Solver(dhs.Tree(trees.chain(5))).backend == "cuda"
