"""dhs.engine without NEURON: model validation, save/load, the API, and a plain-Python
reference of NEURON's fixed step on a single compartment.

The comparisons with NEURON itself are in ``test_engine.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dhs
from dhs.engine import CellModel, Engine, SynapticEvents, load_model, time_grid
from engine_models import random_tree, table

DT = 0.025


def single_compartment(events: bool = True) -> CellModel:
    """One isolated node (area 1000 µm²) with pas, hh, an IClamp, ExpSyn and Exp2Syn."""
    mechanisms = {
        "pas": table("pas", 0, g=2e-4, e=-68.0),
        "IClamp": table("IClamp", 0, **{"del": 2.0, "dur": 3.0, "amp": 0.05}),
        "ExpSyn": table("ExpSyn", 0, tau=2.0, e=0.0),
        "Exp2Syn": table("Exp2Syn", 0, tau1=1.0, tau2=1.0, e=-5.0),
        "hh": table("hh", 0, gnabar=0.12, gkbar=0.036, gl=0.0003, el=-54.3),
    }  # NEURON's type order
    event_lists = {}
    if events:
        event_lists = {
            "ExpSyn": SynapticEvents(np.zeros(3, np.int64), np.array([1.0, 1.0125, 6.3]),
                                     np.array([0.001, 0.002, 0.004])),
            "Exp2Syn": SynapticEvents(np.zeros(2, np.int64), np.array([0.0, 4.2]),
                                      np.array([0.003, 0.002])),
        }  # fmt: skip
    return CellModel(
        parent=[-1], area=[1000.0], cm=[1.0], a=[0.0], b=[0.0],
        mechanisms=mechanisms, events=event_lists, v_init=-65.0, celsius=6.3,
    )  # fmt: skip


def branched(n: int = 40) -> CellModel:
    """A branched tree in a parent-before-child order, NEURON-like coefficients."""
    membrane = np.arange(1, n)
    mechanisms = {
        "pas": table("pas", membrane, g=1e-4, e=-65.0),
        "IClamp": table("IClamp", [1, 0], **{"del": 1.0, "dur": 20.0, "amp": 0.3}),
        "ExpSyn": table("ExpSyn", [5, n - 1], tau=2.0, e=0.0),
        "Exp2Syn": table("Exp2Syn", [9], tau1=0.5, tau2=3.0, e=0.0),
        "hh": table("hh", [1, 2], gnabar=0.12, gkbar=0.036, gl=0.0003, el=-54.3),
    }  # fmt: skip
    events = {
        "ExpSyn": SynapticEvents(np.array([0, 1, 0]), np.array([2.0, 3.0, 7.5]),
                                 np.array([0.01, 0.02, 0.01])),
        "Exp2Syn": SynapticEvents(np.array([0]), np.array([4.0]), np.array([0.02])),
    }  # fmt: skip
    return CellModel(**random_tree(n, seed=7, reach=4), mechanisms=mechanisms, events=events)


# --------------------------------------------------------------------------- reference
def _hexp(x):
    return 0.0 if x < -700.0 else math.exp(min(x, 700.0))


def _vtrap(x, y):
    return y * (1.0 - x / y / 2.0) if abs(x / y) < 1e-6 else x / (_hexp(x / y) - 1.0)


def _rates(v, q10):
    out = []
    for alpha, beta in (
        (0.1 * _vtrap(-(v + 40.0), 10.0), 4.0 * _hexp(-(v + 65.0) / 18.0)),
        (0.07 * _hexp(-(v + 65.0) / 20.0), 1.0 / (_hexp(-(v + 35.0) / 10.0) + 1.0)),
        (0.01 * _vtrap(-(v + 55.0), 10.0), 0.125 * _hexp(-(v + 65.0) / 80.0)),
    ):
        total = alpha + beta
        out += [alpha / total, 1.0 / (q10 * total)]
    return out


def _cnexp(x, inf, tau, dt):
    return x + (1.0 - _hexp(dt * ((-1.0) / tau))) * (-(inf / tau) / ((-1.0) / tau) - x)


def reference_single(model: CellModel, n_steps: int, dt: float = DT) -> np.ndarray:
    """NEURON's fixed step for :func:`single_compartment`, written out in plain Python."""
    params = {name: {p: float(v[0]) for p, v in t.params.items()}
              for name, t in model.mechanisms.items() if t.count}  # fmt: skip
    pas, hh, clamp = params["pas"], params["hh"], params["IClamp"]
    exp1, exp2 = params["ExpSyn"], params["Exp2Syn"]
    tau1 = exp2["tau1"]
    if tau1 / exp2["tau2"] > 0.9999:
        tau1 = 0.9999 * exp2["tau2"]
    tp = (tau1 * exp2["tau2"]) / (exp2["tau2"] - tau1) * math.log(exp2["tau2"] / tau1)
    factor = 1.0 / (-_hexp(-tp / tau1) + _hexp(-tp / exp2["tau2"]))
    q10 = math.pow(3.0, (model.celsius - 6.3) / 10.0)
    mfact = 1.0e2 / model.area[0]
    v = model.v_init
    rates = _rates(v, q10)
    m, hgate, n = rates[0], rates[2], rates[4]
    g, A, B = 0.0, 0.0, 0.0
    pending = sorted(
        (float(t), kind, float(w))
        for kind, name in enumerate(("ExpSyn", "Exp2Syn"))
        for t, w in zip(model.events[name].time, model.events[name].weight[:, 0], strict=True)
    )
    trace = [v]
    t = 0.0
    for _ in range(n_steps):
        while pending and pending[0][0] <= t + 0.5 * dt:
            _, kind, w = pending.pop(0)
            if kind == 0:
                g = g + w
            else:
                A, B = A + w * factor, B + w * factor
        t = t + 0.5 * dt
        rhs = d = 0.0
        for i_of in (lambda u: pas["g"] * (u - pas["e"]),):
            up, now = i_of(v + 0.001), i_of(v)
            rhs -= now
            d += (up - now) / 0.001
        current = clamp["amp"] if clamp["del"] <= t < clamp["del"] + clamp["dur"] else 0.0
        rhs += current * mfact
        for conductance, e in ((g, exp1["e"]), (B - A, exp2["e"])):
            up, now = conductance * ((v + 0.001) - e), conductance * (v - e)
            rhs -= now * mfact
            d += ((up - now) / 0.001) * mfact

        up, now = (
            hh["gnabar"] * m * m * m * hgate * (u - model.ions["na"].e[0])
            + hh["gkbar"] * n * n * n * n * (u - model.ions["k"].e[0])
            + hh["gl"] * (u - hh["el"])
            for u in (v + 0.001, v)
        )
        rhs -= now
        d += (up - now) / 0.001
        d += 0.001 * (1.0 / dt) * model.cm[0]
        v = v + rhs / d
        t = t + 0.5 * dt
        rates = _rates(v, q10)
        m = _cnexp(m, rates[0], rates[1], dt)
        hgate = _cnexp(hgate, rates[2], rates[3], dt)
        n = _cnexp(n, rates[4], rates[5], dt)
        g = g + (1.0 - _hexp(dt * ((-1.0) / exp1["tau"]))) * (-(0.0) / ((-1.0) / exp1["tau"]) - g)
        A = A + (1.0 - _hexp(dt * ((-1.0) / tau1))) * (-(0.0) / ((-1.0) / tau1) - A)
        tau2 = exp2["tau2"]
        B = B + (1.0 - _hexp(dt * ((-1.0) / tau2))) * (-(0.0) / ((-1.0) / tau2) - B)
        trace.append(v)
    return np.array(trace)


