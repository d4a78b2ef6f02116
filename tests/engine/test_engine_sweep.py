"""dhs.engine.sweep in this process: chunked sweeps in a Zarr store, identical to one run,
resumable, readable with plain Zarr. (On Dask: ``test_sweep_dask.py``.)

Everything runs the real engine on a small branched model (12 nodes, hh, IClamps and an
ExpSyn with per-instance events) for 20 ms. The interruption test kills a real sweep in
a subprocess with SIGKILL after its first chunk is marked done, then resumes it here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

import dhs.engine.sweep_store as sweep_store
from dhs.engine import CellModel, Engine, ExtraArray, SynapticEvents, finished_chunks
from dhs.engine.sweep import estimate_bytes_per_instance, load_sweep, sweep
from engine_models import random_tree, table
from paths import ROOT as PATHS_ROOT
from paths import SUPPORT

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = str(PATHS_ROOT)
N = 23  # instances: not a multiple of the chunk sizes used
CHUNK = 5
TSTOP = 20.0  # ms
DT = 0.025  # ms
RUN = {
    "tstop": TSTOP,
    "dt": DT,
    "record_nodes": [1, 6, 11],
    "record_every": 2,
    "spike_node": 1,
    "spike_threshold": -20.0,
}


def small_model(n: int = 12, g_pas: float = 1e-4) -> CellModel:
    """A branched tree with NEURON-like coefficients; hh near the root spikes."""
    mechanisms = {
        "pas": table("pas", np.arange(1, n), g=g_pas, e=-65.0),
        "IClamp": table("IClamp", [1], **{"del": 2.0, "dur": 15.0, "amp": 0.2}),
        "ExpSyn": table("ExpSyn", [5], tau=2.0, e=0.0),
        "hh": table("hh", np.arange(1, n), gnabar=0.12, gkbar=0.036, gl=0.0003, el=-54.3),
    }  # fmt: skip NEURON's type order
    events = {"ExpSyn": SynapticEvents(np.array([0]), np.array([3.0]), np.array([0.01]))}
    return CellModel(**random_tree(n, seed=11, reach=3), mechanisms=mechanisms, events=events)


def configure(engine: Engine, indices: np.ndarray) -> None:
    """Every instance a function of its global index only (the sweep's contract)."""
    indices = np.asarray(indices)
    engine.set("IClamp.amp", 0.05 * (indices % 9))  # nA: 0 .. 0.4
    engine.set("pas.g", 1e-4 * (1.0 + 0.1 * (indices % 4)))  # S/cm²
    for j, i in enumerate(indices.tolist()):
        rng = np.random.default_rng([2024, i])
        times = np.sort(rng.uniform(0.0, TSTOP, i % 4))  # ms
        engine.set_events("ExpSyn", 0, times, rng.uniform(0.005, 0.05), instances=j)


def amplitudes(indices) -> np.ndarray:
    """The IClamp amplitude (nA) that :func:`configure` gives each instance."""
    return 0.05 * (np.asarray(indices) % 9)


class Recorder:
    """``configure`` that remembers which global instances it set up."""

    def __init__(self, sleep_after_first: float = 0.0):
        self.calls: list[list[int]] = []
        self.sleep = sleep_after_first

    def __call__(self, engine: Engine, indices: np.ndarray) -> None:
        if self.calls and self.sleep:
            time.sleep(self.sleep)  # slows the sweep down; the results do not change
        self.calls.append(np.asarray(indices).tolist())
        configure(engine, indices)


def with_amplitude(engine: Engine, indices: np.ndarray) -> dict:
    """:func:`configure`, returning each instance's amplitude for the store."""
    configure(engine, indices)
    return {"amplitude": amplitudes(indices), "label": np.stack([indices, 2 * indices], axis=1)}


EXTRA = {
    "amplitude": ExtraArray(units="nA", description="IClamp amplitude"),
    "label": ExtraArray((2,), "int64", ("pair",)),
}


def run_in_subprocess(store: str) -> None:
    """Entry point of the interrupted run (the subprocess imports this module)."""
    sweep(small_model(), N, Recorder(sleep_after_first=2.0), store, chunk_size=CHUNK,
          progress=False, load=False, **RUN)  # fmt: skip


@pytest.fixture(scope="module")
def reference():
    """One Engine.run over all instances, configured with the global indices."""
    engine = Engine(small_model(), N)
    configure(engine, np.arange(N))
    return engine.run(**RUN)


def assert_same(result, reference) -> None:
    assert result.v.shape == reference.v.shape
    assert np.array_equal(result.v, reference.v)
    assert np.array_equal(result.t, reference.t)
    assert np.array_equal(result.record_nodes, reference.record_nodes)
    assert len(result.spikes) == len(reference.spikes) == N
    for mine, theirs in zip(result.spikes, reference.spikes, strict=True):
        assert np.array_equal(mine, theirs)


def markers(store) -> dict[int, float]:
    """The done markers that are set: chunk -> UNIX time."""
    done = zarr.open_group(str(store), mode="r")["chunk_done"][:]
    return {c: float(t) for c, t in enumerate(done) if np.isfinite(t)}


def mtimes(store) -> dict[str, int]:
    """Modification times (ns) of every chunk file of the store (markers included)."""
    found = {}
    for folder, _directories, names in os.walk(store):
        for name in names:
            path = os.path.join(folder, name)
            if f"{os.sep}c{os.sep}" in path or os.path.basename(folder) == "c":
                found[os.path.relpath(path, store)] = os.stat(path).st_mtime_ns
    return found


def leftovers(store) -> list[str]:
    parent = os.path.dirname(os.path.abspath(store))
    return [name for name in os.listdir(parent) if name.endswith(".creating")] + [
        name for _, _, names in os.walk(store) for name in names if name.endswith(".partial")
    ]


# --------------------------------------------------------------------------- results
def test_chunked_sweep_equals_single_run(tmp_path, reference):
    counts = [len(s) for s in reference.spikes]
    assert max(counts) >= 2 and min(counts) == 0  # the sweep covers spikes and silence
    result = sweep(small_model(), N, configure, tmp_path / "chunked", chunk_size=CHUNK,
                   progress=False, **RUN)  # fmt: skip
    assert_same(result, reference)
    assert sorted(markers(tmp_path / "chunked")) == list(range(5))
    assert sorted(os.listdir(tmp_path / "chunked" / "v" / "c")) == [str(c) for c in range(5)]
    assert result.metadata["chunk_size"] == CHUNK and result.metadata["n_chunks"] == 5
    assert result.finished.all()
    one = sweep(small_model(), N, configure, tmp_path / "one", chunk_size=N, progress=False,
                **RUN)  # fmt: skip
    assert_same(one, reference)
    assert markers(tmp_path / "one").keys() == {0}
    assert_same(load_sweep(tmp_path / "chunked"), reference)


def test_store_layout_with_plain_zarr(tmp_path, reference):
    store = tmp_path / "sweep.zarr"
    sweep(small_model(), N, configure, store, chunk_size=CHUNK, progress=False, load=False,
          max_spikes=6, **RUN)  # fmt: skip
    group = zarr.open_group(str(store), mode="r")
    v = group["v"]
    assert v.shape == (N, 3, reference.t.size) and v.chunks == (CHUNK, 3, reference.t.size)
    assert v.metadata.dimension_names == ("instance", "node", "time")
    assert np.array_equal(v[20:23], reference.v[20:23])  # the last, short chunk
    assert np.array_equal(group["time"][:], reference.t) and group["time"].attrs["units"] == "ms"
    assert group["node"][:].tolist() == [1, 6, 11]
    assert group["instance"][:].tolist() == list(range(N))
    counts = group["spike_count"][:]
    times = group["spike_times"][:]
    assert times.shape == (N, 6) and group["spike_times"].chunks == (CHUNK, 6)
    for i, spikes in enumerate(reference.spikes):
        assert counts[i] == spikes.size
        assert np.array_equal(times[i, : counts[i]], spikes)
        assert np.isnan(times[i, counts[i] :]).all()
    attributes = group.attrs["dhs_sweep"]
    assert attributes["format"] == "dhs.engine.sweep/2" and attributes["n_chunks"] == 5
    assert attributes["run_options"]["tstop"] == TSTOP
    assert attributes["settings"]["max_spikes"] == 6
    run = attributes["runs"][-1]
    assert run["scheduler"] == "in-process" and run["chunks_computed"] == 5
    assert run["client"]["cores"] >= 1 and "numpy" in run["client"]["versions"]
    saved = group["model/npz"][:].tobytes()  # the model itself, CellModel.save's bytes
    assert len(saved) > 1000
    assert leftovers(store) == []


def test_records_and_extra_arrays(tmp_path):
    records = [("ExpSyn.g", 0), ("hh.m", 1)]
    engine = Engine(small_model(), N)
    configure(engine, np.arange(N))
    expected = engine.run(**RUN, record=records)
    result = sweep(small_model(), N, with_amplitude, tmp_path / "s", chunk_size=CHUNK,
                   progress=False, record=records, extra_arrays=EXTRA, **RUN)  # fmt: skip
    assert np.array_equal(result.v, expected.v)
    assert sorted(result.records) == sorted(expected.records) == ["ExpSyn.g@0", "hh.m@1"]
    for key, values in expected.records.items():
        assert np.array_equal(result.records[key], values)
    assert np.array_equal(result.extra["amplitude"], amplitudes(np.arange(N)))
    assert result.extra["label"].tolist() == [[i, 2 * i] for i in range(N)]
    group = zarr.open_group(str(tmp_path / "s"), mode="r")
    assert group["hh.m@1"].metadata.dimension_names == ("instance", "time")
    assert group["label"].metadata.dimension_names == ("instance", "pair")
    with pytest.raises(ValueError, match="configure must return a dict"):
        sweep(small_model(), N, configure, tmp_path / "t", chunk_size=CHUNK, progress=False,
              extra_arrays=EXTRA, **RUN)  # fmt: skip


def test_large_chunks_become_shards(tmp_path, reference, monkeypatch):
    """A sweep chunk above INNER_CHUNK_BYTES is one shard (file) of smaller inner chunks."""
    per_instance = 8 * 3 * reference.t.size
    monkeypatch.setattr(sweep_store, "INNER_CHUNK_BYTES", 2 * per_instance)
    store = tmp_path / "sharded"
    result = sweep(small_model(), N, configure, store, chunk_size=6, progress=False, **RUN)
    assert_same(result, reference)
    v = zarr.open_group(str(store), mode="r")["v"]
    assert v.shards == (6, 3, reference.t.size) and v.chunks == (2, 3, reference.t.size)
    assert sorted(os.listdir(store / "v" / "c")) == ["0", "1", "2", "3"]  # one file per chunk


def test_chunk_size_from_memory_budget(tmp_path, reference):
    estimate = estimate_bytes_per_instance(
        small_model(), TSTOP, DT, n_records=3, record_every=2, spike_node=True
    )
    n_times = round(TSTOP / DT) // 2 + 1
    assert estimate["parts"]["recording"] == 2 * 8 * 3 * n_times
    assert estimate["total"] == sum(estimate["parts"].values())
    # the sweep adds the padded copy of the spike times it stores (and any extra arrays)
    per_instance = estimate["total"] + 8 * (n_times + 1)
    budget = int(3.5 * per_instance)
    result = sweep(small_model(), N, configure, tmp_path, memory_budget_bytes=budget,
                   progress=False, **RUN)  # fmt: skip
    assert_same(result, reference)
    memory = result.metadata["memory"]
    assert result.metadata["chunk_size"] == 3 and result.metadata["n_chunks"] == 8
    assert memory["bytes_per_instance"] == per_instance
    assert memory["chunk_bytes"] == 3 * per_instance <= budget
    assert memory["budget_bytes"] == budget
    assert memory["parts"] == {**estimate["parts"], "stored_spikes": 8 * (n_times + 1),
                               "extra_arrays": 0}  # fmt: skip
    # Resuming with another budget keeps the existing chunk size (chunks stay valid).
    again = sweep(small_model(), N, configure, tmp_path, memory_budget_bytes=budget * 4,
                  progress=False, **RUN)  # fmt: skip
    assert again.metadata["chunk_size"] == 3
    # The default budget: a fraction of the available RAM.
    default = sweep(small_model(), N, configure, tmp_path / "default", progress=False, **RUN)
    assert default.metadata["memory"]["budget_source"].startswith("0.25 of available RAM")
    assert default.metadata["chunk_size"] == N  # this small sweep fits in one chunk
    assert_same(default, reference)


# --------------------------------------------------------------------------- resumption
def test_interrupted_sweep_resumes_without_recomputing(tmp_path, reference):
    store = tmp_path / "killed"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_engine_sweep as t; "
        "t.run_in_subprocess(sys.argv[2])"
    )
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [ROOT, str(SUPPORT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, TESTS, str(store)], cwd=ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120.0
        while not (store / "chunk_done" / "c" / "0").exists():  # chunk 0's done marker
            if process.poll() is not None:
                pytest.fail(f"the sweep ended early: {process.communicate()[1].decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no chunk was done within 120 s")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = markers(store)
    files = mtimes(store)
    assert 1 <= len(finished) < 5  # interrupted after the first chunk, before the last
    with pytest.raises(ValueError, match="incomplete"):
        load_sweep(store)
    partial = load_sweep(store, partial=True)
    assert partial.finished[:CHUNK].all() and not partial.finished.all()
    assert np.array_equal(partial.v[:CHUNK], reference.v[:CHUNK])

    stale = store / "v" / "c" / "1" / "0" / "0.abc123.partial"  # as a kill mid-write leaves
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a chunk")
    recorder = Recorder()
    resumed = sweep(small_model(), N, recorder, store, chunk_size=CHUNK, progress=False, **RUN)
    assert [call[0] // CHUNK for call in recorder.calls] == sorted(set(range(5)) - set(finished))
    assert {c: markers(store)[c] for c in finished} == finished  # untouched
    after = mtimes(store)
    assert {name: after[name] for name in files} == files  # no file written again
    uninterrupted = sweep(small_model(), N, configure, tmp_path / "whole", chunk_size=CHUNK,
                          progress=False, **RUN)  # fmt: skip
    assert np.array_equal(resumed.v, uninterrupted.v)
    assert all(np.array_equal(a, b) for a, b in zip(resumed.spikes, uninterrupted.spikes,
                                                    strict=True))  # fmt: skip
    assert_same(resumed, reference)
    assert leftovers(store) == []
    runs = resumed.metadata["runs"]  # the killed run's record has no end
    assert len(runs) == 2 and runs[0]["finished"] is None and runs[1]["finished"]


def test_finished_sweep_is_not_recomputed(tmp_path, reference):
    sweep(small_model(), N, configure, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    before = mtimes(tmp_path)
    recorder = Recorder()
    result = sweep(small_model(), N, recorder, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    assert recorder.calls == [] and mtimes(tmp_path) == before
    assert_same(result, reference)
    assert len(result.metadata["runs"]) == 1  # a call that computes nothing leaves no record


def test_damaged_chunks_are_detected_and_recomputed(tmp_path, reference):
    sweep(small_model(), N, configure, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    truncated = tmp_path / "v" / "c" / "2" / "0" / "0"
    size = truncated.stat().st_size
    with open(truncated, "r+b") as stream:
        stream.truncate(size // 2)
    garbage = tmp_path / "spike_times" / "c" / "3" / "0"  # right size, wrong bytes
    garbage.write_bytes(b"\0" * garbage.stat().st_size)
    os.remove(tmp_path / "spike_count" / "c" / "4")  # a lost file reads as the fill value
    with pytest.raises(ValueError, match=r"damaged or missing files in finished chunks 2, 3, 4"):
        load_sweep(tmp_path)
    before = mtimes(tmp_path)
    recorder = Recorder()
    result = sweep(small_model(), N, recorder, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    assert recorder.calls == [list(range(10, 15)), list(range(15, 20)), list(range(20, 23))]
    after = mtimes(tmp_path)
    assert all(after[name] == before[name] for name in before
               if name.split(os.sep)[2] in ("0", "1") and name.startswith("v"))  # fmt: skip
    assert truncated.stat().st_size == size
    assert_same(result, reference)
    # verify=False trusts the markers: nothing is read back, nothing recomputed
    truncated.write_bytes(b"")
    recorder = Recorder()
    sweep(small_model(), N, recorder, tmp_path, chunk_size=CHUNK, progress=False, load=False,
          verify=False, **RUN)  # fmt: skip
    assert recorder.calls == []


def test_incomplete_sweep_names_missing_chunks(tmp_path, reference):
    sweep(small_model(), N, configure, tmp_path, chunk_size=CHUNK, progress=False, load=False,
          **RUN)  # fmt: skip
    done = zarr.open_group(str(tmp_path), mode="r+")["chunk_done"]
    done[1] = np.nan
    done[4] = np.nan
    assert finished_chunks(tmp_path).tolist() == [True, False, True, True, False]
    with pytest.raises(ValueError) as error:
        load_sweep(tmp_path)
    message = str(error.value)
    assert "2 of 5 chunks" in message and "chunks 1, 4" in message
    partial = load_sweep(tmp_path, partial=True)
    expected = np.repeat([True, False, True, True, False], CHUNK)[:N]
    assert partial.finished.tolist() == expected.tolist()
    assert np.isnan(partial.v[~expected]).all()
    assert np.array_equal(partial.v[expected], reference.v[expected])
    assert partial.spikes[5] is None and np.array_equal(partial.spikes[2], reference.spikes[2])
    with pytest.raises(ValueError, match="holds no sweep"):
        load_sweep(tmp_path / "nothing")


# --------------------------------------------------------------------------- mismatches
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tstop": 10.0}, "tstop"),
        ({"dt": 0.05}, "dt"),
        ({"record_nodes": [1, 6]}, "record_nodes"),
        ({"spike_threshold": -10.0}, "spike_threshold"),
        ({"chunk_size": 4}, "chunk_size"),
        ({"n_instances": N + 1}, "n_instances"),
        ({"model": "other"}, "model_sha256"),
        ({"tag": "v2"}, "tag"),
        ({"extra_arrays": EXTRA}, "extra_arrays"),
    ],
)
def test_resuming_with_other_settings_raises(tmp_path, change, named):
    arguments = {"model": small_model(), "n_instances": N, "chunk_size": CHUNK, **RUN}
    first = sweep(configure=configure, store=tmp_path, progress=False, load=False,
                  **arguments)  # fmt: skip
    if change.get("model") == "other":
        change = {"model": small_model(g_pas=2e-4)}
    arguments.update(change)
    before = mtimes(tmp_path)
    with pytest.raises(ValueError, match=f"other settings.*{named}"):
        sweep(configure=configure, store=tmp_path, progress=False, **arguments)
    assert load_sweep(tmp_path).metadata["fingerprint"] == first.metadata["fingerprint"]
    assert mtimes(tmp_path) == before


def test_something_else_is_not_overwritten(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a sweep store"):
        sweep(small_model(), N, configure, other, chunk_size=CHUNK, progress=False, **RUN)
    assert os.listdir(other) == ["notes.txt"]
    old = tmp_path / "old"  # the npz format of dhs.engine.sweep/1
    old.mkdir()
    (old / "sweep.json").write_text("{}")
    with pytest.raises(ValueError, match="npz format"):
        load_sweep(old)


def test_invalid_arguments(tmp_path):
    model = small_model()
    with pytest.raises(ValueError, match="n_instances"):
        sweep(model, 0, configure, tmp_path, tstop=1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        sweep(model, 3, configure, tmp_path, tstop=1.0, chunk_size=0)
    with pytest.raises(ValueError, match="configure"):
        sweep(model, 3, None, tmp_path, tstop=1.0)
    with pytest.raises(ValueError, match="tag"):
        sweep(model, 3, configure, tmp_path, tstop=1.0, tag=object())
    with pytest.raises(ValueError, match="client"):
        sweep(model, 3, configure, tmp_path, tstop=1.0, client=42)
    with pytest.raises(ValueError, match="engine_options"):
        sweep(model, 3, configure, tmp_path, tstop=1.0, engine_options={"threads": 2})
    with pytest.raises(ValueError, match="already has an array 'v'"):
        sweep(model, 3, configure, tmp_path, tstop=1.0, extra_arrays={"v": ExtraArray()})
    with pytest.raises(ValueError, match="no mechanism"):
        sweep(model, 3, configure, tmp_path, tstop=1.0, record=[("Nope.m", 1)])
    with pytest.raises(ValueError, match="directory path"):
        sweep(model, 3, configure, "s3://bucket/sweep", tstop=1.0)
    assert os.listdir(tmp_path) == []  # nothing was created


# --------------------------------------------------------------------------- progress
def test_progress_bar(tmp_path, capsys):
    sweep(small_model(), N, configure, tmp_path / "a", chunk_size=CHUNK, load=False, **RUN)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 6  # the start, then one line per chunk (stderr is not a tty here)
    assert lines[-1].startswith("sweep [" + "#" * 30 + "] 5/5 chunks, 23/23 instances")
    assert "instances/s" in lines[-1] and "ETA 0:00:00" in lines[-1]
    assert "1/5 chunks, 5/23 instances" in lines[1] and "ETA " in lines[1]
    sweep(small_model(), N, configure, tmp_path / "a", chunk_size=CHUNK, load=False, **RUN)
    assert "(5 chunks resumed)" in capsys.readouterr().err
    sweep(small_model(), N, configure, tmp_path / "b", chunk_size=CHUNK, load=False,
          progress=False, **RUN)  # fmt: skip
    assert capsys.readouterr().err == ""
