"""The engine's CUDA builds (:mod:`dhs.engine.cuda`), both schemes, against its CPU build.

* Compilation, no GPU needed: every case of :mod:`engine_cuda_check` (the built-ins and
  AmpaNmda, hh's table, the L5PC's 12 mechanisms, the neuron wheel's release
  mechanisms, derivimplicit and KINETIC sparse) compiles to PTX for sm_90 in both
  schemes (a thread per instance; a block of lanes per instance stepping through the
  Hu schedule) and is assembled by ptxas (nvJitLink), which also checks the kernel's
  parameter space and reports spills. FMA contraction is off: a kernel without ``exp``
  (pas and IClamp) has no ``fma`` at all, while the same kernel compiled with
  contraction has some.
* Simulator: ``engine_cuda_check.py`` runs every case in both schemes under
  ``NUMBA_ENABLE_CUDASIM=1`` in a subprocess; both must equal the CPU build bit for bit
  (the lanes scheme sums every row's terms in NEURON's order too).
* The cost model's choice of scheme.
* Real GPU: the same cases at a realistic size, skipped with a reason without a GPU.
"""

from __future__ import annotations

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


def _ptx(name: str, scheme: str = "thread", *, contract: bool = False) -> str:
    case = engine_cuda_check.CASES[name]
    model = engine_cuda_check.model_of(case)
    options = engine_cuda_check.options_of(case, model, 1.0)
    try:
        return Engine(model, 3, scheme=scheme).cuda_ptx(options, (9, 0), contract=contract)
    except ImportError as error:
        pytest.skip(f"the CUDA compiler libraries are missing, so no PTX can be made: {error}")


def _instructions(ptx: str) -> list[str]:
    return re.findall(r"^\s+([a-z][\w.]*)", ptx, flags=re.MULTILINE)


@requires_compiler
@pytest.mark.parametrize("scheme", engine_cuda_check.SCHEMES)
@pytest.mark.parametrize("name", list(engine_cuda_check.CASES))
def test_kernel_compiles_and_assembles_for_sm90(name, scheme):
    from dhs.engine.cuda import link_sass

    ptx = _ptx(name, scheme)
    assert ".target sm_90" in ptx and ".entry" in ptx
    instructions = _instructions(ptx)
    divisions = [op for op in instructions if op.startswith("div.") and op.endswith("f64")]
    assert divisions and all(op == "div.rn.f64" for op in divisions)  # IEEE, never approximate
    assert not [op for op in instructions if op.endswith(".f32") and op.startswith(("add", "mul"))]
    report = link_sass(ptx)
    registers = [int(r) for r in re.findall(r"used (\d+) registers", report)]
    assert registers and max(registers) <= 255, report[-2000:]
    if scheme == "lanes":
        assert "bar.sync" in ptx  # the lanes meet after every phase and Hu step


@requires_compiler
def test_no_fma_contraction():
    """pas and IClamp call no libm function, so any fma would be contraction."""
    assert "fma.rn.f64" not in _ptx("passive")
    assert "fma.rn.f64" not in _ptx("passive", "lanes")
    assert "fma.rn.f64" in _ptx("passive", contract=True)


# ----------------------------------------------------------------------------- simulator
@pytest.fixture(scope="module")
def simulator_summary(run_simulated) -> dict:
    """``engine_cuda_check.py`` under the simulator, once."""
    summary = run_simulated("engine_cuda_check.py", SIMULATOR_TIMEOUT_S)
    assert summary["returncode"] == 0, summary
    return summary


@pytest.mark.cudasim
def test_simulator_ran(simulator_summary):
    assert simulator_summary["simulator"], "NUMBA_ENABLE_CUDASIM=1 did not take effect"
    ran = [(case["name"], case["scheme"]) for case in simulator_summary["cases"]]
    assert ran == [(n, s) for s in engine_cuda_check.SCHEMES for n in engine_cuda_check.CASES]


@pytest.mark.cudasim
@pytest.mark.parametrize("scheme", engine_cuda_check.SCHEMES)
@pytest.mark.parametrize("name", list(engine_cuda_check.CASES))
def test_simulator_equals_cpu_bit_for_bit(simulator_summary, name, scheme):
    (case,) = [
        case
        for case in simulator_summary["cases"]
        if case["name"] == name and case["scheme"] == scheme
    ]
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


# ----------------------------------------------------------------------------- cost model
def test_cost_model_prefers_lanes_for_few_large_cells_and_threads_for_many_small_ones():
    from dhs.engine.cuda import choose_scheme

    few_large = choose_scheme(n_nodes=25_000, n_instances=4, hu_steps=900, phases=12, lanes=32)
    assert few_large.scheme == "lanes", few_large
    many_small = choose_scheme(n_nodes=50, n_instances=200_000, hu_steps=12, phases=8, lanes=32)
    assert many_small.scheme == "thread", many_small
    for choice in (few_large, many_small):
        assert "us/step" in choice.reason and choice.thread_us > 0 and choice.lanes_us > 0


@pytest.mark.cudasim
def test_engine_reports_the_scheme_it_runs():
    """On CUDA (here the simulator), ``scheme="auto"`` is resolved by the cost model and
    reported; a forced scheme is kept; the CPU has its own."""
    script = (
        "import engine_cuda_check as c\n"
        "from dhs.engine import Engine\n"
        "model = c.model_of(c.CASES['passive'])\n"
        "auto = Engine(model, 2, backend='cuda')\n"
        "print(auto.scheme, '|', auto.scheme_choice.reason)\n"
        "print(Engine(model, 2, backend='cuda', scheme='lanes').scheme)\n"
        "print(Engine(model, 2, backend='cpu', scheme='lanes').scheme)\n"
    )
    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(SUPPORT)])
    completed = subprocess.run([sys.executable, "-c", script], env=environment, cwd=ROOT,
                               capture_output=True, text=True, timeout=300)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    auto, forced, cpu = [line for line in completed.stdout.splitlines() if line][-3:]
    scheme, reason = auto.split(" | ")
    assert scheme in ("thread", "lanes") and "us/step" in reason
    assert forced == "lanes"
    assert cpu == "cpu"


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("scheme", engine_cuda_check.SCHEMES)
@pytest.mark.parametrize("name", list(engine_cuda_check.CASES))
def test_gpu_agrees_with_cpu(name, scheme):
    result = engine_cuda_check.compare(
        name, n_instances=256, tstop=20.0, n_nodes=200, scheme=scheme, lanes=32
    )
    assert result["finite"], result
    assert result["max_abs_dv_mV"] <= GPU_V_TOLERANCE, result
    assert result["spike_counts"] == result["gpu_spike_counts"], result


@pytest.mark.gpu
@requires_gpu
def test_gpu_auto_backend_is_cuda():
    case = engine_cuda_check.CASES["passive"]
    assert Engine(engine_cuda_check.model_of(case), 1, backend="auto").backend == "cuda"
