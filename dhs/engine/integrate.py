"""NEURON's fixed step (``secondorder = 0``) for many instances of one cell model.

One step, exactly as ``nrn_fixed_step_thread`` (``fadvance.cpp``) does it
--------------------------------------------------------------------------
1. Deliver the events whose time is at most ``t + dt/2`` (``deliver_net_events``).
2. ``t += dt/2``; assemble the matrix (``setup_tree_matrix``: ``nrn_rhs`` then
   ``nrn_lhs`` in ``treeset.cpp``): ``rhs = 0`` and ``d = 0``; every mechanism, in
   the order of NEURON's internal type numbers (pas 4, IClamp 7, ExpSyn 9, Exp2Syn 10,
   hh 17, after the ions 15 and 16; then AmpaNmda, which ``nrnivmodl`` adds after all
   the built-in types: 24 in NEURON 9.0.2), adds ``-i(v)`` to rhs and its
   finite-difference conductance to d (:mod:`dhs.engine.mechanisms`);
   capacitance adds ``cm * cfac`` with ``cfac = 0.001 * (1 / dt)``; the axial terms
   follow, node by node in increasing index::

       dv = v[p] - v[i];  rhs[i] -= b[i] * dv;  rhs[p] += a[i] * dv
       d[i] -= b[i];      d[p] -= a[i]

3. Solve the Hines system (``nrn_solve``) and update ``v += rhs``.
4. ``t += dt/2``; advance the mechanism states with the new v (``nonvint``: cnexp).
5. Record, and test the spike threshold at the new t.

Time ``t`` is accumulated exactly as NEURON does (two ``+= 0.5 * dt`` per step), so
the IClamp test ``del <= t < del + dur`` at mid-step and the event delivery times fall
on the same steps as in NEURON. ``finitialize(v_init)`` sets every node to ``v_init``,
runs the INITIAL blocks (hh: states at their steady state for ``v_init``; synapses: 0)
and delivers the events due by ``dt/2`` before the first step.

Spike detection
---------------
NEURON's NetCon threshold detection in the fixed step (``ConditionEvent::check`` in
``netcvode.cpp``) runs after ``finitialize`` and after every step: when
``v - threshold > 0`` and the detector is not armed-off, it fires at ``t + 1e-10`` ms
(no interpolation) and stays off until ``v - threshold > 0`` is false again. The engine
reports exactly that (``spike_method="neuron"``); ``"interpolate"`` gives the linear
interpolation of the crossing between the two samples instead.

Layout
------
State is node-major: ``v``, ``rhs``, ``d`` have shape ``(n_nodes, n_instances)`` and
mechanism states ``(n_mechanism_instances, n_instances)``, so every inner loop runs over
instances, contiguous in memory. The default ``solver="fused"`` advances each chunk of
``chunk`` instances through the whole run inside one Numba kernel, with the Hines
elimination done in the same node-major layout (the arithmetic of NEURON's
``triang``/``bksub``, which is also that of :mod:`dhs.solvers`). The kernel releases the
GIL and ``workers`` Python threads run it on contiguous blocks of chunks (no false
sharing of cache lines between workers but at the blocks' edges), so instances are
simulated in parallel with no per-step synchronisation (a parallel ``prange`` kernel
took 7 s longer to compile, for nothing gained: the chunks never need to meet).
Inner loops count from 0 and index with an unsigned column (``numba.uint64(c0 + q0)``),
so Numba adds no negative-index wraparound, and the kernels use
``error_model="numpy"`` (no zero-division branch before each division): LLVM can then
vectorise them (packed divisions) without changing any operation or its order.
``solver="dhs"`` runs the same phases step by step from Python and solves each step's
systems with :class:`dhs.Solver` on ``(n_instances, n_nodes)`` copies (two transposes per
step): slower, but it routes the solve through the library's checked solver, and the
tests use it to confirm that the fused elimination gives identical results.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from ..solver import Solver
from ..tree import Tree
from . import mechanisms as mech
from .inputs import poisson_times
from .model import DENSITY_MECHANISMS, MECHANISMS, SYNAPSES, CellModel

__all__ = ["Engine", "RunResult", "time_grid"]

# Arrays shared by all instances for one run.
_Static = namedtuple(
    "_Static",
    ["parent", "a", "b", "cfac", "dt", "t_grid", "t_mid", "pas_node", "hh_node", "ic_node",
     "ic_mfact", "es_node", "es_mfact", "e2_node", "e2_mfact", "q10", "use_table", "table",
     "an_node", "an_mfact"],
    defaults=(np.zeros(0, np.int64), np.zeros(0)),  # AmpaNmda fields: none by default
)  # fmt: skip
# Per-instance parameters: (n_nodes or m, n_instances), v_init (n_instances,).
_Params = namedtuple(
    "_Params",
    ["cm", "v_init", "pas_g", "pas_e", "hh_gnabar", "hh_gkbar", "hh_gl", "hh_el", "hh_ena",
     "hh_ek", "ic_del", "ic_dur", "ic_amp", "es_tau", "es_e", "e2_tau1", "e2_tau2", "e2_e",
     "e2_factor", "an_tau1_ampa", "an_tau2_ampa", "an_tau1_nmda", "an_tau2_nmda", "an_e",
     "an_ratio", "an_mg", "an_factor_ampa", "an_factor_nmda"],
    defaults=(np.zeros((0, 0)),) * 9,  # AmpaNmda fields: none by default
)  # fmt: skip
# Per-instance state, node-major.
_State = namedtuple(
    "_State",
    ["v", "rhs", "d", "hh_m", "hh_h", "hh_n", "es_g", "e2_A", "e2_B", "spike_flag",
     "spike_v", "an_A_ampa", "an_B_ampa", "an_A_nmda", "an_B_nmda"],
    defaults=(np.zeros((0, 0)),) * 4,  # AmpaNmda fields: none by default
)  # fmt: skip
# Events sorted by (chunk, step, time); chunk c owns ptr[c]:ptr[c + 1].
_Events = namedtuple("_Events", ["ptr", "step", "col", "kind", "syn", "weight", "cursor"])
_Output = namedtuple(
    "_Output",
    ["rec_node", "rec_every", "rec", "spike_node", "threshold", "interpolate", "spike_t",
     "spike_n"],
)  # fmt: skip

SPIKE_TEPS = 1e-10  # ms: NEURON's ``check_thresh`` sends the spike at t + 1e-10


# --------------------------------------------------------------------------- phases
@numba.njit(cache=True, error_model="numpy")
def _observe(c0, c1, k, fixed, st, out):
    """Record at step ``k`` (time ``t_grid[k]``) and test the spike threshold."""
    if k % out.rec_every == 0:
        row = k // out.rec_every
        for r in range(out.rec_node.size):
            i = out.rec_node[r]
            for q0 in range(c1 - c0):
                q = numba.uint64(c0 + q0)
                out.rec[row, r, q] = st.v[i, q]
    if out.spike_node >= 0:
        i = out.spike_node
        t_now = fixed.t_grid[k]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            value = st.v[i, q]
            if value - out.threshold > 0.0:
                if st.spike_flag[q] == 0:
                    st.spike_flag[q] = 1
                    if out.interpolate:
                        if k == 0:
                            t_spike = t_now
                        else:
                            t_prev = fixed.t_grid[k - 1]
                            v_prev = st.spike_v[q]
                            t_spike = t_prev + (t_now - t_prev) * (out.threshold - v_prev) / (
                                value - v_prev
                            )
                    else:
                        t_spike = t_now + SPIKE_TEPS
                    count = out.spike_n[q]
                    if count < out.spike_t.shape[1]:
                        out.spike_t[q, count] = t_spike
                    out.spike_n[q] = count + 1
            else:
                st.spike_flag[q] = 0
            st.spike_v[q] = value


@numba.njit(cache=True, error_model="numpy")
def _initialize(c0, c1, fixed, par, st, out):
    """``finitialize(v_init)`` for instances ``c0:c1`` (events come with step 0)."""
    n = fixed.parent.size
    for i in range(n):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            st.v[i, q] = par.v_init[q]
    for j in range(fixed.hh_node.size):
        i = fixed.hh_node[j]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            if fixed.use_table:
                rates = mech.hh_rates_table(st.v[i, q], fixed.table)
            else:
                rates = mech.hh_rates(st.v[i, q], fixed.q10)
            st.hh_m[j, q] = rates[0]
            st.hh_h[j, q] = rates[2]
            st.hh_n[j, q] = rates[4]
    for j in range(fixed.es_node.size):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            st.es_g[j, q] = 0.0
    for j in range(fixed.e2_node.size):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            st.e2_A[j, q] = 0.0
            st.e2_B[j, q] = 0.0
    for j in range(fixed.an_node.size):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            st.an_A_ampa[j, q] = 0.0
            st.an_B_ampa[j, q] = 0.0
            st.an_A_nmda[j, q] = 0.0
            st.an_B_nmda[j, q] = 0.0
    for q0 in range(c1 - c0):
        q = numba.uint64(c0 + q0)
        st.spike_flag[q] = 0
        out.spike_n[q] = 0
    _observe(c0, c1, 0, fixed, st, out)


@numba.njit(cache=True, error_model="numpy")
def _deliver(c, k, par, st, ev):
    """Apply chunk ``c``'s events that NEURON delivers before step ``k``."""
    cursor = ev.cursor[c]
    end = ev.ptr[c + 1]
    while cursor < end and ev.step[cursor] <= k:
        q = ev.col[cursor]
        s = ev.syn[cursor]
        w = ev.weight[cursor]
        kind = ev.kind[cursor]
        if kind == 0:  # ExpSyn: g = g + weight
            st.es_g[s, q] = st.es_g[s, q] + w
        elif kind == 1:  # Exp2Syn: A = A + weight*factor, B = B + weight*factor
            st.e2_A[s, q] = st.e2_A[s, q] + w * par.e2_factor[s, q]
            st.e2_B[s, q] = st.e2_B[s, q] + w * par.e2_factor[s, q]
        else:  # AmpaNmda: AMPA by weight*factor_ampa, NMDA by weight*nmda_ratio*factor_nmda
            ampa = w * par.an_factor_ampa[s, q]
            nmda = w * par.an_ratio[s, q] * par.an_factor_nmda[s, q]
            st.an_A_ampa[s, q] = st.an_A_ampa[s, q] + ampa
            st.an_B_ampa[s, q] = st.an_B_ampa[s, q] + ampa
            st.an_A_nmda[s, q] = st.an_A_nmda[s, q] + nmda
            st.an_B_nmda[s, q] = st.an_B_nmda[s, q] + nmda
        cursor += 1
    ev.cursor[c] = cursor


