"""dhs.engine.sweep on Dask: real worker processes, no mocks.

One ``LocalCluster(processes=True, n_workers=2, threads_per_worker=1)`` serves the
module. Each test runs the small model of ``test_engine_sweep.py`` (12 nodes, 20 ms) and
checks against the same sweep in this process, bit for bit:

(a) the sweep on the cluster equals the in-process one; (b) a worker that dies in the
middle of a chunk loses nothing; (c) a client killed with SIGKILL resumes without
computing any finished chunk again; (d) a reader sees the finished chunks while a sweep
runs; (e) a finished store opens with plain Zarr and xarray in a process without dhs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import zarr
from test_engine_sweep import (
    CHUNK,
    EXTRA,
    RUN,
    N,
    assert_same,
    configure,
    markers,
    mtimes,
    small_model,
    with_amplitude,
)

from dhs.engine import Engine, finished_chunks, load_sweep, sweep
from paths import ROOT as PATHS_ROOT
from paths import SUPPORT

distributed = pytest.importorskip("distributed")

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = str(PATHS_ROOT)
RECORDS = [("ExpSyn.g", 0), ("hh.m", 1)]


@dataclass(frozen=True)
class Slow:
    """``configure`` that takes ``seconds`` longer per chunk (results unchanged)."""

    seconds: float

    def __call__(self, engine: Engine, indices: np.ndarray) -> None:
        time.sleep(self.seconds)
        configure(engine, indices)


@dataclass(frozen=True)
class DieOnce:
    """``configure`` whose worker process dies (``os._exit``) the first time it sets up
    the chunk starting at ``start``; a flag file makes it happen once."""

    flag: str
    start: int

    def __call__(self, engine: Engine, indices: np.ndarray) -> None:
        if int(indices[0]) == self.start and not os.path.exists(self.flag):
            with open(self.flag, "w") as stream:
                stream.write(str(os.getpid()))
            os._exit(1)
        configure(engine, indices)


def run_client_in_subprocess(address: str, store: str) -> None:
    """Entry point of the client that the test kills (imports this module)."""
    sweep(small_model(), N, Slow(1.0), store, chunk_size=CHUNK, client=address,
          progress=False, load=False, **RUN)  # fmt: skip


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR,
    )  # fmt: skip
    with distributed.Client(cluster) as connected:
        yield connected
    cluster.close()


@pytest.fixture(scope="module")
def reference():
    engine = Engine(small_model(), N)
    configure(engine, np.arange(N))
    return engine.run(**RUN, record=RECORDS)


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    """The store of the sweep in this process (the default scheduler)."""
    store = tmp_path_factory.mktemp("in_process") / "sweep.zarr"
    sweep(small_model(), N, with_amplitude, store, chunk_size=CHUNK, progress=False,
          load=False, record=RECORDS, extra_arrays=EXTRA, **RUN)  # fmt: skip
    return store


@pytest.fixture(scope="module")
def in_process(local_store):
    return load_sweep(local_store)


# --------------------------------------------------------------------------- (a)
def test_cluster_sweep_equals_in_process(tmp_path, client, in_process, reference):
    assert_same(in_process, reference)
    result = sweep(small_model(), N, with_amplitude, tmp_path / "s", client=client,
                   progress=False, record=RECORDS, extra_arrays=EXTRA, **RUN)  # fmt: skip
    assert_same(result, reference)
    for key in reference.records:
        assert np.array_equal(result.records[key], in_process.records[key])
    for key in EXTRA:
        assert np.array_equal(result.extra[key], in_process.extra[key])
    metadata = result.metadata
    # the chunk from the workers' own memory reports, then 2 chunks per worker thread
    assert metadata["chunk_size"] == 6 and metadata["n_chunks"] == 4
    assert "worker's memory" in metadata["memory"]["budget_source"]
    run = metadata["runs"][-1]
    assert run["scheduler"].startswith("dask tcp://") and run["chunks_computed"] == 4
    assert len(run["workers"]) == 2
    assert all(worker["engine_threads"] == max(1, worker["cores"] // 2)
               for worker in run["workers"])  # fmt: skip
    assert sum(run["chunks_by_host"].values()) == 4


# --------------------------------------------------------------------------- (b)
def test_worker_killed_mid_chunk_loses_nothing(tmp_path, client, reference):
    flag = tmp_path / "died"
    before = set(client.scheduler_info()["workers"])
    result = sweep(small_model(), N, DieOnce(str(flag), 2 * CHUNK), tmp_path / "s",
                   chunk_size=CHUNK, client=client, progress=False, **RUN)  # fmt: skip
    assert flag.exists()  # a worker process did die, in the middle of chunk 2
    assert_same(result, reference)
    assert result.metadata["runs"][-1]["chunks_computed"] == 5
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert set(client.scheduler_info()["workers"]) != before


# --------------------------------------------------------------------------- (c)
def test_killed_client_resumes_without_recomputing(tmp_path, client, reference):
    store = tmp_path / "killed.zarr"
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import test_sweep_dask as t; "
        "t.run_client_in_subprocess(sys.argv[3], sys.argv[4])"
    )
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [ROOT, *filter(None, [environment.get("PYTHONPATH")])]
    )
    address = client.scheduler.address
    process = subprocess.Popen(
        [sys.executable, "-c", code, TESTS, str(SUPPORT), address, str(store)], cwd=ROOT,
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120.0
        while not (store / "chunk_done" / "c").exists() or not os.listdir(
            store / "chunk_done" / "c"
        ):
            if process.poll() is not None:
                pytest.fail(f"the client ended early: {process.communicate()[1].decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no chunk was done within 120 s")
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)  # the client process (its own group)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = markers(store)
    files = mtimes(store)
    assert 1 <= len(finished) < 5
    result = sweep(small_model(), N, configure, store, chunk_size=CHUNK, client=client,
                   progress=False, **RUN)  # fmt: skip
    assert {c: markers(store)[c] for c in finished} == finished  # not computed again
    after = mtimes(store)
    assert {name: after[name] for name in files} == files
    assert result.metadata["runs"][-1]["chunks_to_compute"] <= 5 - len(finished)
    assert result.metadata["runs"][0]["finished"] is None  # the killed client's run
    assert_same(result, reference)


# --------------------------------------------------------------------------- (d)
def test_reader_sees_finished_chunks_while_running(tmp_path, client, reference):
    store = tmp_path / "growing.zarr"
    outcome = {}

    def run() -> None:
        try:
            outcome["result"] = sweep(small_model(), N, Slow(0.5), store, chunk_size=CHUNK,
                                      client=client, progress=False, **RUN)  # fmt: skip
        except BaseException as error:  # reported below
            outcome["error"] = error

    writer = threading.Thread(target=run)
    writer.start()
    seen = []
    try:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            if (store / "zarr.json").exists():
                done = finished_chunks(store)
                if 1 <= done.sum() < done.size:
                    seen.append(done)
                    break
            time.sleep(0.01)
        assert seen, "never saw the sweep between its first and its last chunk"
        partial = load_sweep(store, partial=True)  # a reader with dhs
        rows = partial.finished
        assert rows.any() and not rows.all()
        assert np.array_equal(partial.v[rows], reference.v[rows])
        group = zarr.open_group(str(store), mode="r")  # and one without
        first = int(np.flatnonzero(np.isfinite(group["chunk_done"][:]))[0])
        rows = slice(first * CHUNK, min(N, (first + 1) * CHUNK))
        assert np.array_equal(group["v"][rows], reference.v[rows])
    finally:
        writer.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert_same(outcome["result"], reference)


# --------------------------------------------------------------------------- (e)
READER = """
import json, sys
import numpy as np, xarray, zarr
store = sys.argv[1]
group = zarr.open_group(store, mode="r")
dataset = xarray.open_zarr(store)
out = {
    "dims": {k: int(v) for k, v in dataset.sizes.items()},
    "v_dims": list(dataset["v"].dims),
    "time_units": dataset["time"].attrs["units"],
    "done": bool(np.isfinite(dataset["chunk_done"].values).all()),
    "fingerprint": group.attrs["dhs_sweep"]["fingerprint"],
    "dhs_imported": any(name == "dhs" or name.startswith("dhs.") for name in sys.modules),
}
np.savez(sys.argv[2], v_zarr=group["v"][:], v_xarray=dataset["v"].values,
         time=dataset["time"].values, node=dataset["node"].values,
         spike_times=dataset["spike_times"].values, spike_count=dataset["spike_count"].values,
         m=dataset["hh.m@1"].values, amplitude=dataset["amplitude"].values)
print(json.dumps(out))
"""


def test_finished_store_opens_without_dhs(tmp_path, local_store, in_process, reference):
    store = str(local_store)
    output = tmp_path / "read.npz"
    completed = subprocess.run(
        [sys.executable, "-c", READER, store, str(output)], cwd=str(tmp_path),
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not found["dhs_imported"]
    assert found["dims"]["instance"] == N and found["dims"]["node"] == 3
    assert found["v_dims"] == ["instance", "node", "time"] and found["time_units"] == "ms"
    assert found["done"] and found["fingerprint"] == in_process.metadata["fingerprint"]
    with np.load(output) as arrays:
        assert np.array_equal(arrays["v_zarr"], reference.v)
        assert np.array_equal(arrays["v_xarray"], reference.v)
        assert np.array_equal(arrays["time"], reference.t)
        assert arrays["node"].tolist() == [1, 6, 11]
        assert np.array_equal(arrays["m"], reference.records["hh.m@1"])
        assert np.array_equal(arrays["amplitude"], in_process.extra["amplitude"])
        for i, spikes in enumerate(reference.spikes):
            count = arrays["spike_count"][i]
            assert np.array_equal(arrays["spike_times"][i, :count], spikes)
