"""The GPU check: the one prepared command for a machine with an NVIDIA GPU.

    python3 tasks.py gpu OUTDIR              # on the GPU machine
    python3 tasks.py gpu --dry-run OUTDIR    # the same parts on a CPU (CI runs this)
    python3 tasks.py gpu --prepare DIR       # export the models it runs (needs NEURON)

Each part runs in its own child process with its own time limit; its log goes to
``OUTDIR/<part>.log`` and its results to ``OUTDIR/<part>.json``, and
``OUTDIR/summary.json`` collects them with the device's name, so a part that fails or
runs out of time costs only itself. The parts:

``device``       the GPU's name, compute capability, driver and numba-cuda versions;
``gpu_tests``    ``pytest -m gpu tests/gpu`` (the solver's and the engine's GPU tests);
``solve``        the DHS solve on batches of the CA1-sized cell (1,000 and 3,000 cells),
                 fp64 and fp32, device-resident, against the serial solve;
``engine``       the engine benchmark on the demo cell with CUDA (N = 1,000 and 10,000)
                 beside single-core NEURON (``benchmarks/engine.py``);
``differences``  every case of ``tests/support/engine_cuda_check.py`` at a realistic
                 size in both CUDA schemes (a thread per instance; a block of lanes per
                 instance, DHS) against the CPU engine, and a batch of three different
                 cells against each alone;
``l5pc``         the released BluePyOpt L5PC (exported by ``--prepare``) at N = 1,000 and
                 10,000 on the GPU in both schemes, time per step, the cost model's pick,
                 and its traces against the CPU engine.

``--dry-run`` runs every part on a CPU: the GPU parts under Numba's CUDA simulator at tiny
sizes, so the whole command is exercised without a GPU. Its numbers are marked
``"simulator": true`` and mean nothing about speed.

The GPU machine has no network: NEURON travels as a wheel in ``.whl/`` (installed by
``tasks.py`` into a temporary folder), and the models and the test cache in the folder
given by ``--inputs`` (default ``.gpu_inputs``, made here by ``--prepare``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "support"
DEFAULT_INPUTS = ROOT / ".gpu_inputs"
#: Each part's time limit on a GPU machine, in seconds; together well under 8 minutes.
LIMITS = {"device": 60, "gpu_tests": 150, "solve": 60, "engine": 120, "differences": 90, "l5pc": 90}
PARTS = tuple(LIMITS)


# ----------------------------------------------------------------------------- parts
def part_device(dry_run: bool) -> dict:
    import numba

    from dhs.backends import cuda_simulator_enabled, gpu_available

    info = {
        "python": platform.python_version(),
        "numba": numba.__version__,
        "simulator": cuda_simulator_enabled(),
        "gpu_available": gpu_available(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import numba_cuda

        info["numba_cuda"] = getattr(numba_cuda, "__version__", "?")
    except ImportError:
        info["numba_cuda"] = None
    if gpu_available():
        from numba import cuda

        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        info.update(
            name=name,
            compute_capability=list(device.compute_capability),
            multiprocessors=device.MULTIPROCESSOR_COUNT,
            driver=list(cuda.cudadrv.driver.driver.get_version()),
        )
    elif not dry_run:
        raise RuntimeError("no CUDA GPU found (numba.cuda.is_available() is False)")
    try:
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        info["nvidia_smi"] = f"not available: {error}"
    return info


def part_gpu_tests(dry_run: bool, outdir: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "tests/gpu",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        f"--junitxml={outdir / 'gpu_tests.xml'}",
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    print(completed.stdout[-20000:], completed.stderr[-5000:], flush=True)
    last = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else ""
    return {"returncode": completed.returncode, "summary": last}


def part_solve(dry_run: bool) -> dict:
    """The DHS solve alone, device-resident, against the serial solve in fp64."""
    import numpy as np
    from numba import cuda

    from benchmarks.solve import load_cell, make_batch
    from dhs import schedule
    from dhs.solver import Solver

    tree, cell = load_cell()
    batches = (2,) if dry_run else (1000, 3000)
    repeats = 1 if dry_run else 20
    results = []
    serial = Solver(tree, backend="serial")
    for batch in batches:
        a, b, d, rhs = make_batch(cell, batch)
        reference = serial.solve(a, b, d, rhs)
        for dtype in (np.float64, np.float32):
            solver = Solver(tree, backend="cuda", threads=32, dtype=dtype)
            device = [cuda.to_device(np.ascontiguousarray(x, dtype)) for x in (a, b, d, rhs)]
            out = cuda.device_array_like(device[3])
            solver.solve(*device, out=out)  # compiles
            cuda.synchronize()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                solver.solve(*device, out=out)
                cuda.synchronize()
                times.append(time.perf_counter() - start)
            x = out.copy_to_host().astype(np.float64)
            nodes = batch * tree.n
            results.append(
                {
                    "cells": batch,
                    "nodes": nodes,
                    "dtype": np.dtype(dtype).name,
                    "best_ns_per_node": min(times) / nodes * 1e9,
                    "median_ns_per_node": float(np.median(times)) / nodes * 1e9,
                    "max_relative_difference_to_serial_fp64": float(
                        np.abs(x - reference).max() / np.abs(reference).max()
                    ),
                    "dhs_steps_k32": schedule(tree, 32).n_steps,
                }
            )
            print(json.dumps(results[-1]), flush=True)
    return {
        "cell_nodes": tree.n,
        "deepdendrite_a100_dhs16_ns_per_node": {"1000": 0.23, "3000": 0.10},
        "target_ns_per_node_3000_fp64": 0.05,
        "results": results,
    }


def part_engine(dry_run: bool, outdir: Path) -> dict:
    from benchmarks.engine import run_benchmark

    sizes = (2,) if dry_run else (1000, 10000)
    report = run_benchmark(
        sizes=(),
        cuda_sizes=sizes,
        tstop=0.1 if dry_run else 25.0,
        neuron_instances=2 if dry_run else 4,
        check_instances=2 if dry_run else 3,
        rounds=1 if dry_run else 2,
        baselines=("neuron_sequential",),
        profile=False,
        output_path=outdir / "engine_benchmark.json",
        allow_simulator=dry_run,
    )
    return {"report": str(outdir / "engine_benchmark.json"), "targets": report.get("targets")}


def part_differences(dry_run: bool) -> dict:
    """Every engine case in both CUDA schemes against the CPU engine, and a mixed batch
    (three different cells in one :class:`~dhs.engine.Batch`) against each alone."""
    sys.path.insert(0, str(SUPPORT))
    import engine_cuda_check

    size = (
        {"n_instances": 3, "tstop": 1.0, "n_nodes": 12}
        if dry_run
        else {"n_instances": 256, "tstop": 20.0, "n_nodes": 200}
    )
    # the dry run exercises the part; tests/gpu/test_engine_cuda.py simulates every case
    names = ("passive", "builtins") if dry_run else tuple(engine_cuda_check.CASES)
    cases = []
    for scheme in engine_cuda_check.SCHEMES:
        for name in names:
            result = engine_cuda_check.compare(
                name, **size, scheme=scheme, lanes=4 if dry_run else 32
            )
            print(json.dumps(result), flush=True)
            cases.append(result)
    return {"size": size, "cases": cases, "mixed": _mixed_batch(engine_cuda_check, dry_run)}


def _mixed_batch(engine_cuda_check, dry_run: bool) -> dict:
    """Three cells of different shapes and mechanisms in one batch on CUDA, each
    instance against its own model run alone on the CPU."""
    import numpy as np

    from dhs.engine import Batch, Engine

    cells = (("builtins", 40), ("release", 25), ("l5pc", 60)) if not dry_run else (
        ("passive", 12), ("builtins", 9))  # fmt: skip
    n_instances = 2 if dry_run else 64
    tstop = 1.0 if dry_run else 20.0
    models = [engine_cuda_check.model_of(engine_cuda_check.CASES[name], n) for name, n in cells]
    options = [engine_cuda_check.options_of(engine_cuda_check.CASES[name], model, tstop)
               for (name, _), model in zip(cells, models, strict=True)]  # fmt: skip
    report = {"cells": [f"{name} ({n} nodes)" for name, n in cells], "schemes": {}}
    alone = [Engine(m, n_instances).run(o) for m, o in zip(models, options, strict=True)]
    for scheme in ("thread", "lanes"):
        batch = Batch([Engine(m, n_instances, backend="cuda", scheme=scheme) for m in models])
        start = time.perf_counter()
        together = batch.run(options)
        seconds = time.perf_counter() - start
        report["schemes"][scheme] = {
            "seconds": seconds,
            "max_abs_dv_vs_alone_on_cpu_mV": max(
                float(np.abs(a.v - b.v).max()) for a, b in zip(alone, together, strict=True)
            ),
        }
        print(scheme, json.dumps(report["schemes"][scheme]), flush=True)
    return report


def part_l5pc(dry_run: bool, inputs: Path) -> dict:
    """The exported L5PC on the GPU at N = 1,000 and 10,000 (per-instance step
    amplitudes) in both schemes and the cost model's pick, against the CPU engine on
    the first instances."""
    import dataclasses

    import numpy as np

    from dhs.engine import Engine, RunOptions, load_model

    path = inputs / "l5pc.npz"
    meta = json.loads((inputs / "l5pc.json").read_text())
    model = load_model(path)
    tstop = 0.1 if dry_run else 100.0
    sizes = (2,) if dry_run else (1000, 10000)
    checked = 2 if dry_run else 8
    options = RunOptions(tstop, record_nodes=(meta["soma"], meta["apical_tip"]),
                         spike_node=meta["soma"])  # fmt: skip
    results = []
    reference = None
    for n in sizes:
        amplitudes = np.linspace(0.6, 1.2, n)

        def engine_of(count: int, backend: str, scheme="auto", amplitudes=amplitudes) -> Engine:
            engine = Engine(model, count, backend=backend, scheme=scheme)
            engine.set("IClamp.amp", amplitudes[:count], target=meta["step"])
            engine.set("IClamp.del", np.full(count, 20.0), target=meta["step"])
            return engine

        if reference is None or reference[0] != n:
            reference = (n, engine_of(checked, "cpu").run(options))
        cpu = reference[1]
        picked = engine_of(n, "cuda")
        auto = picked.scheme  # resolves the cost model's choice
        choice = dataclasses.asdict(picked.scheme_choice)
        for scheme in ("thread", "lanes"):
            gpu = engine_of(n, "cuda", scheme)
            gpu.run(RunOptions(0.05, record_nodes=(meta["soma"],)))  # compiles
            start = time.perf_counter()
            result = gpu.run(options)
            seconds = time.perf_counter() - start
            entry = {
                "instances": n,
                "scheme": scheme,
                "picked_by_cost_model": scheme == auto,
                "cost_model": choice,
                "nodes": model.n,
                "tstop_ms": tstop,
                "steps": result.n_steps,
                "seconds": seconds,
                "ms_per_step": seconds / result.n_steps * 1e3,
                "instance_steps_per_s": n * result.n_steps / seconds,
                "max_abs_dv_vs_cpu_mV": float(np.abs(result.v[:checked] - cpu.v).max()),
                "instances_checked": checked,
                "spikes_equal": all(
                    np.array_equal(a, b)
                    for a, b in zip(result.spikes[:checked], cpu.spikes, strict=True)
                ),
                "spikes_first_instance": int(result.spikes[0].size),
            }
            print(json.dumps(entry), flush=True)
            results.append(entry)
    return {"model": meta, "results": results}


# ----------------------------------------------------------------------------- prepare
_EXPORT_L5PC = """
import json, sys
from pathlib import Path
from neuron_bridge.compile_mod import load_mod_mechanisms
from neuron_bridge.export import export_model
from published_models import build_l5pc, l5pc_folder