@numba.njit(cache=True, error_model="numpy")
def _assemble(c0, c1, k, fixed, par, st):
    """``setup_tree_matrix`` at ``t_mid[k]``: d and rhs for instances ``c0:c1``."""
    n = fixed.parent.size
    v = st.v
    rhs = st.rhs
    d = st.d
    for i in range(n):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            rhs[i, q] = 0.0
            d[i, q] = 0.0
    # pas: i = g*(v - e)
    for j in range(fixed.pas_node.size):
        i = fixed.pas_node[j]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            g = par.pas_g[j, q]
            e = par.pas_e[j, q]
            vq = v[i, q]
            i_up = g * ((vq + 0.001) - e)
            i_now = g * (vq - e)
            rhs[i, q] -= i_now
            d[i, q] += (i_up - i_now) / 0.001
    # IClamp (an electrode current: rhs += i, d -= di/dv = 0)
    t_mid = fixed.t_mid[k]
    for j in range(fixed.ic_node.size):
        i = fixed.ic_node[j]
        mfact = fixed.ic_mfact[j]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            start = par.ic_del[j, q]
            if t_mid < start + par.ic_dur[j, q] and t_mid >= start:
                current = par.ic_amp[j, q]
            else:
                current = 0.0
            rhs[i, q] += current * mfact
    # ExpSyn: i = g*(v - e), scaled by 1e2/area
    for j in range(fixed.es_node.size):
        i = fixed.es_node[j]
        mfact = fixed.es_mfact[j]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            g = st.es_g[j, q]
            e = par.es_e[j, q]
            vq = v[i, q]
            i_up = g * ((vq + 0.001) - e)
            i_now = g * (vq - e)
            rhs[i, q] -= i_now * mfact
            d[i, q] += ((i_up - i_now) / 0.001) * mfact
    # Exp2Syn: i = (B - A)*(v - e), scaled by 1e2/area
    for j in range(fixed.e2_node.size):
        i = fixed.e2_node[j]
        mfact = fixed.e2_mfact[j]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            g = st.e2_B[j, q] - st.e2_A[j, q]
            e = par.e2_e[j, q]
            vq = v[i, q]
            i_up = g * ((vq + 0.001) - e)
            i_now = g * (vq - e)
            rhs[i, q] -= i_now * mfact
            d[i, q] += ((i_up - i_now) / 0.001) * mfact
    # hh: ina + ik + il
    for j in range(fixed.hh_node.size):
        i = fixed.hh_node[j]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            vq = v[i, q]
            m = st.hh_m[j, q]
            h = st.hh_h[j, q]
            nn = st.hh_n[j, q]
            gnabar = par.hh_gnabar[j, q]
            gkbar = par.hh_gkbar[j, q]
            gl = par.hh_gl[j, q]
            el = par.hh_el[j, q]
            ena = par.hh_ena[j, q]
            ek = par.hh_ek[j, q]
            i_up = mech.hh_current(vq + 0.001, m, h, nn, gnabar, gkbar, gl, el, ena, ek)
            i_now = mech.hh_current(vq, m, h, nn, gnabar, gkbar, gl, el, ena, ek)
            rhs[i, q] -= i_now
            d[i, q] += (i_up - i_now) / 0.001
    # AmpaNmda (type after hh): i = g_ampa*(v - e) + g_nmda*mgblock(v)*(v - e), 1e2/area
    for j in range(fixed.an_node.size):
        i = fixed.an_node[j]
        mfact = fixed.an_mfact[j]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            g_ampa = st.an_B_ampa[j, q] - st.an_A_ampa[j, q]
            g_nmda = st.an_B_nmda[j, q] - st.an_A_nmda[j, q]
            e = par.an_e[j, q]
            mg = par.an_mg[j, q]
            vq = v[i, q]
            i_up = mech.ampanmda_current(vq + 0.001, g_ampa, g_nmda, e, mg)
            i_now = mech.ampanmda_current(vq, g_ampa, g_nmda, e, mg)
            rhs[i, q] -= i_now * mfact
            d[i, q] += ((i_up - i_now) / 0.001) * mfact
    # Capacitance, then the axial terms, node by node (see the module doc for why one
    # pass gives NEURON's order of operations on every element).
    cfac = fixed.cfac
    for i in range(n):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            d[i, q] += cfac * par.cm[i, q]
        p = fixed.parent[i]
        if p >= 0:
            a_i = fixed.a[i]
            b_i = fixed.b[i]
            for q0 in range(c1 - c0):
                q = numba.uint64(c0 + q0)
                dv = v[p, q] - v[i, q]
                rhs[i, q] -= b_i * dv
                rhs[p, q] += a_i * dv
                d[i, q] -= b_i
                d[p, q] -= a_i


