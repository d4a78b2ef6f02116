"""NEURON's mechanisms (built-in, and AmpaNmda) as its translator (nocmodl) writes them.

Every formula below follows the C++ that ``nocmodl`` (NEURON 9.0.2) generates from
``hh.mod``, ``passive.mod``, ``stim.mod``, ``expsyn.mod``, ``exp2syn.mod`` and
``neuron_bridge/mod/ampanmda.mod``, down to
the order of the floating-point operations where that was practical, so that the engine
reproduces NEURON's numbers to round-off. The points that matter:

* **Currents and conductances.** ``nrn_cur`` evaluates the BREAKPOINT current twice and
  takes a finite difference: ``g = (i(v + 0.001) - i(v)) / 0.001``; ``rhs -= i(v)`` and
  ``d += g`` (an ELECTRODE_CURRENT such as IClamp's enters with the opposite signs). The
  total current of a mechanism with several currents is summed in declaration order
  (hh: ``ina + ik + il``).
* **Point processes** give nA; their contribution is scaled by ``1e2 / area`` (the node
  area in µm²), giving mA/cm² (or nA at zero-area nodes, whose area is 100).
* **cnexp.** ``x' = (xinf - x) / xtau`` is advanced as
  ``x + (1 - exp(dt * (-1 / xtau))) * (-(xinf / xtau) / (-1 / xtau) - x)`` and a pure
  decay ``x' = -x / tau`` as ``x + (1 - exp(dt * (-1 / tau))) * (-0 / (-1 / tau) - x)``.
* **exp** is NEURON's ``hoc_Exp``: 0 below -700, ``exp(700)`` above 700.
* **hh rates** depend on ``celsius`` through ``q10 = 3 ** ((celsius - 6.3) / 10)``. With
  ``usetable_hh = 1`` (NEURON's default) they come from tables of 201 points from -100 to
  100 mV (built by accumulating ``x += 1``), linearly interpolated and clamped at the
  ends; with ``usetable_hh = 0`` they are computed exactly.
* **Exp2Syn's INITIAL** moves ``tau1`` to ``0.9999 * tau2`` when ``tau1 / tau2 > 0.9999``
  (and up to ``1e-9 * tau2`` when below 1e-9) and computes the peak normalisation
  ``factor``; events add ``weight * factor`` to both A and B.
* **AmpaNmda** (``ampanmda.mod``) is two Exp2Syn-like conductances (each INITIAL with
  the same tau1 adjustment and factor); an event adds ``weight * factor_ampa`` to A_ampa
  and B_ampa and ``weight * nmda_ratio * factor_nmda`` (in that order of products) to
  A_nmda and B_nmda. Its current is
  ``g_ampa * (v - e) + g_nmda * mgblock(v) * (v - e)`` with
  ``mgblock(v) = 1 / (1 + exp(0.062 * -v) * (mg / 3.57))`` (Jahr & Stevens 1990).

Units: mV, ms, S/cm² (density), µS and nA (point processes).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "ampanmda_current",
    "cnexp",
    "decay",
    "exp2syn_factor",
    "exp2syn_tau1",
    "hh_current",
    "hh_q10",
    "hh_rates",
    "hh_rates_table",
    "hh_table",
    "hoc_exp",
    "mgblock",
    "vtrap",
]

HH_TABLE_MIN = -100.0  # mV
HH_TABLE_MAX = 100.0  # mV
HH_TABLE_POINTS = 201


@numba.njit(cache=True, error_model="numpy")
def hoc_exp(x):
    """NEURON's ``hoc_Exp``: ``exp`` with 0 below -700 and ``exp(700)`` above 700."""
    if x < -700.0:
        return 0.0
    if x > 700.0:
        return math.exp(700.0)
    return math.exp(x)


@numba.njit(cache=True, error_model="numpy")
def vtrap(x, y):
    """hh's ``vtrap``: ``x / (exp(x / y) - 1)`` with its limit near ``x = 0``."""
    if math.fabs(x / y) < 1e-6:
        return y * (1.0 - x / y / 2.0)
    return x / (hoc_exp(x / y) - 1.0)


def hh_q10(celsius: float) -> float:
    """hh's temperature factor ``3 ** ((celsius - 6.3) / 10)`` (C's ``pow``)."""
    return math.pow(3.0, (celsius - 6.3) / 10.0)


@numba.njit(cache=True, error_model="numpy")
def hh_rates(v, q10):
    """hh's ``rates(v)`` computed exactly (``usetable_hh = 0``).

    Parameters
    ----------
    v : float
        Membrane potential in mV.
    q10 : float
        :func:`hh_q10` of the temperature.

    Returns
    -------
    minf, mtau, hinf, htau, ninf, ntau : float
        Steady states (dimensionless) and time constants (ms).
    """
    alpha = 0.1 * vtrap(-(v + 40.0), 10.0)
    beta = 4.0 * hoc_exp(-(v + 65.0) / 18.0)
    total = alpha + beta
    mtau = 1.0 / (q10 * total)
    minf = alpha / total
    alpha = 0.07 * hoc_exp(-(v + 65.0) / 20.0)
    beta = 1.0 / (hoc_exp(-(v + 35.0) / 10.0) + 1.0)
    total = alpha + beta
    htau = 1.0 / (q10 * total)
    hinf = alpha / total
    alpha = 0.01 * vtrap(-(v + 55.0), 10.0)
    beta = 0.125 * hoc_exp(-(v + 65.0) / 80.0)
    total = alpha + beta
    ntau = 1.0 / (q10 * total)
    ninf = alpha / total
    return minf, mtau, hinf, htau, ninf, ntau


