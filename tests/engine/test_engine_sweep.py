"""dhs.engine.sweep: chunked sweeps on disk, identical to one run, and resumable.

Everything runs the real engine on a small branched model (12 nodes, hh, IClamps and an
ExpSyn with per-instance events) for 20 ms. The interruption test kills a real sweep in
a subprocess with SIGKILL after its first chunk file appears, then resumes it here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dhs.engine import CellModel, Engine, SynapticEvents
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


def run_in_subprocess(directory: str) -> None:
    """Entry point of the interrupted run (the subprocess imports this module)."""
    sweep(small_model(), N, Recorder(sleep_after_first=2.0), directory, chunk_size=CHUNK,
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


def chunk_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith("chunk_"))


def mtimes(directory) -> dict[str, int]:
    return {name: os.stat(os.path.join(directory, name)).st_mtime_ns
            for name in chunk_files(directory)}  # fmt: skip


# --------------------------------------------------------------------------- results
def test_chunked_sweep_equals_single_run(tmp_path, reference):
    counts = [len(s) for s in reference.spikes]
    assert max(counts) >= 2 and min(counts) == 0  # the sweep covers spikes and silence
    result = sweep(small_model(), N, configure, tmp_path / "chunked", chunk_size=CHUNK,
                   progress=False, **RUN)  # fmt: skip
    assert_same(result, reference)
    assert chunk_files(tmp_path / "chunked") == [f"chunk_{c:05d}.npz" for c in range(5)]
    assert result.metadata["chunk_size"] == CHUNK and result.metadata["n_chunks"] == 5
    one = sweep(small_model(), N, configure, tmp_path / "one", chunk_size=N, progress=False,
                **RUN)  # fmt: skip
    assert_same(one, reference)
    assert chunk_files(tmp_path / "one") == ["chunk_00000.npz"]
    assert_same(load_sweep(tmp_path / "chunked"), reference)


def test_chunk_file_contents(tmp_path, reference):
    sweep(small_model(), N, configure, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    with np.load(tmp_path / "chunk_00004.npz") as data:  # the last, short chunk
        assert np.array_equal(data["instances"], np.arange(20, 23))
        assert np.array_equal(data["v"], reference.v[20:23])
        offsets = data["spike_offsets"]
        assert offsets.tolist() == np.cumsum([0] + [len(s) for s in reference.spikes[20:]]).tolist()
        assert np.array_equal(data["spike_times"], np.concatenate(reference.spikes[20:]))
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert leftovers == []


def test_chunk_size_from_memory_budget(tmp_path, reference):
    estimate = estimate_bytes_per_instance(
        small_model(), TSTOP, DT, n_records=3, record_every=2, spike_node=True
    )
    n_times = round(TSTOP / DT) // 2 + 1
    assert estimate["parts"]["recording"] == 2 * 8 * 3 * n_times
    assert estimate["total"] == sum(estimate["parts"].values())
    budget = int(3.5 * estimate["total"])
    result = sweep(small_model(), N, configure, tmp_path, memory_budget_bytes=budget,
                   progress=False, **RUN)  # fmt: skip
    assert_same(result, reference)
    memory = result.metadata["memory"]
    assert result.metadata["chunk_size"] == 3 and result.metadata["n_chunks"] == 8
    assert memory["bytes_per_instance"] == estimate["total"]
    assert memory["chunk_bytes"] == 3 * estimate["total"] <= budget
    assert memory["budget_bytes"] == budget and memory["parts"] == estimate["parts"]
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
    directory = tmp_path / "killed"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_engine_sweep as t; "
        "t.run_in_subprocess(sys.argv[2])"
    )
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [ROOT, str(SUPPORT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, TESTS, str(directory)], cwd=ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120.0
        while not (directory / "chunk_00000.npz").exists():
            if process.poll() is not None:
                pytest.fail(f"the sweep ended early: {process.communicate()[1].decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no chunk file appeared within 120 s")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = mtimes(directory)
    assert 1 <= len(finished) < 5  # interrupted after the first chunk, before the last
    with pytest.raises(ValueError, match="incomplete"):
        load_sweep(directory)

    stale = directory / ".chunk_00001.npz.abc123.tmp"  # as a kill during a write leaves
    stale.write_bytes(b"PK\3\4 half a chunk")
    recorder = Recorder()
    resumed = sweep(small_model(), N, recorder, directory, chunk_size=CHUNK, progress=False,
                    **RUN)  # fmt: skip
    done = {int(name[6:11]) for name in finished}
    assert [call[0] // CHUNK for call in recorder.calls] == sorted(set(range(5)) - done)
    assert {name: mtimes(directory)[name] for name in finished} == finished  # untouched
    uninterrupted = sweep(small_model(), N, configure, tmp_path / "whole", chunk_size=CHUNK,
                          progress=False, **RUN)  # fmt: skip
    assert np.array_equal(resumed.v, uninterrupted.v)
    assert all(np.array_equal(a, b) for a, b in zip(resumed.spikes, uninterrupted.spikes,
                                                    strict=True))  # fmt: skip
    assert_same(resumed, reference)
    assert [name for name in os.listdir(directory) if name.endswith(".tmp")] == []


def test_finished_sweep_is_not_recomputed(tmp_path, reference):
    sweep(small_model(), N, configure, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    before = mtimes(tmp_path)
    recorder = Recorder()
    result = sweep(small_model(), N, recorder, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    assert recorder.calls == [] and mtimes(tmp_path) == before
    assert_same(result, reference)


def test_truncated_chunk_is_detected_and_recomputed(tmp_path, reference):
    sweep(small_model(), N, configure, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    path = tmp_path / "chunk_00002.npz"
    size = path.stat().st_size
    with open(path, "r+b") as stream:
        stream.truncate(size // 2)
    garbage = tmp_path / "chunk_00003.npz"  # right size, wrong bytes
    garbage.write_bytes(b"\0" * garbage.stat().st_size)
    with pytest.raises(ValueError, match=r"chunks 2, 3 \(chunk_00002.npz, chunk_00003.npz\)"):
        load_sweep(tmp_path)
    before = mtimes(tmp_path)
    recorder = Recorder()
    result = sweep(small_model(), N, recorder, tmp_path, chunk_size=CHUNK, progress=False, **RUN)
    assert recorder.calls == [list(range(10, 15)), list(range(15, 20))]
    after = mtimes(tmp_path)
    assert all(after[name] == before[name] for name in before
               if name not in ("chunk_00002.npz", "chunk_00003.npz"))  # fmt: skip
    assert path.stat().st_size == size
    assert_same(result, reference)


def test_incomplete_sweep_names_missing_chunks(tmp_path):
    sweep(small_model(), N, configure, tmp_path, chunk_size=CHUNK, progress=False, load=False,
          **RUN)  # fmt: skip
    os.remove(tmp_path / "chunk_00001.npz")
    os.remove(tmp_path / "chunk_00004.npz")
    with pytest.raises(ValueError) as error:
        load_sweep(tmp_path)
    message = str(error.value)
    assert "2 of 5 chunks" in message and "chunks 1, 4" in message
    assert "chunk_00001.npz" in message and "chunk_00004.npz" in message
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
    ],
)
def test_resuming_with_other_settings_raises(tmp_path, change, named):
    arguments = {"model": small_model(), "n_instances": N, "chunk_size": CHUNK, **RUN}
    first = sweep(configure=configure, directory=tmp_path, progress=False, load=False,
                  **arguments)  # fmt: skip
    if change.get("model") == "other":
        change = {"model": small_model(g_pas=2e-4)}
    arguments.update(change)
    with pytest.raises(ValueError, match=f"other settings.*{named}"):
        sweep(configure=configure, directory=tmp_path, progress=False, **arguments)
    assert load_sweep(tmp_path).metadata["fingerprint"] == first.metadata["fingerprint"]


def test_chunk_of_another_sweep_is_not_overwritten(tmp_path):
    sweep(small_model(), N, configure, tmp_path / "a", chunk_size=CHUNK, progress=False,
          load=False, **RUN)  # fmt: skip
    os.remove(tmp_path / "a" / "sweep.json")
    before = mtimes(tmp_path / "a")
    with pytest.raises(ValueError, match="belongs to another sweep"):
        sweep(small_model(), N, configure, tmp_path / "a", chunk_size=CHUNK, progress=False,
              **{**RUN, "tstop": 10.0})  # fmt: skip
    assert not (tmp_path / "a" / "sweep.json").exists()  # nothing written
    assert mtimes(tmp_path / "a") == before


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