@numba.njit(cache=True, error_model="numpy")
def _hines(c0, c1, parent, a, b, d, rhs):
    """NEURON's ``triang`` and ``bksub`` on node-major columns ``c0:c1``; x into rhs.

    Needs ``parent[i] < i``. ``d`` is overwritten with the pivots.
    """
    n = parent.size
    for i in range(n - 1, -1, -1):
        p = parent[i]
        if p < 0:
            continue
        a_i = a[i]
        b_i = b[i]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            factor = a_i / d[i, q]
            d[p, q] -= factor * b_i
            rhs[p, q] -= factor * rhs[i, q]
    for i in range(n):
        p = parent[i]
        if p < 0:
            for q0 in range(c1 - c0):
                q = numba.uint64(c0 + q0)
                rhs[i, q] = rhs[i, q] / d[i, q]
        else:
            b_i = b[i]
            for q0 in range(c1 - c0):
                q = numba.uint64(c0 + q0)
                rhs[i, q] = (rhs[i, q] - b_i * rhs[p, q]) / d[i, q]


@numba.njit(cache=True, error_model="numpy")
def _finish(c0, c1, k, fixed, par, st, out):
    """``v += rhs``, then the states at ``t_grid[k + 1]`` (``nonvint``), record, spikes."""
    n = fixed.parent.size
    for i in range(n):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            st.v[i, q] += st.rhs[i, q]
    dt = fixed.dt
    for j in range(fixed.hh_node.size):
        i = fixed.hh_node[j]
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            if fixed.use_table:
                rates = mech.hh_rates_table(st.v[i, q], fixed.table)
            else:
                rates = mech.hh_rates(st.v[i, q], fixed.q10)
            st.hh_m[j, q] = mech.cnexp(st.hh_m[j, q], rates[0], rates[1], dt)
            st.hh_h[j, q] = mech.cnexp(st.hh_h[j, q], rates[2], rates[3], dt)
            st.hh_n[j, q] = mech.cnexp(st.hh_n[j, q], rates[4], rates[5], dt)
    for j in range(fixed.es_node.size):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            st.es_g[j, q] = mech.decay(st.es_g[j, q], par.es_tau[j, q], dt)
    for j in range(fixed.e2_node.size):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            st.e2_A[j, q] = mech.decay(st.e2_A[j, q], par.e2_tau1[j, q], dt)
            st.e2_B[j, q] = mech.decay(st.e2_B[j, q], par.e2_tau2[j, q], dt)
    for j in range(fixed.an_node.size):
        for q0 in range(c1 - c0):
            q = numba.uint64(c0 + q0)
            st.an_A_ampa[j, q] = mech.decay(st.an_A_ampa[j, q], par.an_tau1_ampa[j, q], dt)
            st.an_B_ampa[j, q] = mech.decay(st.an_B_ampa[j, q], par.an_tau2_ampa[j, q], dt)
            st.an_A_nmda[j, q] = mech.decay(st.an_A_nmda[j, q], par.an_tau1_nmda[j, q], dt)
            st.an_B_nmda[j, q] = mech.decay(st.an_B_nmda[j, q], par.an_tau2_nmda[j, q], dt)
    _observe(c0, c1, k + 1, fixed, st, out)


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _run_chunks(first, last, width, fixed, par, st, ev, out):
    """The whole run for chunks ``first, ..., last - 1`` of ``width`` instances.

    It releases the GIL, so Python threads run several of these calls in parallel (one
    per worker): the chunks are independent, and each stays in its worker from the
    first step to the last. Each worker takes one contiguous block of chunks, so two
    workers share (at most) the cache lines at the one boundary of their blocks, not
    the lines at every chunk boundary (false sharing).
    """
    n_instances = st.v.shape[1]
    n_steps = fixed.t_mid.size
    for c in range(first, last):
        c0 = c * width
        c1 = min(n_instances, c0 + width)
        _initialize(c0, c1, fixed, par, st, out)
        for k in range(n_steps):
            _deliver(c, k, par, st, ev)
            _assemble(c0, c1, k, fixed, par, st)
            _hines(c0, c1, fixed.parent, fixed.a, fixed.b, st.d, st.rhs)
            _finish(c0, c1, k, fixed, par, st, out)