@numba.njit(cache=True, error_model="numpy")
def _fill_hh_table(q10, table):
    x = HH_TABLE_MIN
    dx = (HH_TABLE_MAX - HH_TABLE_MIN) / 200.0
    for i in range(HH_TABLE_POINTS):
        values = hh_rates(x, q10)
        for k in range(6):
            table[k, i] = values[k]
        x += dx


def hh_table(celsius: float) -> np.ndarray:
    """NEURON's hh rate table: (6, 201) values of minf, mtau, hinf, htau, ninf, ntau
    at -100, -99, ..., 100 mV."""
    table = np.empty((6, HH_TABLE_POINTS))
    _fill_hh_table(hh_q10(celsius), table)
    return table


@numba.njit(cache=True, error_model="numpy")
def hh_rates_table(v, table):
    """hh's ``rates(v)`` from the table (``usetable_hh = 1``), as NEURON interpolates."""
    xi = 1.0 * (v - HH_TABLE_MIN)  # _mfac_rates * (v - _tmin_rates), _mfac_rates = 1
    if math.isnan(xi):
        return xi, xi, xi, xi, xi, xi
    if xi <= 0.0:
        return table[0, 0], table[1, 0], table[2, 0], table[3, 0], table[4, 0], table[5, 0]
    if xi >= 200.0:
        last = HH_TABLE_POINTS - 1
        return (table[0, last], table[1, last], table[2, last], table[3, last],
                table[4, last], table[5, last])  # fmt: skip
    i = int(xi)
    theta = xi - float(i)
    return (
        table[0, i] + theta * (table[0, i + 1] - table[0, i]),
        table[1, i] + theta * (table[1, i + 1] - table[1, i]),
        table[2, i] + theta * (table[2, i + 1] - table[2, i]),
        table[3, i] + theta * (table[3, i + 1] - table[3, i]),
        table[4, i] + theta * (table[4, i + 1] - table[4, i]),
        table[5, i] + theta * (table[5, i + 1] - table[5, i]),
    )


@numba.njit(cache=True, error_model="numpy")
def hh_current(v, m, h, n, gnabar, gkbar, gl, el, ena, ek):
    """hh's total membrane current ``ina + ik + il`` in mA/cm² at ``v`` (mV)."""
    gna = gnabar * m * m * m * h
    ina = gna * (v - ena)
    gk = gkbar * n * n * n * n
    ik = gk * (v - ek)
    il = gl * (v - el)
    current = 0.0
    current += ina
    current += ik
    current += il
    return current


@numba.njit(cache=True, error_model="numpy")
def cnexp(x, xinf, xtau, dt):
    """One cnexp step of ``x' = (xinf - x) / xtau`` over ``dt`` ms, as nocmodl writes it."""
    return x + (1.0 - hoc_exp(dt * ((-1.0) / xtau))) * (-(xinf / xtau) / ((-1.0) / xtau) - x)


@numba.njit(cache=True, error_model="numpy")
def decay(x, tau, dt):
    """One cnexp step of ``x' = -x / tau`` over ``dt`` ms, as nocmodl writes it."""
    return x + (1.0 - hoc_exp(dt * ((-1.0) / tau))) * (-(0.0) / ((-1.0) / tau) - x)


def exp2syn_tau1(tau1: np.ndarray, tau2: np.ndarray) -> np.ndarray:
    """``tau1`` (ms) after Exp2Syn's INITIAL block has kept it within (1e-9, 0.9999)
    times ``tau2``."""
    tau1 = np.array(tau1, dtype=np.float64, copy=True)
    tau2 = np.asarray(tau2, dtype=np.float64)
    high = tau1 / tau2 > 0.9999
    tau1[high] = 0.9999 * tau2[high]
    low = tau1 / tau2 < 1e-9
    tau1[low] = tau2[low] * 1e-9
    return tau1


@numba.njit(cache=True, error_model="numpy")
def _exp2syn_factor(tau1, tau2, out):
    for k in range(tau1.size):
        t1 = tau1[k]
        t2 = tau2[k]
        tp = (t1 * t2) / (t2 - t1) * math.log(t2 / t1)
        factor = -hoc_exp(-tp / t1) + hoc_exp(-tp / t2)
        out[k] = 1.0 / factor


def exp2syn_factor(tau1: np.ndarray, tau2: np.ndarray) -> np.ndarray:
    """Exp2Syn's ``factor`` for (already adjusted, :func:`exp2syn_tau1`) time constants:
    the weight scale that makes a unit event peak at a conductance of 1."""
    tau1 = np.ascontiguousarray(tau1, dtype=np.float64)
    tau2 = np.ascontiguousarray(tau2, dtype=np.float64)
    out = np.empty_like(tau1)
    _exp2syn_factor(tau1.reshape(-1), tau2.reshape(-1), out.reshape(-1))
    return out


@numba.njit(cache=True, error_model="numpy")
def mgblock(v, mg):
    """AmpaNmda's Mg²⁺ block (Jahr & Stevens 1990): the unblocked fraction of NMDA
    channels at ``v`` (mV) with ``mg`` mM of extracellular magnesium."""
    return 1.0 / (1.0 + hoc_exp(0.062 * -v) * (mg / 3.57))


@numba.njit(cache=True, error_model="numpy")
def ampanmda_current(v, g_ampa, g_nmda, e, mg):
    """AmpaNmda's current ``i_ampa + i_nmda`` in nA at ``v`` (mV); conductances in µS."""
    i_ampa = g_ampa * (v - e)
    i_nmda = g_nmda * mgblock(v, mg) * (v - e)
    current = 0.0
    current += i_ampa + i_nmda
    return current
