"""Mechanisms nobody here wrote, compiled with nrnivmodl, in NEURON and in the engine.

Each set of ``.mod`` files runs in its own child process (:mod:`mod_cells`): the
mechanisms of the neuron wheel's ``share/nrn/demo/release``, the BluePyOpt L5PC's 12
channels and calcium dynamics on a small cell, and a channel this test writes itself.
fp64 on the CPU must equal NEURON bit for bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import neuron
import pytest

from fetched import package_root
from mod_cells import compare_in_child

RELEASE = Path(neuron.__file__).parent / ".data" / "share" / "nrn" / "demo" / "release"

RELEASE_CASES = [
    {"name": "HHna+HHk", "mechanisms": ["HHna", "HHk"], "amp": 0.3},
    {"name": "cachan1", "mechanisms": ["cachan1"], "record": ["ica"], "amp": 0.05},
    {"name": "cachan", "mechanisms": ["cachan"], "record": ["ica"], "amp": 0.05},
    {"name": "capump", "mechanisms": ["capump"], "record": ["ica"], "amp": 0.05},
    {"name": "nacax", "mechanisms": ["nacax"], "record": ["ica", "ina"], "amp": 0.05},
    {
        "name": "all",
        "mechanisms": ["HHna", "HHk", "cachan1", "capump", "nacax"],
        "amp": 0.3,
        "record": ["ica", "ina", "ik"],
    },
]


def _assert_exact(results: dict, cases: list[dict]) -> None:
    for case in cases:
        result = results[case["name"]]
        for key, value in result.items():
            if "@" in key:
                assert value == 0.0, f"{case['name']}: max |{key} engine - NEURON| = {value}"
        assert result["engine_spikes"] == result["neuron_spikes"], (case["name"], result)


@pytest.fixture(scope="module")
def release_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    mods = folder / "mod"
    mods.mkdir()
    for path in RELEASE.glob("*.mod"):
        shutil.copy(path, mods)
    return compare_in_child(mods, RELEASE_CASES, folder)


@pytest.mark.parametrize("case", RELEASE_CASES, ids=[c["name"] for c in RELEASE_CASES])
def test_release_mechanisms_equal_neuron(release_results, case):
    _assert_exact(release_results, [case])


def test_release_mechanisms_are_active(release_results):
    """The cases do something: the spiking ones spike, the others move v."""
    assert release_results["HHna+HHk"]["neuron_spikes"] >= 2
    for name in ("cachan1", "capump", "nacax"):
        low, high = release_results[name]["v_range"]
        assert high - low > 1.0, name


L5PC_CASES = [
    {
        "name": "sodium",
        "mechanisms": ["NaTa_t", "NaTs2_t", "Nap_Et2", "SKv3_1", "K_Tst", "K_Pst"],
        "parameters": {
            "gNaTa_tbar_NaTa_t": 2.0,
            "gNaTs2_tbar_NaTs2_t": 0.5,
            "gSKv3_1bar_SKv3_1": 0.5,
            "gK_Tstbar_K_Tst": 0.05,
            "gK_Pstbar_K_Pst": 0.05,
            "gNap_Et2bar_Nap_Et2": 0.001,
        },
        "amp": 0.5,
        "celsius": 34.0,
    },
    {
        "name": "calcium",
        "mechanisms": ["Ca_HVA", "Ca_LVAst", "CaDynamics_E2", "SK_E2", "Ih", "Im"],
        "parameters": {
            "gCa_HVAbar_Ca_HVA": 0.001,
            "gCa_LVAstbar_Ca_LVAst": 0.005,
            "gSK_E2bar_SK_E2": 0.01,
            "gIhbar_Ih": 0.0002,
            "gImbar_Im": 0.001,
            "gamma_CaDynamics_E2": 0.0005,
            "decay_CaDynamics_E2": 80.0,
        },
        "ions": {"ek": -85.0},
        "record": ["cai", "eca", "ica"],
        "amp": 0.3,
        "celsius": 34.0,
    },
]


def test_l5pc_mechanisms_equal_neuron(tmp_path):
    """The released L5PC's 12 mechanisms with calcium dynamics (a written cai, eca by
    Nernst at every step) on a small cell."""
    mods = tmp_path / "mod"
    shutil.copytree(package_root("bluepyopt", "1.14.26") / "examples" / "l5pc" / "mechanisms", mods)
    results = compare_in_child(mods, L5PC_CASES, tmp_path)
    _assert_exact(results, L5PC_CASES)
    assert results["sodium"]["neuron_spikes"] >= 2
    assert "ca" in results["calcium"]["ions"]


NEW_CHANNEL = """
: A channel written for this test: FUNCTION, PROCEDURE, TABLE with DEPEND, GLOBAL, LOCAL,
: IF/ELSE, UNITS, CONSTANT, and a calcium-dependent gate.
NEURON {
    SUFFIX kca_test
    USEION k READ ek WRITE ik
    USEION ca READ cai
    RANGE gbar, g
    GLOBAL q10, vhalf
}
UNITS { (mV) = (millivolt) (mA) = (milliamp) (mM) = (milli/liter) }
CONSTANT { kd = 0.001 (mM) }
PARAMETER { gbar = 0.01 (S/cm2) q10 = 3 vhalf = -30 (mV) }
ASSIGNED { v (mV) ek (mV) ik (mA/cm2) cai (mM) celsius (degC) g (S/cm2) ninf ntau (ms) }
STATE { n }
BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar * n * n * cai / (cai + kd)
    ik = g * (v - ek)
}
INITIAL { rates(v) n = ninf }
DERIVATIVE states { rates(v) n' = (ninf - n) / ntau }
FUNCTION alpha(x (mV)) {
    LOCAL y
    y = (x - vhalf) / 9
    if (fabs(y) < 1e-6) { alpha = 0.5 } else { alpha = 0.05 * y / (1 - exp(-y)) }
}
PROCEDURE rates(x (mV)) {
    LOCAL a, b, tadj
    TABLE ninf, ntau DEPEND celsius, q10, vhalf FROM -100 TO 100 WITH 400
    tadj = q10 ^ ((celsius - 22) / 10)
    a = alpha(x)
    b = 0.02 * exp(-(x - vhalf) / 40)
    ntau = 1 / (tadj * (a + b))
    ninf = a / (a + b)
}
"""

NEW_CALCIUM = """
NEURON { SUFFIX cad_test USEION ca READ ica WRITE cai RANGE tau, depth }
UNITS { (mM) = (milli/liter) (mA) = (milliamp) (um) = (micron) FARADAY = (faraday) (coulomb) }
PARAMETER { tau = 50 (ms) depth = 0.2 (um) cainf = 5e-5 (mM) }
ASSIGNED { ica (mA/cm2) }
STATE { cai (mM) }
INITIAL { cai = cainf }
BREAKPOINT { SOLVE state METHOD cnexp }
DERIVATIVE state { cai' = -10000 * ica / (2 * FARADAY * depth) - (cai - cainf) / tau }
"""


def test_a_new_mechanism_needs_no_engine_code(tmp_path):
    """A channel and a calcium pool written here, compiled with nrnivmodl, run in the
    engine exactly as in NEURON, with NEURON's own calcium channel supplying ica."""
    mods = tmp_path / "mod"
    mods.mkdir()
    (mods / "kca_test.mod").write_text(NEW_CHANNEL)
    (mods / "cad_test.mod").write_text(NEW_CALCIUM)
    shutil.copy(RELEASE / "cachan1.mod", mods)
    cases = [
        {
            "name": "new",
            "mechanisms": ["cachan1", "cad_test", "kca_test"],
            "parameters": {"imax_cachan1": 0.2},
            "record": ["cai", "eca", "ik"],
            "amp": 0.2,
            "celsius": 30.0,
        }
    ]
    results = compare_in_child(mods, cases, tmp_path)
    _assert_exact(results, cases)