@numba.njit(cache=True, error_model="numpy")
def _initialize_all(width, fixed, par, st, out):
    n_instances = st.v.shape[1]
    for c in range((n_instances + width - 1) // width):
        _initialize(c * width, min(n_instances, (c + 1) * width), fixed, par, st, out)


@numba.njit(cache=True, error_model="numpy")
def _before_solve_all(width, k, fixed, par, st, ev):
    n_instances = st.v.shape[1]
    for c in range((n_instances + width - 1) // width):
        _deliver(c, k, par, st, ev)
        _assemble(c * width, min(n_instances, (c + 1) * width), k, fixed, par, st)


@numba.njit(cache=True, error_model="numpy")
def _after_solve_all(width, k, fixed, par, st, out):
    n_instances = st.v.shape[1]
    for c in range((n_instances + width - 1) // width):
        _finish(c * width, min(n_instances, (c + 1) * width), k, fixed, par, st, out)


# --------------------------------------------------------------------------- helpers
def time_grid(dt: float, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """NEURON's times: ``t_grid[k]`` after k steps and ``t_mid[k]`` in the middle of step k.

    NEURON advances ``t += 0.5 * dt`` twice per step, so ``t_grid`` carries its
    accumulated round-off (``t_grid[800]`` is not exactly 20 for dt = 0.025); the
    engine uses the very same values.
    """
    t_grid = np.empty(n_steps + 1)
    t_mid = np.empty(n_steps)
    t = 0.0
    half = 0.5 * dt
    t_grid[0] = t
    for k in range(n_steps):
        t = t + half
        t_mid[k] = t
        t = t + half
        t_grid[k + 1] = t
    return t_grid, t_mid


@dataclass
class RunResult:
    """What :meth:`Engine.run` returns.

    Attributes
    ----------
    t : ndarray, shape (n_times,)
        Times of the samples in ms (NEURON's accumulated t, starting at 0).
    v : ndarray, shape (n_instances, n_records, n_times)
        Membrane potential in mV at ``record_nodes``.
    record_nodes : ndarray of int64, shape (n_records,)
    spikes : list of ndarray or None
        Spike times in ms per instance (None without ``spike_node``).
    v_final : ndarray, shape (n_instances, n_nodes)
        Every node's potential in mV at the end of the run.
    dt : float
    n_steps : int
    """

    t: np.ndarray
    v: np.ndarray
    record_nodes: np.ndarray
    spikes: list | None
    v_final: np.ndarray
    dt: float
    n_steps: int


_ALIASES = {"IClamp.delay": "IClamp.del"}


def _default_workers() -> int:
    """CPU threads for a run: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Engine:
    """Run ``n_instances`` copies of a :class:`CellModel` with NEURON's fixed step.

    Parameters
    ----------
    model : CellModel
    n_instances : int, default 1
    backend : {"cpu", "auto", "cuda"}
        ``"cuda"``: the whole run on an NVIDIA GPU (:mod:`dhs.engine.cuda`); ``"auto"``
        is the CPU.
    solver : {"fused", "dhs"}
        ``"fused"``: one parallel Numba kernel for the whole run (default).
        ``"dhs"``: step by step, with :class:`dhs.Solver` for the linear solves.
    chunk : int, default 16
        Instances advanced together by one thread (the inner, vectorised loop). Results
        do not depend on it; 16 (two 64-byte cache lines of doubles) runs fastest here.
    workers : int, optional
        CPU threads for the run (default: the cores this process may use, at most one
        per chunk).

    Notes
    -----
    Every parameter of :data:`dhs.engine.model.MECHANISMS` (named ``"pas.g"``,
    ``"IClamp.amp"``, ...), ``"cm"`` and ``"v_init"`` can be set per instance with
    :meth:`set`; each synapse's incoming events can be set per instance with
    :meth:`set_events`.
    """

    def __init__(
        self,
        model: CellModel,
        n_instances: int = 1,
        backend: str = "cpu",
        *,
        solver: str = "fused",
        chunk: int = 16,
        workers: int | None = None,
    ):
        if not isinstance(model, CellModel):
            raise ValueError(f"model must be a dhs.engine.CellModel, got {type(model).__name__}")
        if isinstance(n_instances, bool) or not isinstance(n_instances, (int, np.integer)):
            raise ValueError(f"n_instances must be a positive integer, got {n_instances!r}")
        if n_instances < 1:
            raise ValueError(f"n_instances must be a positive integer, got {n_instances}")
        if backend not in ("cpu", "auto", "cuda"):
            raise ValueError(
                f"backend {backend!r} is not available for the engine; use 'cpu' or 'cuda'"
            )
        if backend == "cuda":
            from . import cuda as engine_cuda

            engine_cuda.check_available()
            engine_cuda.check_model(model)
        if solver not in ("fused", "dhs"):
            raise ValueError(f"solver must be 'fused' or 'dhs', got {solver!r}")
        for name, value in (("chunk", chunk), ("workers", workers)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.model = model
        self.n_instances = int(n_instances)
        self.backend = "cuda" if backend == "cuda" else "cpu"
        self.solver = solver
        self.chunk = int(chunk)
        self.workers = workers
        n = self.n_instances
        self._params: dict[str, np.ndarray] = {}
        for name, table in model.mechanisms.items():
            for p in MECHANISMS[name]:
                self._params[f"{name}.{p}"] = np.repeat(table.params[p][:, None], n, axis=1)
        self._params["cm"] = np.repeat(model.cm[:, None], n, axis=1)
        self._params["v_init"] = np.full(n, model.v_init)
        self._membrane = model.cm > 0  # nodes with capacitance
        # Events: shared lists per synapse, plus per-instance replacements.
        self._shared_events: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._instance_events: dict[tuple[str, int], dict[int, tuple]] = {}
        # Added on top of those: bulk events and Poisson inputs (generated at run time).
        self._bulk_events: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._poisson: list[tuple] = []  # (kind, rows, rate, weight, seed, start, stop, ids)
        for kind in SYNAPSES:
            events = model.events[kind]
            for s in range(model.mechanisms[kind].count):
                self._shared_events[(kind, s)] = events.of(s)

    # ----------------------------------------------------------------- parameters
    @property
    def parameter_names(self) -> list[str]:
        """Every name :meth:`set` and :meth:`get` accept."""
        return list(self._params)

    def _resolve(self, name: str) -> str:
        name = _ALIASES.get(name, name)
        if name not in self._params:
            raise ValueError(f"unknown parameter {name!r}; known: {self.parameter_names}")
        return name

    def get(self, name: str) -> np.ndarray:
        """A copy of a parameter: ``(n_instances, m)`` (m mechanism instances, or nodes
        for ``"cm"``), or ``(n_instances,)`` for ``"v_init"``."""
        return self._params[self._resolve(name)].T.copy()

    def set(self, name: str, values, index: int | None = None) -> None:
        """Set a parameter for every instance.

        Parameters
        ----------
        name : str
            ``"<mechanism>.<parameter>"`` (e.g. ``"pas.g"`` in S/cm², ``"IClamp.amp"``
            in nA, ``"ExpSyn.tau"`` in ms), ``"cm"`` (µF/cm²) or ``"v_init"`` (mV).
        values : float or array_like
            A scalar (all instances, all locations); shape ``(n_instances,)`` (one value
            per instance, at every location); for a density mechanism or ``"cm"``
            ``(n_instances, n_nodes)`` (per node; nodes without the mechanism, or
            without membrane for ``"cm"``, are ignored); for a point process
            ``(n_instances, m)`` (per point process).
        index : int, optional
            Only this mechanism instance (row of its :class:`MechanismTable`); values
            must then be a scalar or ``(n_instances,)``.
        """
        name = self._resolve(name)
        target = self._params[name]
        n = self.n_instances
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{name}: values must be finite")
        if name == "v_init":
            if index is not None:
                raise ValueError("v_init takes no index")
            target[:] = np.broadcast_to(values, (n,)) if values.ndim <= 1 else values
            return
        m = target.shape[0]
        mechanism = name.split(".", 1)[0]
        if index is not None:
            if not 0 <= index < m:
                raise ValueError(f"{name}: index {index} is outside 0..{m - 1}")
            if values.shape not in ((), (n,)):
                raise ValueError(f"{name}[{index}]: values must be a scalar or ({n},)")
            target[index] = values
            return
        if values.ndim == 0:
            new = np.broadcast_to(values, target.shape)
        elif values.shape == (n,):
            new = np.broadcast_to(values[None, :], target.shape)
        elif values.ndim == 2 and values.shape[0] == n:
            if name == "cm" or mechanism in DENSITY_MECHANISMS:
                if values.shape[1] != self.model.n:
                    raise ValueError(
                        f"{name}: per-node values must have shape ({n}, {self.model.n})"
                    )
                nodes = (
                    np.arange(self.model.n) if name == "cm"
                    else self.model.mechanisms[mechanism].node
                )  # fmt: skip
                new = values[:, nodes].T
            elif values.shape[1] == m:
                new = values.T
            else:
                raise ValueError(f"{name}: per-instance values must have shape ({n}, {m})")
        else:
            raise ValueError(
                f"{name}: values of shape {values.shape} do not fit {n} instances "
                f"(scalar, ({n},) or ({n}, {'n_nodes' if name == 'cm' else m}))"
            )
        if name == "cm":
            target[self._membrane] = new[self._membrane]
        else:
            target[:] = new

    # ----------------------------------------------------------------- events
    def _synapse_key(self, kind: str, synapse: int) -> tuple[str, int]:
        if kind not in SYNAPSES:
            raise ValueError(f"only {list(SYNAPSES)} receive events, not {kind!r}")
        count = self.model.mechanisms[kind].count
        if not 0 <= synapse < count:
            raise ValueError(f"{kind} {synapse} does not exist (the model has {count})")
        return kind, int(synapse)

    def set_events(self, kind: str, synapse: int, times, weights, instances=None) -> None:
        """Replace the incoming events of one synapse.

        Parameters
        ----------
        kind : {"ExpSyn", "Exp2Syn", "AmpaNmda"}
        synapse : int
            Row of the synapse in the model's table of that kind.
        times : array_like
            Arrival times in ms.
        weights : float or array_like
            Weights in µS (``NetCon.weight[0]``), one per time or one for all.
        instances : int or sequence of int, optional
            The instances that get these events; default all (which also drops earlier
            per-instance settings of this synapse).
        """
        key = self._synapse_key(kind, synapse)
        times = np.atleast_1d(np.asarray(times, dtype=np.float64)).ravel()
        weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), times.shape).copy()
        if not (np.isfinite(times).all() and np.isfinite(weights).all()):
            raise ValueError("event times and weights must be finite")
        order = np.argsort(times, kind="stable")
        pair = (times[order], weights[order])
        if instances is None:
            self._shared_events[key] = pair
            self._instance_events.pop(key, None)
            return
        chosen = np.atleast_1d(np.asarray(instances, dtype=np.int64))
        if chosen.size and (chosen.min() < 0 or chosen.max() >= self.n_instances):
            raise ValueError(f"instances must lie in 0..{self.n_instances - 1}")
        per = self._instance_events.setdefault(key, {})
        for instance in chosen.tolist():
            per[instance] = pair

    def events(self, kind: str, synapse: int, instance: int = 0):
        """``(times, weights)`` set for one synapse in one instance by :meth:`set_events`.

        Events from :meth:`add_events` and :meth:`add_poisson` come on top of these.
        """
        key = self._synapse_key(kind, synapse)
        return self._instance_events.get(key, {}).get(instance, self._shared_events[key])

    def _synapse_rows(self, kind: str, synapses) -> np.ndarray:
        if kind not in SYNAPSES:
            raise ValueError(f"only {list(SYNAPSES)} receive events, not {kind!r}")
        rows = np.atleast_1d(np.asarray(synapses))
        if rows.dtype.kind not in "iu":
            raise ValueError(f"synapses must be integer rows of the {kind} table")
        count = self.model.mechanisms[kind].count
        bad = rows[(rows < 0) | (rows >= count)]
        if bad.size:
            raise ValueError(f"{kind} {int(bad[0])} does not exist (the model has {count})")
        return rows.astype(np.int64).ravel()

    def add_events(self, kind: str, synapses, instances, times, weights) -> None:
        """Add events in bulk, on top of those of :meth:`set_events`.

        Parameters
        ----------
        kind : {"ExpSyn", "Exp2Syn", "AmpaNmda"}
        synapses, instances, times, weights : array_like
            Broadcast together: event j reaches synapse ``synapses[j]`` (row of the
            ``kind`` table) of instance ``instances[j]`` at ``times[j]`` ms with weight
            ``weights[j]`` µS.
        """
        synapses, instances, times, weights = np.broadcast_arrays(
            np.asarray(synapses), np.asarray(instances), np.asarray(times, dtype=np.float64),
            np.asarray(weights, dtype=np.float64),
        )  # fmt: skip
        rows = self._synapse_rows(kind, synapses)
        columns = np.asarray(instances).ravel()
        if columns.dtype.kind not in "iu":
            raise ValueError("instances must be integers")
        if columns.size and (columns.min() < 0 or columns.max() >= self.n_instances):
            raise ValueError(f"instances must lie in 0..{self.n_instances - 1}")
        times, weights = times.ravel().copy(), weights.ravel().copy()
        if not (np.isfinite(times).all() and np.isfinite(weights).all()):
            raise ValueError("event times and weights must be finite")
        if rows.size:
            self._bulk_events.append(
                (columns.astype(np.int64), SYNAPSES.index(kind), rows, times, weights)
            )

    def add_poisson(
        self,
        kind: str,
        synapses,
        rate_hz: float,
        weight: float,
        *,
        seed: int,
        start: float = 0.0,
        stop: float | None = None,
        instance_ids=None,
    ) -> None:
        """Seeded Poisson background input on ``synapses``, different in every instance.

        Instance q gets :func:`dhs.engine.inputs.poisson_times` ``(rate_hz, start, stop,
        seed=seed, instance=instance_ids[q], n_synapses=len(synapses))``, train s on
        ``synapses[s]``, so NEURON can be given the same times for any single trial.

        Parameters
        ----------
        kind : {"ExpSyn", "Exp2Syn", "AmpaNmda"}
        synapses : sequence of int
            Rows of the ``kind`` table.
        rate_hz : float
            Rate of each train in Hz.
        weight : float
            NetCon weight in µS.
        seed : int
        start, stop : float
            Interval in ms (``stop`` defaults to the run's ``tstop``).
        instance_ids : sequence of int, optional
            The trial number that seeds each instance (default ``0 .. n_instances - 1``);
            a :func:`dhs.engine.sweep` ``configure`` passes its ``instance_indices``, so
            the input does not depend on the chunking.
        """
        rows = self._synapse_rows(kind, synapses)
        if instance_ids is None:
            instance_ids = np.arange(self.n_instances)
        instance_ids = np.asarray(instance_ids)
        if instance_ids.shape != (self.n_instances,) or instance_ids.dtype.kind not in "iu":
            raise ValueError(f"instance_ids must be {self.n_instances} integers")
        if instance_ids.size and instance_ids.min() < 0:
            raise ValueError("instance_ids must be non-negative")
        # Checks the arguments now rather than at run time.
        poisson_times(rate_hz, start, start if stop is None else stop, seed=seed, instance=0,
                      n_synapses=0)  # fmt: skip
        if not math.isfinite(weight):
            raise ValueError(f"weight must be finite, got {weight!r}")
        if rows.size:
            self._poisson.append(
                (SYNAPSES.index(kind), rows, float(rate_hz), float(weight), int(seed),
                 float(start), None if stop is None else float(stop),
                 instance_ids.astype(np.int64))
            )  # fmt: skip

    def _event_arrays(self, t_mid: np.ndarray, n_chunks: int, tstop: float) -> _Events:
        n = self.n_instances
        parts = []  # (col, kind, syn, time, weight): arrays but for kind
        for (kind, s), (times, weights) in self._shared_events.items():
            per = self._instance_events.get((kind, s), {})
            plain = np.setdiff1d(np.arange(n), np.fromiter(per, np.int64, len(per)))
            if times.size and plain.size:
                repeated = (np.tile(times, plain.size), np.tile(weights, plain.size))
                column = np.repeat(plain, times.size)
                parts.append((column, SYNAPSES.index(kind), np.full(column.size, s), *repeated))
            for instance, (t_i, w_i) in per.items():
                if t_i.size:
                    parts.append((np.full(t_i.size, instance), SYNAPSES.index(kind),
                                  np.full(t_i.size, s), t_i, w_i))  # fmt: skip
        parts += self._bulk_events
        for kind_index, rows, rate, weight, seed, start, stop, ids in self._poisson:
            stop = tstop if stop is None else stop
            for q in range(n):
                trains = poisson_times(rate, start, max(start, stop), seed=seed,
                                       instance=int(ids[q]), n_synapses=rows.size)  # fmt: skip
                sizes = [train.size for train in trains]
                time = np.concatenate(trains)
                parts.append((np.full(time.size, q), kind_index, np.repeat(rows, sizes), time,
                              np.full(time.size, weight)))  # fmt: skip
        if parts:
            col = np.concatenate([p[0] for p in parts]).astype(np.int64)
            kind = np.concatenate([np.full(p[0].size, p[1], np.int8) for p in parts])
            syn = np.concatenate([p[2] for p in parts]).astype(np.int64)
            time = np.concatenate([p[3] for p in parts])
            weight = np.concatenate([p[4] for p in parts])
        else:
            col = syn = np.zeros(0, np.int64)
            kind = np.zeros(0, np.int8)
            time = weight = np.zeros(0)
        # Delivered before step k: the first k with t_mid[k] >= time.
        step = np.searchsorted(t_mid, time, side="left").astype(np.int64)
        keep = step < t_mid.size
        col, kind, syn, time, weight, step = (x[keep] for x in (col, kind, syn, time, weight,
                                                                 step))  # fmt: skip
        chunk_of = col // self.chunk
        order = np.lexsort((time, step, chunk_of))
        col, kind, syn, weight, step, chunk_of = (
            x[order] for x in (col, kind, syn, weight, step, chunk_of)
        )
        ptr = np.searchsorted(chunk_of, np.arange(n_chunks + 1), side="left").astype(np.int64)
        return _Events(ptr, step, col, kind, syn, weight, ptr[:-1].copy())

    # ----------------------------------------------------------------- running
    def run(
        self,
        tstop: float,
        dt: float = 0.025,
        record_nodes=None,
        record_every: int = 1,
        spike_node=None,
        spike_threshold: float = -20.0,
        *,
        spike_method: str = "neuron",
        max_spikes: int | None = None,
    ) -> RunResult:
        """Initialise (``finitialize(v_init)``) and run to ``tstop``.

        Parameters
        ----------
        tstop : float
            End time in ms; ``round(tstop / dt)`` steps are taken.
        dt : float, default 0.025
            Time step in ms.
        record_nodes : sequence of int or str, optional
            Nodes (indices, or names from ``model.node_names``) whose potential is
            recorded at t = 0 and every ``record_every`` steps (default: none).
        record_every : int, default 1
        spike_node : int or str, optional
            Node watched for spikes (NetCon-style threshold detection).
        spike_threshold : float, default -20
            Threshold in mV.
        spike_method : {"neuron", "interpolate"}
            ``"neuron"``: the step's end time + 1e-10 ms, as NEURON's NetCon records;
            ``"interpolate"``: linear interpolation of the crossing.
        max_spikes : int, optional
            Spikes kept per instance (default: as many as can occur).

        Returns
        -------
        RunResult
        """
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive number of ms, got {dt}")
        if not (math.isfinite(tstop) and tstop >= 0):
            raise ValueError(f"tstop must be a non-negative number of ms, got {tstop}")
        if isinstance(record_every, bool) or int(record_every) != record_every or record_every < 1:
            raise ValueError(f"record_every must be a positive integer, got {record_every!r}")
        if spike_method not in ("neuron", "interpolate"):
            raise ValueError(
                f"spike_method must be 'neuron' or 'interpolate', got {spike_method!r}"
            )
        record_every = int(record_every)
        n_steps = round(tstop / dt)
        model = self.model
        n, N = model.n, self.n_instances
        rec_node = np.array(
            [model.node(r) for r in (record_nodes if record_nodes is not None else [])],
            dtype=np.int64,
        )
        spike = -1 if spike_node is None else model.node(spike_node)
        if max_spikes is None:
            max_spikes = n_steps // 2 + 1
        t_grid, t_mid = time_grid(float(dt), n_steps)

        tables = model.mechanisms
        area = model.area
        static = _Static(
            parent=model.parent, a=model.a, b=model.b, cfac=0.001 * (1.0 / dt), dt=float(dt),
            t_grid=t_grid, t_mid=t_mid,
            pas_node=tables["pas"].node, hh_node=tables["hh"].node,
            ic_node=tables["IClamp"].node, ic_mfact=1.0e2 / area[tables["IClamp"].node],
            es_node=tables["ExpSyn"].node, es_mfact=1.0e2 / area[tables["ExpSyn"].node],
            e2_node=tables["Exp2Syn"].node, e2_mfact=1.0e2 / area[tables["Exp2Syn"].node],
            q10=mech.hh_q10(model.celsius), use_table=model.hh_tables,
            table=mech.hh_table(model.celsius) if model.hh_tables else np.zeros((6, 201)),
            an_node=tables["AmpaNmda"].node, an_mfact=1.0e2 / area[tables["AmpaNmda"].node],
        )  # fmt: skip
        p = self._params
        e2_tau1 = mech.exp2syn_tau1(p["Exp2Syn.tau1"], p["Exp2Syn.tau2"])
        an_tau1_ampa = mech.exp2syn_tau1(p["AmpaNmda.tau1_ampa"], p["AmpaNmda.tau2_ampa"])
        an_tau1_nmda = mech.exp2syn_tau1(p["AmpaNmda.tau1_nmda"], p["AmpaNmda.tau2_nmda"])
        params = _Params(
            cm=p["cm"], v_init=p["v_init"], pas_g=p["pas.g"], pas_e=p["pas.e"],
            hh_gnabar=p["hh.gnabar"], hh_gkbar=p["hh.gkbar"], hh_gl=p["hh.gl"],
            hh_el=p["hh.el"], hh_ena=p["hh.ena"], hh_ek=p["hh.ek"], ic_del=p["IClamp.del"],
            ic_dur=p["IClamp.dur"], ic_amp=p["IClamp.amp"], es_tau=p["ExpSyn.tau"],
            es_e=p["ExpSyn.e"], e2_tau1=e2_tau1, e2_tau2=p["Exp2Syn.tau2"], e2_e=p["Exp2Syn.e"],
            e2_factor=mech.exp2syn_factor(e2_tau1, p["Exp2Syn.tau2"]),
            an_tau1_ampa=an_tau1_ampa, an_tau2_ampa=p["AmpaNmda.tau2_ampa"],
            an_tau1_nmda=an_tau1_nmda, an_tau2_nmda=p["AmpaNmda.tau2_nmda"],
            an_e=p["AmpaNmda.e"], an_ratio=p["AmpaNmda.nmda_ratio"], an_mg=p["AmpaNmda.mg"],
            an_factor_ampa=mech.exp2syn_factor(an_tau1_ampa, p["AmpaNmda.tau2_ampa"]),
            an_factor_nmda=mech.exp2syn_factor(an_tau1_nmda, p["AmpaNmda.tau2_nmda"]),
        )  # fmt: skip
        shape = (n, N)
        state = _State(
            v=np.empty(shape), rhs=np.empty(shape), d=np.empty(shape),
            hh_m=np.empty((tables["hh"].count, N)), hh_h=np.empty((tables["hh"].count, N)),
            hh_n=np.empty((tables["hh"].count, N)), es_g=np.empty((tables["ExpSyn"].count, N)),
            e2_A=np.empty((tables["Exp2Syn"].count, N)),
            e2_B=np.empty((tables["Exp2Syn"].count, N)),
            spike_flag=np.zeros(N, np.uint8), spike_v=np.zeros(N),
            an_A_ampa=np.empty((tables["AmpaNmda"].count, N)),
            an_B_ampa=np.empty((tables["AmpaNmda"].count, N)),
            an_A_nmda=np.empty((tables["AmpaNmda"].count, N)),
            an_B_nmda=np.empty((tables["AmpaNmda"].count, N)),
        )  # fmt: skip
        n_chunks = (N + self.chunk - 1) // self.chunk
        events = self._event_arrays(t_mid, n_chunks, n_steps * float(dt))
        output = _Output(
            rec_node=rec_node, rec_every=record_every,
            rec=np.zeros((n_steps // record_every + 1, rec_node.size, N)),
            spike_node=spike, threshold=float(spike_threshold),
            interpolate=spike_method == "interpolate",
            spike_t=np.zeros((N, max(int(max_spikes), 0))), spike_n=np.zeros(N, np.int64),
        )  # fmt: skip

        if self.backend == "cuda":
            from .cuda import run_cuda

            run_cuda(self, n_steps, static, params, state, events, output)
        elif self.solver == "fused":
            workers = min(self.workers or _default_workers(), n_chunks)
            arguments = (self.chunk, static, params, state, events, output)
            # Worker w: chunks bounds[w]:bounds[w + 1] (contiguous blocks, sizes within 1).
            bounds = [w * n_chunks // workers for w in range(workers + 1)]
            if workers == 1:
                _run_chunks(0, n_chunks, *arguments)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    jobs = [pool.submit(_run_chunks, bounds[w], bounds[w + 1], *arguments)
                            for w in range(workers)]  # fmt: skip
                    for job in jobs:
                        job.result()
        else:
            self._run_with_dhs(n_steps, static, params, state, events, output)

        spikes = None
        if spike >= 0:
            if np.any(output.spike_n > output.spike_t.shape[1]):
                warnings.warn(
                    f"more than max_spikes={output.spike_t.shape[1]} spikes in some instances; "
                    "the later ones are not kept",
                    RuntimeWarning,
                    stacklevel=2,
                )
            spikes = [
                output.spike_t[q, : min(int(output.spike_n[q]), output.spike_t.shape[1])].copy()
                for q in range(N)
            ]
        return RunResult(
            t=t_grid[::record_every].copy(),
            v=np.ascontiguousarray(output.rec.transpose(2, 1, 0)),
            record_nodes=rec_node,
            spikes=spikes,
            v_final=np.ascontiguousarray(state.v.T),
            dt=float(dt),
            n_steps=n_steps,
        )

    def _run_with_dhs(self, n_steps, static, params, state, events, output) -> None:
        solver = Solver(Tree(self.model.parent), backend="cpu")
        width = self.chunk
        _initialize_all(width, static, params, state, output)
        a, b = self.model.a, self.model.b
        d_rows = np.empty((self.n_instances, self.model.n))
        x_rows = np.empty((self.n_instances, self.model.n))
        for k in range(n_steps):
            _before_solve_all(width, k, static, params, state, events)
            d_rows[:] = state.d.T
            x_rows[:] = state.rhs.T
            solver.solve(a, b, d_rows, x_rows, inplace=True)
            state.rhs[:] = x_rows.T
            _after_solve_all(width, k, static, params, state, output)
