"""Batches of different cells (:class:`dhs.engine.Batch`): every instance's result is the
one its own engine gives alone, bit for bit, however the chunks are shared out."""

from __future__ import annotations

import numpy as np
import pytest

import engine_models
from dhs.engine import Batch, Engine, RunOptions

#: Three cells of different shapes and mechanism sets, with instances of each.
CELLS = (("builtins", 40, 3, 5), ("release", 25, 5, 1), ("l5pc", 60, 7, 17))


def _engines(cell_of, **options) -> list[Engine]:
    engines = []
    for case, n_nodes, seed, n_instances in CELLS:
        engine = Engine(cell_of(case, n_nodes, seed), n_instances, **options)
        amplitudes = engine.get("IClamp.amp")[:, 0] * np.linspace(0.5, 1.5, n_instances)
        engine.set("IClamp.amp", amplitudes, target=0)
        engines.append(engine)
    return engines


def _options(engines: list[Engine]) -> list[RunOptions]:
    return [
        engine_models.options_of(engine_models.CASES[case], engine.model, 5.0)
        for (case, *_), engine in zip(CELLS, engines, strict=True)
    ]


def _assert_identical(one, other) -> None:
    assert np.array_equal(one.v, other.v)
    assert np.array_equal(one.v_final, other.v_final)
    assert one.records.keys() == other.records.keys()
    for key in one.records:
        assert np.array_equal(one.records[key], other.records[key]), key
    assert all(np.array_equal(a, b) for a, b in zip(one.spikes, other.spikes, strict=True))


@pytest.mark.parametrize("workers, chunk", [(1, None), (2, None), (2, 1), (2, 4), (3, 2)], ids=str)
def test_batch_equals_each_engine_alone(cell_of, workers, chunk):
    alone_engines = _engines(cell_of, workers=1)
    options = _options(alone_engines)
    alone = [engine.run(option) for engine, option in zip(alone_engines, options, strict=True)]
    assert all(result.spikes is not None for result in alone)
    assert sum(int(s.size) for result in alone for s in result.spikes) > 0, "nothing spikes"
    together = Batch(_engines(cell_of, chunk=chunk), workers=workers).run(options)
    for one, other in zip(alone, together, strict=True):
        _assert_identical(one, other)


def test_single_instance_and_narrow_chunks_equal_wide_ones(cell_of):
    """A chunk of one instance (no padding) computes what a wide chunk does."""
    model = cell_of("l5pc", 60, 7)
    options = engine_models.options_of(engine_models.CASES["l5pc"], model, 5.0)
    wide = Engine(model, 9, chunk=16, workers=1).run(options)
    for chunk in (1, 2, 4):
        _assert_identical(wide, Engine(model, 9, chunk=chunk, workers=2).run(options))
    single = Engine(model, 1).run(options)
    assert np.array_equal(single.v[0], wide.v[0])


def test_auto_width_and_row_width(cell_of):
    """The default chunk: WIDTH, never wider than a worker's share; the stored rows are
    as wide as the widest chunk (no lanes that no chunk uses)."""
    from dhs.engine import storage

    assert storage.auto_width(1000, 1) == storage.auto_width(1000, 2) == storage.WIDTH
    assert storage.auto_width(100, 2) == 50
    assert storage.auto_width(1, 4) == 1
    model = cell_of("l5pc", 60, 7)
    parameters, state = storage.instance_bytes(model)
    assert parameters == 8 * (model.n + 1) and state > 8 * 4 * model.n
    options = engine_models.options_of(engine_models.CASES["l5pc"], model, 1.0)
    engine = Engine(model, 20, workers=2)
    prepared = engine._prepare(options, workers=2)
    assert prepared.width == 10 == int(np.diff(prepared.starts).max())
    assert prepared.arrays["v"].shape[-1] == 10
    _assert_identical(engine.run(options), Engine(model, 20, chunk=4, workers=1).run(options))


def test_batch_argument_errors(cell_of):
    engines = _engines(cell_of)
    with pytest.raises(ValueError, match="at least one"):
        Batch([])
    with pytest.raises(TypeError, match="engines\\[1\\]"):
        Batch([engines[0], "not an engine"])
    batch = Batch(engines)
    with pytest.raises(ValueError, match="one per engine"):
        batch.run(_options(engines)[:2])
    mixed = _options(engines)
    mixed[1] = RunOptions(6.0, record_nodes=(1,))
    with pytest.raises(ValueError, match="share tstop and dt"):
        batch.run(mixed)
