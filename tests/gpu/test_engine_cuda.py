"""The engine on the GPU (:mod:`dhs.engine.cuda`) against the CPU engine.

* PTX: the kernel is typed and compiled for sm_80 and sm_90 with no GPU (NVVM only).
* Simulator: this file, run as a script with ``NUMBA_ENABLE_CUDASIM=1``, runs a tiny
  model on both engines and prints a JSON summary; the simulated kernel must give the
  CPU engine's traces (to 1e-9 mV; in practice bit for bit) and spike times.
* Real GPU: a ~1,400-node tree x 1,000 instances for 50 ms, compared on a subset.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SUPPORT_DIR = Path(__file__).resolve().parent.parent / "support"
for _path in (SUPPORT_DIR, SUPPORT_DIR.parent.parent):  # paths, and dhs when run as a script
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dhs  # noqa: E402
from dhs.backends import cuda_simulator_enabled  # noqa: E402
from dhs.engine import CellModel, Engine, MechanismTable, SynapticEvents  # noqa: E402
from paths import ROOT, SUPPORT  # noqa: E402

V_TOLERANCE = 1e-9  # mV
SIMULATOR_TIMEOUT_S = 300


# ----------------------------------------------------------------------------- models
def _table(name, node, **params) -> MechanismTable:
    node = np.atleast_1d(np.asarray(node, dtype=np.int64))
    return MechanismTable(
        name, node, {p: np.broadcast_to(np.asarray(v, float), node.shape).copy()
                     for p, v in params.items()}
    )  # fmt: skip


def tree_model(n: int, hh_tables: bool, seed: int = 7) -> CellModel:
    """A branched cell of ``n`` nodes: hh on a "soma" of 4 nodes and every 7th node, pas
    elsewhere, two IClamps, ExpSyns, Exp2Syns and AmpaNmdas with events; NEURON-like
    coefficients."""
    rng = np.random.default_rng(seed)
    parent = np.array([-1] + [int(rng.integers(max(0, i - 5), i)) for i in range(1, n)])
    area = rng.uniform(50.0, 500.0, n)
    area[0] = 100.0  # a root node without membrane
    cm = np.where(np.arange(n) == 0, 0.0, 1.0)
    a = -rng.uniform(0.5, 5.0, n)
    b = -rng.uniform(0.5, 5.0, n)
    a[0] = b[0] = 0.0
    hh = np.array(sorted({1, 2, 3, 4, *range(7, n, 7)}))
    passive = np.setdiff1d(np.arange(1, n), hh)
    es = np.array([5, n // 2, n - 1])
    mechanisms = {
        "pas": _table("pas", passive, g=1e-4, e=-65.0),
        "hh": _table("hh", hh, gnabar=0.12, gkbar=0.036, gl=0.0003, el=-54.3, ena=50.0,
                     ek=-77.0),
        "IClamp": _table("IClamp", [1, 0], **{"del": 1.0, "dur": 3.0, "amp": 0.3}),
        "ExpSyn": _table("ExpSyn", es, tau=2.0, e=0.0),
        "Exp2Syn": _table("Exp2Syn", [9, n - 2], tau1=0.5, tau2=3.0, e=0.0),
        "AmpaNmda": _table("AmpaNmda", [6, n - 3, n - 3], tau1_ampa=0.2, tau2_ampa=2.0,
                           tau1_nmda=2.0, tau2_nmda=60.0, e=0.0, nmda_ratio=1.5, mg=1.0),
    }  # fmt: skip
    events = {
        "ExpSyn": SynapticEvents(np.array([0, 1, 0, 2]), np.array([2.0, 3.0, 5.5, 6.0]),
                                 np.array([0.01, 0.02, 0.01, 0.03])),
        "Exp2Syn": SynapticEvents(np.array([0, 1]), np.array([4.0, 1.0125]),
                                  np.array([0.02, 0.01])),
        "AmpaNmda": SynapticEvents(np.array([0, 1, 2, 0]), np.array([1.5, 2.0, 2.0, 5.0]),
                                   np.array([0.003, 0.004, 0.002, 0.003])),
    }  # fmt: skip
    return CellModel(parent=parent, area=area, cm=cm, a=a, b=b, mechanisms=mechanisms,
                     events=events, hh_tables=hh_tables, celsius=6.3)  # fmt: skip


def configure(engine: Engine, seed: int = 3) -> None:
    """Different parameters and events per instance."""
    rng = np.random.default_rng(seed)
    n = engine.n_instances
    engine.set("hh.gnabar", rng.uniform(0.10, 0.14, n))
    engine.set("pas.g", rng.uniform(0.5e-4, 2e-4, n))
    engine.set("IClamp.amp", rng.uniform(0.2, 0.6, n), index=0)
    engine.set("IClamp.del", rng.uniform(0.5, 2.0, n), index=0)
    engine.set("ExpSyn.tau", rng.uniform(1.0, 4.0, (n, 3)))
    engine.set("Exp2Syn.tau1", rng.uniform(0.2, 1.0, n))
    engine.set("v_init", rng.uniform(-70.0, -60.0, n))
    cm = np.where(np.arange(engine.model.n) == 0, 0.0, 1.0)
    engine.set("cm", cm[None, :] * rng.uniform(0.8, 1.2, (n, 1)))
    for q in range(0, n, 2):  # every other instance gets its own ExpSyn 0 events
        times = np.sort(rng.uniform(0.0, 8.0, 4))
        engine.set_events("ExpSyn", 0, times, rng.uniform(0.005, 0.05, 4), instances=q)
    engine.set_events("Exp2Syn", 1, [0.0, 0.0125, 3.0], [0.01, 0.02, 0.015], instances=[n - 1])
    engine.set("AmpaNmda.mg", rng.uniform(0.5, 2.0, n))
    engine.set("AmpaNmda.nmda_ratio", rng.uniform(0.5, 2.0, (n, 3)))
    engine.add_poisson("AmpaNmda", [0, 2], 200.0, 0.002, seed=5)


def subset_engine(engine: Engine, subset) -> Engine:
    """A CPU engine whose instances are ``subset`` of ``engine``'s, same parameters and
    events (so a big GPU run can be checked without the full CPU run)."""
    subset = np.asarray(subset, dtype=np.int64)
    small = Engine(engine.model, subset.size, backend="cpu")
    for name, values in engine._params.items():
        small._params[name][...] = values[..., subset]
    small._shared_events = dict(engine._shared_events)
    small._instance_events = {
        key: {new: per[old] for new, old in enumerate(subset.tolist()) if old in per}
        for key, per in engine._instance_events.items()
    }
    position = {old: new for new, old in enumerate(subset.tolist())}
    for column, kind, rows, times, weights in engine._bulk_events:
        keep = np.isin(column, subset)
        new = np.array([position[c] for c in column[keep].tolist()], dtype=np.int64)
        small._bulk_events.append((new, kind, rows[keep], times[keep], weights[keep]))
    small._poisson = [(*spec[:-1], spec[-1][subset]) for spec in engine._poisson]
    return small


def compare_runs(
    model: CellModel,
    n_instances: int,
    tstop: float,
    subset=None,
    record_every: int = 1,
    spike_method: str = "neuron",
) -> dict:
    """Run the CUDA engine, and the CPU engine on ``subset`` of the same instances (all
    by default); the differences."""
    record = list(range(0, model.n, max(1, model.n // 12)))
    chosen = np.arange(n_instances) if subset is None else np.asarray(subset)
    gpu_engine = Engine(model, n_instances, backend="cuda")
    configure(gpu_engine)
    engines = {"cuda": gpu_engine, "cpu": subset_engine(gpu_engine, chosen)}
    results = {}
    seconds = {}
    for backend, engine in engines.items():
        start = time.perf_counter()
        results[backend] = engine.run(tstop, record_nodes=record, record_every=record_every,
                                      spike_node=1, spike_method=spike_method)  # fmt: skip
        seconds[backend] = time.perf_counter() - start
    cpu, gpu = results["cpu"], results["cuda"]
    spikes_cpu = [s.tolist() for s in cpu.spikes]
    spikes_gpu = [gpu.spikes[q].tolist() for q in chosen]
    return {
        "max_v_difference": float(np.max(np.abs(cpu.v - gpu.v[chosen]))),
        "max_final_difference": float(np.max(np.abs(cpu.v_final - gpu.v_final[chosen]))),
        "bitwise": bool(
            np.array_equal(cpu.v, gpu.v[chosen])
            and np.array_equal(cpu.v_final, gpu.v_final[chosen])
        ),
        "spikes_equal": spikes_cpu == spikes_gpu,
        "n_spikes": sum(len(s) for s in spikes_cpu),
        "spikes_cpu": spikes_cpu,
        "spikes_gpu": spikes_gpu,
        "t_equal": bool(np.array_equal(cpu.t, gpu.t)),
        "seconds": seconds,
    }


SIMULATOR_CASES = {
    # name: (nodes, hh tables, instances, tstop, record_every, spike method)
    "exact_rates": (30, False, 3, 10.0, 1, "neuron"),
    "table_rates": (24, True, 4, 8.0, 3, "interpolate"),
}


def simulator_main() -> int:
    """The simulator checks; prints one JSON line."""
    sys.setswitchinterval(5e-4)
    summary = {"simulator": cuda_simulator_enabled(), "gpu_available": dhs.gpu_available()}
    for name, (n, tables, instances, tstop, every, method) in SIMULATOR_CASES.items():
        summary[name] = compare_runs(tree_model(n, tables), instances, tstop,
                                     record_every=every, spike_method=method)  # fmt: skip
    print(json.dumps(summary))
    return 0


# ----------------------------------------------------------------------------- PTX
def _ptx(cc, fma=False) -> str:
    try:
        from numba.cuda.cudadrv.error import NvrtcSupportError, NvvmSupportError

        from dhs.engine import cuda as engine_cuda
    except ImportError as error:
        pytest.skip(f"numba-cuda cannot be imported, so no PTX can be compiled: {error}")
    try:
        return engine_cuda.compile_ptx(cc, fma=fma)
    except (ImportError, OSError, NvvmSupportError, NvrtcSupportError) as error:
        pytest.skip(
            "the CUDA compiler libraries (NVVM/NVRTC) are missing, so no PTX can be "
            f"compiled: {type(error).__name__}: {error}"
        )


def _instructions(ptx: str) -> list[str]:
    return re.findall(r"^\s+([a-z][\w.]*)", ptx, flags=re.MULTILINE)


no_simulator = pytest.mark.skipif(
    cuda_simulator_enabled(), reason="NUMBA_ENABLE_CUDASIM=1: the simulator compiles no PTX"
)


@no_simulator
@pytest.mark.parametrize("cc", [(9, 0), (8, 0)], ids=["sm_90", "sm_80"])
def test_engine_kernel_compiles_to_ptx(cc):
    ptx = _ptx(cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ptx.count(".entry") == 1
    instructions = _instructions(ptx)
    divisions = [op for op in instructions if op.startswith(("div.", "rcp.")) and "f64" in op]
    assert divisions and set(divisions) <= {"div.rn.f64", "rcp.rn.f64"}  # IEEE rounding
    # All arithmetic in float64 (libdevice's exp compares its argument's high word as f32).
    assert not [op for op in instructions if op.endswith(".f32") and op.startswith(
        ("add", "sub", "mul", "div", "fma", "rcp", "cvt"))]  # fmt: skip
    assert ".local" not in ptx  # no local-memory arrays (registers spill only in ptxas)


@no_simulator
def test_fma_contraction_is_off():
    """NVVM fuses a*b + c by default; the engine compiles with -fma=0. The fma left are
    libdevice's own, inside exp."""
    fused = _instructions(_ptx((9, 0), fma=True))
    plain = _instructions(_ptx((9, 0), fma=False))
    assert sum(op.startswith("fma") for op in plain) < sum(op.startswith("fma") for op in fused)

    import numba
    from numba import cuda

    from dhs.engine.cuda import no_fma

    def probe(x, y):
        i = cuda.grid(1)
        if i < x.size:
            y[i] = x[i] * y[i] + 1.5

    signature = (numba.float64[::1], numba.float64[::1])
    with no_fma():
        ptx, _ = cuda.compile_ptx(probe, signature, cc=(9, 0))
    assert not [op for op in _instructions(ptx) if op.startswith("fma")]
    assert re.search(r"mul(\.rn)?\.f64", ptx)


