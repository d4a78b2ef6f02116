"""The sweep's default scheduler, measured: the in-process loop against a local Dask
cluster of worker processes, on this machine.

``python -m studies.surrogate.scheduler_timing [--output timing.json]`` runs the same
surrogate sweeps (:func:`studies.surrogate.recipe.make_dataset`) in this process (one
chunk after another, the engine on every core) and on a ``LocalCluster(processes=True,
n_workers=<cores>, threads_per_worker=1)``, alternately, a few times each; the cluster's
start-up and its first sweep on fresh workers (which import dhs, read the model and
load the cached kernels) are timed apart. Results agree bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

from .recipe import SurrogateSettings, build_cell, make_dataset

#: (name, settings, trials): a small sweep, the test's size, and a moderate full cell.
CASES = (
    ("small: 247 nodes, 64 trials of 20 ms",
     SurrogateSettings(segment_length=50.0, n_synapses=10, tstop=20.0, weight=0.01, rate_hz=20.0),
     64),
    ("test size: 247 nodes, 1,000 trials of 50 ms",
     SurrogateSettings(segment_length=50.0, n_synapses=10, tstop=50.0, weight=0.01, rate_hz=20.0),
     1000),
    ("moderate: 5,550 nodes, 100 synapses, 48 trials of 100 ms",
     SurrogateSettings(segment_length=1.0, n_synapses=100, tstop=100.0, weight=0.004),
     48),
)  # fmt: skip


def _same(first: str, second: str) -> bool:
    import zarr

    a, b = zarr.open_group(first, mode="r"), zarr.open_group(second, mode="r")
    return all(
        np.array_equal(a[name][:], b[name][:], equal_nan=True)
        for name in ("v", "spike_times", "spike_count", "input_times", "input_count")
    )


def measure(repeats: int = 3, cores: int | None = None) -> dict:
    """Seconds per case and scheduler: each case ``repeats`` times, the two schedulers
    alternating (so that load from other programs hits both alike); the cluster's
    start-up and the first sweep on fresh workers apart."""
    from distributed import Client, LocalCluster
    from neuron import h

    cores = cores or len(os.sched_getaffinity(0))
    results = {"cores": cores, "repeats": repeats, "cases": {}}
    folder = tempfile.mkdtemp(prefix="dhs-scheduler-timing-")
    count = iter(range(10**6))

    def timed(settings, trials, cell, client=None) -> tuple[float, str]:
        path = os.path.join(folder, f"{next(count)}.zarr")
        return make_dataset(path, trials, settings, cell=cell, client=client,
                            progress=False)[1], path  # fmt: skip

    try:
        began = time.perf_counter()
        cluster = LocalCluster(n_workers=cores, threads_per_worker=1, processes=True,
                               dashboard_address=None)  # fmt: skip
        client = Client(cluster)
        results["cluster start"] = time.perf_counter() - began
        try:
            for k, (name, settings, trials) in enumerate(CASES):
                for section in list(h.allsec()):
                    h.delete_section(sec=section)
                cell = build_cell(settings)
                entry = {"in-process": [], "LocalCluster": []}
                first, _ = timed(settings, 2, cell)  # this process: kernels compiled or loaded
                entry["in-process, first 2 trials"] = first
                if k == 0:  # fresh workers import dhs, read the model, load the kernels
                    entry["LocalCluster, fresh workers"], _ = timed(settings, trials, cell, client)
                else:
                    entry["LocalCluster, first 2 trials"], _ = timed(settings, 2, cell, client)
                same = True
                for _ in range(repeats):
                    seconds, local = timed(settings, trials, cell)
                    entry["in-process"].append(seconds)
                    seconds, remote = timed(settings, trials, cell, client)
                    entry["LocalCluster"].append(seconds)
                    same = same and _same(local, remote)
                    shutil.rmtree(local)
                    shutil.rmtree(remote)
                entry["identical"] = same
                entry["best"] = {key: min(entry[key]) for key in ("in-process", "LocalCluster")}
                results["cases"][name] = entry
                cell.delete()
        finally:
            client.close()
            cluster.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args(argv)
    results = measure(arguments.repeats)
    text = json.dumps(results, indent=2)
    print(text)
    if arguments.output:
        with open(arguments.output, "w", encoding="utf-8") as stream:
            stream.write(text + "\n")


if __name__ == "__main__":
    main()