load_mod_mechanisms(l5pc_folder() / "mechanisms")
built = build_l5pc("Step3")
model = export_model()
out = Path(sys.argv[1])
model.save(out / "l5pc.npz")
(out / "l5pc.json").write_text(json.dumps({
    "model": "BluePyOpt examples/l5pc, released parameters, Step3 clamps",
    "nodes": model.n,
    "soma": int(built["soma"].node_index()),
    "apical_tip": int(built["apical_tip"].node_index()),
    "step": built["clamps"][0].hname(),
}))
print("exported", model.summary())
"""


def prepare(inputs: Path) -> None:
    """Export the models the GPU parts run (needs NEURON and the network, for BluePyOpt's
    source distribution), and copy the test cache they read, into ``inputs``."""
    inputs.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(SUPPORT)])
    subprocess.run(
        [sys.executable, "-c", _EXPORT_L5PC, str(inputs)], check=True, cwd=ROOT, env=environment
    )
    sys.path.insert(0, str(SUPPORT))
    from fetched import cache_root, package_root

    # the engine cases read BluePyOpt's .mod files: copy just those, in the cache's layout
    sdist = package_root("bluepyopt", "1.14.26")
    cache = inputs / "test-cache"
    if cache.exists():
        shutil.rmtree(cache)
    for example in ("l5pc", "thalamocortical-cell"):
        relative = sdist.relative_to(cache_root()) / "examples" / example / "mechanisms"
        shutil.copytree(cache_root() / relative, cache / relative)
    (cache / sdist.relative_to(cache_root()).parent / ".unpacked").write_text("ok\n")


# ----------------------------------------------------------------------------- driver
def _run_part(part: str, outdir: Path, dry_run: bool, inputs: Path) -> dict:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(SUPPORT)]
        + ([environment["PYTHONPATH"]] if "PYTHONPATH" in environment else [])
    )
    environment["PYTHONUNBUFFERED"] = "1"
    if (inputs / "test-cache").is_dir():
        environment["DHS_TEST_CACHE"] = str(inputs / "test-cache")
    if dry_run and part != "gpu_tests":
        environment["NUMBA_ENABLE_CUDASIM"] = "1"
    limit = LIMITS[part] * (4 if dry_run else 1)
    command = [
        sys.executable,
        "-m",
        "benchmarks.gpu_check",
        "--part",
        part,
        "--inputs",
        str(inputs),
        str(outdir),
    ] + (["--dry-run"] if dry_run else [])
    start = time.perf_counter()
    with open(outdir / f"{part}.log", "w") as log:
        try:
            completed = subprocess.run(
                command,
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=limit,
            )
            status = "ok" if completed.returncode == 0 else f"failed ({completed.returncode})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {limit} s"
    seconds = time.perf_counter() - start
    result_path = outdir / f"{part}.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    print(f"{part:12s} {status:24s} {seconds:7.1f} s", flush=True)
    return {"status": status, "seconds": seconds, "result": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tasks.py gpu", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="no GPU: the GPU parts under the CUDA simulator, tiny sizes",
    )
    parser.add_argument(
        "--prepare", action="store_true", help="only export the models into OUTDIR (needs NEURON)"
    )
    parser.add_argument(
        "--inputs",
        type=Path,
        default=None,
        help="exported models and test cache (default .gpu_inputs, or "
        "OUTDIR/inputs with --dry-run)",
    )
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    arguments = parser.parse_args(argv)
    outdir = arguments.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    if arguments.prepare:
        prepare(outdir)
        return 0
    inputs = arguments.inputs or (outdir / "inputs" if arguments.dry_run else DEFAULT_INPUTS)
    inputs = inputs.resolve()
    if arguments.part:
        return _child(arguments.part, outdir, arguments.dry_run, inputs)
    started = time.time()
    if arguments.dry_run and not (inputs / "l5pc.npz").exists():
        prepare(inputs)
    summary = {
        "command": "python3 tasks.py gpu" + (" --dry-run" if arguments.dry_run else ""),
        "dry_run": arguments.dry_run,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "parts": {},
    }
    for part in arguments.parts:
        summary["parts"][part] = _run_part(part, outdir, arguments.dry_run, inputs)
        device = summary["parts"].get("device", {}).get("result") or {}
        summary["device"] = device.get("name", "no GPU (simulator)" if arguments.dry_run else "?")
        summary["seconds"] = time.time() - started
        (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = [p for p, r in summary["parts"].items() if r["status"] != "ok"]
    print(
        f"device: {summary['device']}; {time.time() - started:.0f} s; "
        f"{'all parts ok' if not failed else 'failed: ' + ', '.join(failed)}"
    )
    return 1 if failed else 0


def _child(part: str, outdir: Path, dry_run: bool, inputs: Path) -> int:
    from dhs.backends import cuda_simulator_enabled

    if cuda_simulator_enabled():
        sys.setswitchinterval(2e-5)  # the simulated threads contend for the GIL
    if part == "device":
        result = part_device(dry_run)
    elif part == "gpu_tests":
        result = part_gpu_tests(dry_run, outdir)
    elif part == "solve":
        result = part_solve(dry_run)
    elif part == "engine":
        result = part_engine(dry_run, outdir)
    elif part == "differences":
        result = part_differences(dry_run)
    else:
        result = part_l5pc(dry_run, inputs)
    result = {"simulator": cuda_simulator_enabled(), **result}
    (outdir / f"{part}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if part != "gpu_tests" or result["returncode"] in (0, 5) else 1


if __name__ == "__main__":
    raise SystemExit(main())