# --------------------------------------------------------------------------- tests
def test_single_compartment_matches_plain_python_reference():
    model = single_compartment()
    result = Engine(model, 2).run(10.0, record_nodes=[0])
    expected = reference_single(model, 400)
    assert result.v.shape == (2, 1, 401)
    np.testing.assert_allclose(result.v[0, 0], expected, rtol=0, atol=1e-12)
    assert np.array_equal(result.v[0], result.v[1])


def test_time_grid_accumulates_like_neuron():
    t_grid, t_mid = time_grid(0.025, 800)
    t = 0.0
    for k in range(800):
        t += 0.5 * 0.025
        assert t_mid[k] == t
        t += 0.5 * 0.025
        assert t_grid[k + 1] == t
    assert t_grid[800] != 20.0  # NEURON's t carries round-off too


def test_model_validation():
    good = {"parent": [-1, 0, 1], "area": [100.0, 500.0, 100.0], "cm": [0.0, 1.0, 0.0],
            "a": [0.0, -1.0, -2.0], "b": [0.0, -3.0, -4.0]}  # fmt: skip
    CellModel(**good)
    with pytest.raises(ValueError, match="parent"):
        CellModel(**{**good, "parent": [-1, 2, 0]})
    with pytest.raises(ValueError, match="area must be positive"):
        CellModel(**{**good, "area": [0.0, 500.0, 100.0]})
    with pytest.raises(ValueError, match=r"cm has shape \(2,\)"):
        CellModel(**{**good, "cm": [0.0, 1.0]})
    with pytest.raises(ValueError, match="holds the table of 'pas'"):
        CellModel(**good, mechanisms={"kdr": table("pas", 1, g=1.0, e=0.0)})
    with pytest.raises(ValueError, match="no built-in mechanism 'kdr'"):
        CellModel(**good, mechanisms={"kdr": table("kdr", 1, g=1.0)})
    with pytest.raises(ValueError, match=r"pas.node holds node 3, outside 0..2"):
        CellModel(**good, mechanisms={"pas": table("pas", 3, g=1.0, e=0.0)})
    with pytest.raises(ValueError, match="pas has no parameter 'q'"):
        CellModel(**good, mechanisms={"pas": table("pas", 1, g=1.0, q=2.0)})
    defaults = CellModel(**good, mechanisms={"pas": table("pas", 1, g=1.0)})
    assert defaults.mechanisms["pas"].params["e"][0] == -70.0  # passive.mod's default
    with pytest.raises(ValueError, match="twice"):
        CellModel(**good, mechanisms={"pas": table("pas", [1, 1], g=1.0, e=0.0)})
    with pytest.raises(ValueError, match="only the point processes with a NET_RECEIVE"):
        CellModel(**good, events={"ExpSyn": SynapticEvents(np.array([0]), np.array([1.0]),
                                                            np.array([0.1]))})  # fmt: skip
    with pytest.raises(ValueError, match=r"a\[1\] is nan"):
        CellModel(**{**good, "a": [0.0, np.nan, -2.0]})


