"""The engine's cost per node as the model grows: the demo cell at 1,399 nodes against the
same cell cut into ~25,000 nodes, measured side by side in one run.

Both are NEURON's demo pyramid with hh in the soma, pas in the dendrites and an IClamp
(:func:`benchmarks.models.pyramid_model`), discretised at two segment lengths and
exported. The engine runs N instances of each on the CPU (both cores, and one), timed
round-robin (:func:`benchmarks.solve.time_round_robin`); the result is ns per node and
instance-step, and the ratio of the large model's to the small one's (the target is at
most 1.3). Writes ``data/benchmarks/scaling_<device>.json``::

    python -m benchmarks.scaling
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dhs.engine import Engine, RunOptions
from neuron_bridge.export import export_model

from .models import pyramid_model
from .solve import DATA, device_tag, machine_info, time_round_robin

#: µm: 1,399 nodes (the CA1-size demo cell), and about 25,000.
SEGMENT_LENGTHS = {"small": 4.35, "large": 0.22}
TARGET_RATIO = 1.3


def _export(segment_length: float):
    model = pyramid_model(segment_length=segment_length, synapses=0)
    try:
        return export_model(-65.0)
    finally:
        model.delete()


def run_benchmark(
    n_instances: int = 32,
    tstop: float = 10.0,
    rounds: int = 3,
    output_path: Path | None = None,
    verbose: bool = True,
) -> dict:
    """Time the engine on both models; write and return the JSON report."""
    models = {name: _export(length) for name, length in SEGMENT_LENGTHS.items()}
    calls, steps = {}, {}
    for name, model in models.items():
        for workers in (1, 2):
            engine = Engine(model, n_instances, workers=workers)
            options = RunOptions(tstop, record_nodes=(0,), spike_node=0)
            engine.run(RunOptions(0.1))  # compiles or loads the cached kernel
            key = f"{name}, {workers} worker{'s' if workers > 1 else ''}"
            calls[key] = lambda engine=engine, options=options: engine.run(options)
            steps[key] = (model.n, options.n_steps)
    timings = time_round_robin(calls, rounds=rounds, calls_per_turn=1, budget_s=1e9)
    results = {}
    for key, timing in timings.items():
        nodes, n_steps = steps[key]
        results[key] = {
            "nodes": nodes,
            "best_s": timing["best_s"],
            "ns_per_node_and_instance_step": timing["best_s"]
            / (nodes * n_instances * n_steps)
            * 1e9,
        }
    ratios = {
        workers: results[f"large, {workers}"]["ns_per_node_and_instance_step"]
        / results[f"small, {workers}"]["ns_per_node_and_instance_step"]
        for workers in ("1 worker", "2 workers")
    }
    report = {
        "benchmark": "engine cost per node: the demo pyramid at 1,399 and ~25,000 nodes",
        "model": "benchmarks.models.pyramid_model (hh soma, pas dendrites, an IClamp), "
        f"segments of {SEGMENT_LENGTHS['small']} and {SEGMENT_LENGTHS['large']} um",
        "instances": n_instances,
        "tstop_ms": tstop,
        "results": results,
        "ratio_large_over_small": ratios,
        "target": f"ratio <= {TARGET_RATIO}",
        "met": all(ratio <= TARGET_RATIO for ratio in ratios.values()),
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "reproduce": "python -m benchmarks.scaling",
    }
    path = output_path or DATA / "benchmarks" / f"scaling_{device_tag(report['machine'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if verbose:
        for key, entry in results.items():
            cost = entry["ns_per_node_and_instance_step"]
            print(f"{key:22s} {entry['nodes']:7d} nodes  {cost:6.2f} ns/node/instance-step")
        print(f"large / small: {ratios}; wrote {path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    parser.add_argument("--instances", type=int, default=32)
    parser.add_argument("--tstop", type=float, default=10.0, help="ms (default 10)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)
    arguments = parser.parse_args(argv)
    run_benchmark(arguments.instances, arguments.tstop, arguments.rounds, arguments.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
