"""The engine's CUDA build (:mod:`dhs.engine.cuda`) against its CPU build.

* Compilation, no GPU needed: every case of :mod:`engine_cuda_check` (the built-ins and
  AmpaNmda, hh's table, the L5PC's 12 mechanisms, the neuron wheel's release
  mechanisms, derivimplicit and KINETIC sparse) compiles to PTX for sm_90 and is
  assembled by ptxas (nvJitLink), which also checks the kernel's parameter space and
  reports spills. FMA contraction is off: a kernel without ``exp`` (pas and IClamp)
  has no ``fma`` at all, while the same kernel compiled with contraction has some.
* Simulator: ``engine_cuda_check.py`` runs every case under ``NUMBA_ENABLE_CUDASIM=1``
  in a subprocess; the CUDA build must equal the CPU build bit for bit.
* Real GPU: the same cases at a realistic size, skipped with a reason without a GPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import dhs
import engine_cuda_check
from dhs.backends import cuda_simulator_enabled
from dhs.engine import Engine
from paths import ROOT, SUPPORT

SIMULATOR_TIMEOUT_S = 900
#: mV. A GPU's exp is libdevice's, not glibc's: about an ulp apart, amplified near spikes.
GPU_V_TOLERANCE = 1e-6

requires_compiler = pytest.mark.skipif(
    cuda_simulator_enabled(), reason="NUMBA_ENABLE_CUDASIM=1: the simulator compiles no PTX"
)


def _ptx(name: str, *, contract: bool = False) -> str:
    case = engine_cuda_check.CASES[name]
    model = engine_cuda_check.model_of(case)
    options = engine_cuda_check.options_of(case, model, 1.0)
    try:
        return Engine(model, 3).cuda_ptx(options, (9, 0), contract=contract)
    except ImportError as error:
        pytest.skip(f"the CUDA compiler libraries are missing, so no PTX can be made: {error}")


def _instructions(ptx: str) -> list[str]:
    return re.findall(r"^\s+([a-z][\w.]*)", ptx, flags=re.MULTILINE)


@requires_compiler
@pytest.mark.parametrize("name", list(engine_cuda_check.CASES))
def test_kernel_compiles_and_assembles_for_sm90(name):
    from dhs.engine.cuda import link_sass

    ptx = _ptx(name)
    assert ".target sm_90" in ptx and ".entry" in ptx
    instructions = _instructions(ptx)
    divisions = [op for op in instructions if op.startswith("div.") and op.endswith("f64")]
    assert divisions and all(op == "div.rn.f64" for op in divisions)  # IEEE, never approximate
    assert not [op for op in instructions if op.endswith(".f32") and op.startswith(("add", "mul"))]
    report = link_sass(ptx)
    registers = [int(r) for r in re.findall(r"used (\d+) registers", report)]
    assert registers and max(registers) <= 255, report[-2000:]


@requires_compiler
def test_no_fma_contraction():
    """pas and IClamp call no libm function, so any fma would be contraction."""
    assert "fma.rn.f64" not in _ptx("passive")
    assert "fma.rn.f64" in _ptx("passive", contract=True)


# ----------------------------------------------------------------------------- simulator
@pytest.fixture(scope="module")
def simulator_summary() -> dict:
    """``engine_cuda_check.py`` under the simulator, once; its JSON summary."""
    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    environment["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(ROOT), str(SUPPORT), environment.get("PYTHONPATH")) if path
    )
    completed = subprocess.run(
        [sys.executable, str(SUPPORT / "engine_cuda_check.py")],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SIMULATOR_TIMEOUT_S,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        pytest.fail(f"engine_cuda_check.py failed:\n{completed.stdout[-3000:]}\n"
                    f"{completed.stderr[-3000:]}")  # fmt: skip
    return json.loads(lines[-1])


@pytest.mark.cudasim
def test_simulator_ran(simulator_summary):
    assert simulator_summary["simulator"], "NUMBA_ENABLE_CUDASIM=1 did not take effect"
    assert [case["name"] for case in simulator_summary["cases"]] == list(engine_cuda_check.CASES)


@pytest.mark.cudasim
@pytest.mark.parametrize("name", list(engine_cuda_check.CASES))
def test_simulator_equals_cpu_bit_for_bit(simulator_summary, name):
    (case,) = [case for case in simulator_summary["cases"] if case["name"] == name]
    assert "error" not in case, case.get("error")
    assert case["max_abs_dv_mV"] == 0.0 and case["max_abs_dv_final_mV"] == 0.0, case
    assert all(value == 0.0 for value in case["max_rel_record"].values()), case
    assert case["spikes_equal"], case
    low, high = case["v_range_mV"]
    assert high - low > 10.0, f"{name}: the case hardly moves v ({low}..{high} mV)"


# ----------------------------------------------------------------------------- real GPU
requires_gpu = pytest.mark.skipif(
    not dhs.gpu_available(),
    reason="no CUDA GPU: numba.cuda.is_available() is False (the PTX, ptxas and simulator "
    "tests still cover the engine's CUDA build)",
)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("name", list(engine_cuda_check.CASES))
def test_gpu_agrees_with_cpu(name):
    result = engine_cuda_check.compare(name, n_instances=256, tstop=20.0, n_nodes=200)
    assert result["finite"], result
    assert result["max_abs_dv_mV"] <= GPU_V_TOLERANCE, result
    assert result["spike_counts"] == result["gpu_spike_counts"], result


@pytest.mark.gpu
@requires_gpu
def test_gpu_auto_backend_is_cuda():
    case = engine_cuda_check.CASES["passive"]
    assert Engine(engine_cuda_check.model_of(case), 1, backend="auto").backend == "cuda"