def test_save_load_round_trip(tmp_path):
    model = branched()
    path = tmp_path / "branched.npz"
    model.save(path)
    loaded = load_model(path)
    for key, value in model.to_arrays().items():
        assert np.array_equal(loaded.to_arrays()[key], value), key
    first = Engine(model, 2).run(15.0, record_nodes=[1, 9])
    second = Engine(loaded, 2).run(15.0, record_nodes=[1, 9])
    assert np.array_equal(first.v, second.v)


def test_chunks_and_workers_agree():
    """Any chunk width and thread count give the same bits."""
    model = branched()
    engines = [
        Engine(model, 5, chunk=16, workers=1),
        Engine(model, 5, chunk=1, workers=2),
        Engine(model, 5, chunk=3, workers=2),
        Engine(model, 5, chunk=8, workers=1),
    ]
    for engine in engines:
        engine.set("IClamp.amp", [0.1, 0.2, 0.3, 0.4, 0.5], target=0)
    results = [e.run(30.0, record_nodes=[1, 5, 39], spike_node=1) for e in engines]
    for result in results[1:]:
        assert np.array_equal(result.v, results[0].v)
        assert np.array_equal(result.v_final, results[0].v_final)
        for a, b in zip(result.spikes, results[0].spikes, strict=True):
            assert np.array_equal(a, b)
    assert sum(s.size for s in results[0].spikes) > 0


