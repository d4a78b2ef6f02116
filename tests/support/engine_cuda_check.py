"""The engine's CUDA build against its CPU build, on models made of real ``.mod`` files.

Each case is a small branched cell built by hand (no NEURON needed) with one set of
mechanisms: NEURON's built-ins and AmpaNmda with synaptic events, hh with its rate
table, the BluePyOpt L5PC's 12 channels and calcium dynamics, the neuron wheel's
``demo/release`` mechanisms, and the Newton-solved schemes (derivimplicit, KINETIC
sparse with CONSERVE). The CPU engine equals NEURON on these mechanisms
(``tests/engine``), so the CUDA build is compared with the CPU build.

Under the CUDA simulator (enabled before Numba is imported)::

    NUMBA_ENABLE_CUDASIM=1 python tests/support/engine_cuda_check.py

runs every case with a few instances and prints one JSON line; the simulator's
arithmetic is Python's, so the two builds must agree bit for bit. On a real GPU,
:func:`compare` runs the same cases at realistic sizes; the GPU's ``exp`` is not glibc's,
so there the difference is measured and bounded instead.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

SUPPORT_DIR = Path(__file__).resolve().parent
for _path in (SUPPORT_DIR, SUPPORT_DIR.parent.parent):  # support modules, and dhs
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import numpy as np  # noqa: E402

from dhs.engine import CellModel, Engine, RunOptions  # noqa: E402
from engine_models import CASES, EngineCase, model_of, options_of  # noqa: E402

__all__ = ["CASES", "SCHEMES", "EngineCase", "compare", "model_of"]

#: The CUDA schemes: a thread per instance, and a block of lanes per instance (DHS).
SCHEMES = ("thread", "lanes")


def run(model: CellModel, options: RunOptions, n_instances: int, backend: str,
        scheme: str = "auto", lanes: int = 32):  # fmt: skip
    """One run with per-instance IClamp amplitudes (0.5 to 1.5 times the case's)."""
    engine = Engine(model, n_instances, backend=backend, scheme=scheme, lanes=lanes)
    scale = np.linspace(0.5, 1.5, n_instances)
    engine.set("IClamp.amp", engine.get("IClamp.amp")[:, 0] * scale, target=0)
    return engine.run(options)


def compare(
    name: str,
    n_instances: int = 3,
    tstop: float = 3.0,
    n_nodes: int = 12,
    scheme: str = "thread",
    lanes: int = 4,
) -> dict:
    """Run a case on the CPU and on CUDA in ``scheme``; the largest differences and the
    spikes."""
    case = CASES[name]
    model = model_of(case, n_nodes)
    options = options_of(case, model, tstop)
    results, seconds = {}, {}
    for backend in ("cpu", "cuda"):
        start = time.perf_counter()
        results[backend] = run(model, options, n_instances, backend, scheme, lanes)
        seconds[backend] = time.perf_counter() - start
    cpu, gpu = results["cpu"], results["cuda"]
    report = {
        "name": name,
        "scheme": scheme,
        "lanes": lanes if scheme == "lanes" else None,
        "mechanisms": list(model.mechanisms),
        "nodes": model.n,
        "instances": n_instances,
        "steps": cpu.n_steps,
        "max_abs_dv_mV": float(np.abs(cpu.v - gpu.v).max()),
        "max_abs_dv_final_mV": float(np.abs(cpu.v_final - gpu.v_final).max()),
        "max_rel_record": {
            key: float(
                np.abs(cpu.records[key] - gpu.records[key]).max()
                / max(np.abs(cpu.records[key]).max(), 1e-300)
            )
            for key in cpu.records
        },
        "spikes_equal": all(
            np.array_equal(a, b) for a, b in zip(cpu.spikes, gpu.spikes, strict=True)
        ),
        "spike_counts": [int(s.size) for s in cpu.spikes],
        "gpu_spike_counts": [int(s.size) for s in gpu.spikes],
        "v_range_mV": [float(cpu.v.min()), float(cpu.v.max())],
        "finite": bool(np.isfinite(gpu.v).all()),
        "seconds": seconds,
    }
    return report


def main() -> int:
    from dhs.backends import cuda_simulator_enabled

    sys.setswitchinterval(2e-5)  # the simulated threads contend for the GIL: switch often
    summary = {"simulator": cuda_simulator_enabled(), "cases": []}
    for scheme in SCHEMES:
        for name in CASES:
            try:
                summary["cases"].append(compare(name, scheme=scheme))
            except Exception as error:  # reported, and the test fails on it
                summary["cases"].append(
                    {"name": name, "scheme": scheme, "error": f"{type(error).__name__}: {error}"}
                )
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