# ----------------------------------------------------------------------------- simulator
@pytest.fixture(scope="module")
def simulator_summary() -> dict:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(ROOT), str(SUPPORT), env.get("PYTHONPATH")) if path
    )
    try:
        completed = subprocess.run(
            [sys.executable, str(Path(__file__).resolve())],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SIMULATOR_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the simulator run took more than {SIMULATOR_TIMEOUT_S} s: {error.stderr}")
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        pytest.fail(
            f"the simulator run exited with {completed.returncode}:\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


@pytest.mark.cudasim
def test_simulator_is_not_a_gpu(simulator_summary):
    assert simulator_summary["simulator"]
    assert simulator_summary["gpu_available"] is False


@pytest.mark.cudasim
@pytest.mark.parametrize("name", list(SIMULATOR_CASES))
def test_simulator_matches_cpu_engine(simulator_summary, name):
    case = simulator_summary[name]
    assert case["t_equal"]
    assert case["max_v_difference"] <= V_TOLERANCE
    assert case["max_final_difference"] <= V_TOLERANCE
    assert case["n_spikes"] > 0, "the case should spike"
    assert case["spikes_equal"], (case["spikes_cpu"], case["spikes_gpu"])


@pytest.mark.cudasim
@pytest.mark.parametrize("name", list(SIMULATOR_CASES))
def test_simulator_is_bitwise_equal(simulator_summary, name):
    """The simulator computes in Python floats and the C library's exp, as the CPU engine
    does, and the kernel repeats the CPU's operations in order: equal to the last bit."""
    assert simulator_summary[name]["bitwise"]


def test_cuda_backend_without_gpu_raises():
    if dhs.gpu_available() or cuda_simulator_enabled():
        pytest.skip("a GPU or the simulator is there, so backend='cuda' is available")
    with pytest.raises(ValueError, match="backend='cuda' needs an NVIDIA GPU"):
        Engine(tree_model(10, False), 2, backend="cuda")


def test_auto_backend_takes_the_gpu_only_when_one_is_there():
    engine = Engine(tree_model(10, False), 2, backend="auto")
    assert engine.backend == ("cuda" if dhs.gpu_available() else "cpu")


# ----------------------------------------------------------------------------- real GPU
@pytest.mark.gpu
@pytest.mark.skipif(
    not dhs.gpu_available(),
    reason="no CUDA GPU: numba.cuda.is_available() is False (the PTX and simulator tests "
    "still cover the kernel)",
)
@pytest.mark.parametrize("tables", [False, True], ids=["exact_rates", "table_rates"])
def test_gpu_matches_cpu_engine_at_scale(tables):
    subset = np.r_[0:8, 500:504, 992:1000]
    case = compare_runs(tree_model(1400, tables, seed=11), 1000, 50.0, subset=subset,
                        record_every=4)  # fmt: skip
    assert case["t_equal"]
    assert case["max_v_difference"] <= V_TOLERANCE, case["max_v_difference"]
    assert case["max_final_difference"] <= V_TOLERANCE
    assert case["spikes_equal"]
    assert case["n_spikes"] > 0


if __name__ == "__main__":
    sys.exit(simulator_main())