def test_set_and_get_shapes():
    model = branched()
    engine = Engine(model, 3)
    engine.set("pas.g", 3e-4)
    assert np.all(engine.get("pas.g") == 3e-4) and engine.get("pas.g").shape == (3, 39)
    engine.set("pas.g", [1e-4, 2e-4, 3e-4])
    assert np.array_equal(engine.get("pas.g")[:, 0], [1e-4, 2e-4, 3e-4])
    per_node = np.arange(3 * model.n, dtype=float).reshape(3, model.n)
    engine.set("pas.e", per_node)
    assert np.array_equal(engine.get("pas.e"), per_node[:, model.mechanisms["pas"].node])
    engine.set("ExpSyn.tau", [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert np.array_equal(engine.get("ExpSyn.tau")[:, 1], [2.0, 4.0, 6.0])
    engine.set("IClamp.delay", [1.0, 2.0, 3.0], target=1)
    assert np.array_equal(engine.get("IClamp.del")[:, 1], [1.0, 2.0, 3.0])
    engine.set("cm", 2.0)
    assert engine.get("cm")[0, 0] == 0.0 and np.all(engine.get("cm")[:, 1:] == 2.0)
    engine.set("v_init", [-70.0, -65.0, -60.0])
    assert np.array_equal(engine.get("v_init"), [-70.0, -65.0, -60.0])
    with pytest.raises(ValueError, match="unknown parameter"):
        engine.set("kdr.g", 1.0)
    with pytest.raises(ValueError, match="do not fit"):
        engine.set("pas.g", [1.0, 2.0])
    with pytest.raises(ValueError, match=r"shape \(3, 5\) do not fit"):
        engine.set("pas.g", np.ones((3, 5)))
    with pytest.raises(ValueError, match="target 7"):
        engine.set("IClamp.amp", 1.0, target=7)
    with pytest.raises(ValueError, match="finite"):
        engine.set("IClamp.amp", np.nan)


def test_per_instance_events_and_step_rule():
    """An event is delivered before step k when t_mid[k] >= its time (t + dt/2 rule)."""
    model = single_compartment(events=False)
    engine = Engine(model, 3)
    engine.set("IClamp.amp", 0.0)
    for name in ("hh.gnabar", "hh.gkbar", "hh.gl"):
        engine.set(name, 0.0)
    engine.set("pas.e", -65.0)  # = v_init: at rest until the event
    t_grid, t_mid = time_grid(DT, 40)
    times = [t_mid[10], np.nextafter(t_mid[10], np.inf), t_grid[10]]
    for instance, time in enumerate(times):
        engine.set_events("ExpSyn", 0, [time], 0.01, instances=instance)
    assert engine.events("ExpSyn", 0, 1)[0][0] == times[1]
    result = engine.run(1.0, record_nodes=[0])
    first_move = [int(np.flatnonzero(np.diff(result.v[q, 0]) > 1e-3)[0]) for q in range(3)]
    assert first_move == [10, 11, 10]
    engine.set_events("ExpSyn", 0, [], [])
    quiet = engine.run(1.0, record_nodes=[0])
    assert np.abs(np.diff(quiet.v[:, 0])).max() < 1e-3


def test_spike_methods_and_max_spikes():
    model = single_compartment(events=False)
    engine = Engine(model, 1)
    engine.set("IClamp.dur", 100.0)
    engine.set("IClamp.amp", 0.15)
    neuron_style = engine.run(50.0, spike_node=0, spike_threshold=-20.0)
    interpolated = engine.run(50.0, spike_node=0, spike_threshold=-20.0,
                              spike_method="interpolate")  # fmt: skip
    spikes, crossings = neuron_style.spikes[0], interpolated.spikes[0]
    assert spikes.size >= 3 and spikes.size == crossings.size
    assert np.all(crossings < spikes) and np.all(spikes - crossings < DT + 1e-9)
    t_grid, _ = time_grid(DT, 2000)
    assert np.all(np.isin(np.round(spikes - 1e-10, 9), np.round(t_grid, 9)))
    with pytest.warns(RuntimeWarning, match="max_spikes"):
        capped = engine.run(50.0, spike_node=0, max_spikes=1)
    assert capped.spikes[0].size == 1


def test_engine_argument_errors():
    model = single_compartment()
    with pytest.raises(ValueError, match="n_instances"):
        Engine(model, 0)
    with pytest.raises(ValueError, match="backend"):
        Engine(model, 1, backend="gpu")
    if not dhs.gpu_available():
        with pytest.raises(ValueError, match="GPU"):
            Engine(model, 1, backend="cuda")
    with pytest.raises(ValueError, match="chunk"):
        Engine(model, 1, chunk=0)
    engine = Engine(model, 1)
    with pytest.raises(ValueError, match="dt"):
        engine.run(10.0, dt=0.0)
    with pytest.raises(ValueError, match="record_every"):
        engine.run(10.0, record_every=0)
    with pytest.raises(ValueError, match="no node named"):
        engine.run(10.0, record_nodes=["soma(0.5)"])
    with pytest.raises(ValueError, match="only"):
        engine.set_events("IClamp", 0, [1.0], 0.1)
    with pytest.raises(ValueError, match="does not exist"):
        engine.set_events("ExpSyn", 3, [1.0], 0.1)
    result = engine.run(1.0, record_nodes=[0], record_every=4)
    assert result.v.shape == (1, 1, 11) and result.t.shape == (11,)


def test_events_round_trip_and_weight_shapes():
    """What :meth:`Engine.events` returns can be set again; a wrong shape is named."""
    engine = Engine(single_compartment(events=False), 2)
    engine.set_events("ExpSyn", 0, [1.0, 2.0], [0.01, 0.02])
    times, weights = engine.events("ExpSyn", 0)
    assert weights.shape == (2, 1)
    engine.set_events("ExpSyn", 0, times, weights)  # (events, 1) for a one-argument block
    assert np.array_equal(engine.events("ExpSyn", 0)[1], weights)
    with pytest.raises(ValueError, match=r"ExpSyn: weights of shape \(3,\) do not fit 2 events"):
        engine.set_events("ExpSyn", 0, [1.0, 2.0], [0.1, 0.2, 0.3])
