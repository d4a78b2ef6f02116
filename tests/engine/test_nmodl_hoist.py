"""Run-invariant values of the step phases (``dhs.engine.nmodl.hoist``): what is hoisted
into INITIAL and what must stay in the step. The engine's bit equality with NEURON on
the hoisted mechanisms (AmpaNmda, Exp2Syn, ExpSyn, the L5PC's calcium decay) is checked
by their own tests against NEURON."""

from __future__ import annotations

from dhs.engine.nmodl.translate import translate_file

TEMPLATE = """
NEURON {{ SUFFIX leaky RANGE tau, gmax, g NONSPECIFIC_CURRENT i }}
PARAMETER {{ tau = 2 (ms) gmax = 0.001 (S/cm2) }}
ASSIGNED {{ v (mV) i (mA/cm2) g (S/cm2) }}
STATE {{ s }}
INITIAL {{ s = 1 }}
BREAKPOINT {{
    SOLVE states METHOD cnexp
    {breakpoint}
}}
DERIVATIVE states {{ s' = -s/tau }}
"""


def phase_source(translation, phase: str) -> str:
    source = translation.module_source
    start = source.index(f"def {phase}(")
    end = source.find("@jit", start)
    return source[start : end if end >= 0 else None]


def test_cnexp_factors_move_to_initial():
    translation = translate_file(text=TEMPLATE.format(breakpoint="g = gmax*s i = g*(v + 70)"))
    state = phase_source(translation, "state")
    assert "hoc_exp" not in state and "/" not in state
    initial = phase_source(translation, "initial")
    assert "x_hoisted_0 = (1.0 - hoc_exp((x_dt * ((-1.0) / x_tau))))" in initial
    assert "hoisted_0" in [a.name for a in translation.assigned]
    assert "hoisted_0" not in translation.optional  # the step reads it: always stored


def test_current_invariants_are_hoisted_but_not_voltage():
    translation = translate_file(
        text=TEMPLATE.format(breakpoint="g = gmax/tau*s*exp(-v/tau) i = g*(v + 70)")
    )
    current = phase_source(translation, "current")
    assert "(x_gmax / x_tau)" not in current  # parameters only: hoisted
    assert "hoc_exp(((-x_v) / x_tau))" in current  # reads v: stays


def test_a_parameter_the_step_writes_stays():
    translation = translate_file(
        text=TEMPLATE.format(breakpoint="tau = tau*1.0 g = gmax*s i = g*(v + 70)")
    )
    assert "hoc_exp" in phase_source(translation, "state")
    assert not [a.name for a in translation.assigned if a.name.startswith("hoisted_")]


def test_a_local_shadowing_a_parameter_stays():
    text = TEMPLATE.format(breakpoint="g = gmax*s/(1 + exp(tau)) i = g*(v + 70)").replace(
        "BREAKPOINT {\n", "BREAKPOINT {\n    LOCAL tau\n    tau = 3\n"
    )
    current = phase_source(translate_file(text=text), "current")
    assert "hoc_exp(l_tau)" in current  # the LOCAL, computed in the step


def test_names_in_use_are_avoided():
    text = TEMPLATE.format(breakpoint="g = gmax*s*hoisted_0 i = g*(v + 70)").replace(
        "gmax = 0.001 (S/cm2)", "gmax = 0.001 (S/cm2) hoisted_0 = 1"
    )
    translation = translate_file(text=text)
    assert "x_hoisted_1 = (1.0 - hoc_exp(" in phase_source(translation, "initial")
