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
``netcvode.cpp``) runs at the start of every step (``deliver_net_events``), so it sees
the state after ``finitialize`` and after every step but the last: a crossing on the
last step of a run is reported only by a longer run (NEURON's own behaviour, which the
engine keeps). When ``v - threshold > 0`` and the detector is not armed-off, it fires
at ``t + 1e-10`` ms (no interpolation) and stays off until ``v - threshold > 0`` is
false again. The engine reports exactly that (``spike_method="neuron"``);
``"interpolate"`` gives the linear interpolation of the crossing between the two samples
instead.

Layout
------
State is chunk-major: the instances are split into chunks of at most ``chunk``, and
``v``, ``rhs``, ``d`` have shape ``(n_chunks, n_nodes, chunk)`` (mechanism states
``(n_chunks, n_mechanism_instances, chunk)``), each chunk's block contiguous and
starting on a cache line. Inside a chunk the layout is node-major, so every inner loop
runs over the chunk's instances, contiguous in memory; and a chunk's whole state is one
block of a few hundred kB, whatever the number of instances (with plain node-major
``(n_nodes, N)`` rows, N * 8 bytes apart, the per-instance cost grew by half from
N = 100 to N = 1000: TLB and cache-set pressure). :func:`chunk_plan` splits the
instances into one contiguous group per worker, each cut into full chunks and one
narrower last chunk, so the workers get equal work.

The default ``solver="fused"`` advances each chunk through the whole run inside one
Numba kernel. Per step it makes three passes over the nodes: the assembly (pas, the
other mechanisms' terms, capacitance and axial terms, node by node; see
:func:`_assemble`), NEURON's ``triang`` (backward) and ``bksub`` with ``v += x``
(forward), the arithmetic of NEURON's ``triang``/``bksub`` (which is also that of
:mod:`dhs.solvers`). The kernel releases the GIL and ``workers`` Python threads run
it, each on its own block of chunks, with no per-step synchronisation (a parallel
``prange`` kernel took 7 s longer to compile, for nothing gained: the chunks never need
to meet). Inner loops count from 0 and index with an unsigned column
(``numba.uint64(q0)``), so Numba adds no negative-index wraparound, and the kernels use
``error_model="numpy"`` (no zero-division branch before each division), without
changing any operation or its order. ``solver="dhs"`` runs the same phases step by
step from Python and solves each step's systems with :class:`dhs.Solver` on
``(n_instances, n_nodes)`` copies: slower, but it routes the solve through the
library's checked solver, and the tests use it to confirm that the fused elimination
gives identical results.

The CUDA backend (:mod:`dhs.engine.cuda`) gets the same arrays as one chunk of all the
instances, ``(1, rows, n_instances)``: node-major, which one thread per instance reads
coalesced.
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

from ..backends import resolve_backend
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
     "an_node", "an_mfact", "pas_row", "entry_ptr", "ic_entry", "es_entry", "e2_entry",
     "hh_entry", "an_entry"],
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
     "spike_v", "an_A_ampa", "an_B_ampa", "an_A_nmda", "an_B_nmda", "term_rhs", "term_d"],
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
def _observe(c, start, count, k, fixed, st, out):
    """Record at step ``k`` (time ``t_grid[k]``) and test the spike threshold."""
    if k % out.rec_every == 0:
        row = k // out.rec_every
        for r in range(out.rec_node.size):
            i = out.rec_node[r]
            for q0 in range(count):
                q = numba.uint64(q0)
                out.rec[row, r, numba.uint64(start + q0)] = st.v[c, i, q]
    if out.spike_node >= 0 and k < fixed.t_mid.size:  # NEURON checks at a step's start
        i = out.spike_node
        t_now = fixed.t_grid[k]
        for q0 in range(count):
            q = numba.uint64(q0)
            g = numba.uint64(start + q0)  # the instance (output column)
            value = st.v[c, i, q]
            if value - out.threshold > 0.0:
                if st.spike_flag[c, q] == 0:
                    st.spike_flag[c, q] = 1
                    if out.interpolate:
                        if k == 0:
                            t_spike = t_now
                        else:
                            t_prev = fixed.t_grid[k - 1]
                            v_prev = st.spike_v[c, q]
                            t_spike = t_prev + (t_now - t_prev) * (out.threshold - v_prev) / (
                                value - v_prev
                            )
                    else:
                        t_spike = t_now + SPIKE_TEPS
                    count = out.spike_n[g]
                    if count < out.spike_t.shape[1]:
                        out.spike_t[g, count] = t_spike
                    out.spike_n[g] = count + 1
            else:
                st.spike_flag[c, q] = 0
            st.spike_v[c, q] = value


@numba.njit(cache=True, error_model="numpy")
def _initialize(c, start, count, fixed, par, st, out):
    """``finitialize(v_init)`` for chunk ``c`` (events come with step 0)."""
    n = fixed.parent.size
    for i in range(n):
        for q0 in range(count):
            q = numba.uint64(q0)
            st.v[c, i, q] = par.v_init[c, q]
    for j in range(fixed.hh_node.size):
        i = fixed.hh_node[j]
        for q0 in range(count):
            q = numba.uint64(q0)
            if fixed.use_table:
                rates = mech.hh_rates_table(st.v[c, i, q], fixed.table)
            else:
                rates = mech.hh_rates(st.v[c, i, q], fixed.q10)
            st.hh_m[c, j, q] = rates[0]
            st.hh_h[c, j, q] = rates[2]
            st.hh_n[c, j, q] = rates[4]
    for j in range(fixed.es_node.size):
        for q0 in range(count):
            q = numba.uint64(q0)
            st.es_g[c, j, q] = 0.0
    for j in range(fixed.e2_node.size):
        for q0 in range(count):
            q = numba.uint64(q0)
            st.e2_A[c, j, q] = 0.0
            st.e2_B[c, j, q] = 0.0
    for j in range(fixed.an_node.size):
        for q0 in range(count):
            q = numba.uint64(q0)
            st.an_A_ampa[c, j, q] = 0.0
            st.an_B_ampa[c, j, q] = 0.0
            st.an_A_nmda[c, j, q] = 0.0
            st.an_B_nmda[c, j, q] = 0.0
    for q0 in range(count):
        q = numba.uint64(q0)
        st.spike_flag[c, q] = 0
        out.spike_n[numba.uint64(start + q0)] = 0
    _observe(c, start, count, 0, fixed, st, out)


@numba.njit(cache=True, error_model="numpy")
def _deliver(c, start, count, k, par, st, ev):
    """Apply chunk ``c``'s events that NEURON delivers before step ``k``."""
    cursor = ev.cursor[c]
    end = ev.ptr[c + 1]
    while cursor < end and ev.step[cursor] <= k:
        q = ev.col[cursor] - start  # the instance's column within the chunk
        s = ev.syn[cursor]
        w = ev.weight[cursor]
        kind = ev.kind[cursor]
        if kind == 0:  # ExpSyn: g = g + weight
            st.es_g[c, s, q] = st.es_g[c, s, q] + w
        elif kind == 1:  # Exp2Syn: A = A + weight*factor, B = B + weight*factor
            st.e2_A[c, s, q] = st.e2_A[c, s, q] + w * par.e2_factor[c, s, q]
            st.e2_B[c, s, q] = st.e2_B[c, s, q] + w * par.e2_factor[c, s, q]
        else:  # AmpaNmda: AMPA by weight*factor_ampa, NMDA by weight*nmda_ratio*factor_nmda
            ampa = w * par.an_factor_ampa[c, s, q]
            nmda = w * par.an_ratio[c, s, q] * par.an_factor_nmda[c, s, q]
            st.an_A_ampa[c, s, q] = st.an_A_ampa[c, s, q] + ampa
            st.an_B_ampa[c, s, q] = st.an_B_ampa[c, s, q] + ampa
            st.an_A_nmda[c, s, q] = st.an_A_nmda[c, s, q] + nmda
            st.an_B_nmda[c, s, q] = st.an_B_nmda[c, s, q] + nmda
        cursor += 1
    ev.cursor[c] = cursor


@numba.njit(cache=True, error_model="numpy")
def _assemble(c, start, count, k, fixed, par, st):
    """``setup_tree_matrix`` at ``t_mid[k]``: d and rhs of chunk ``c``.

    The mechanisms other than pas (few nodes) first leave their terms in
    ``st.term_rhs``/``st.term_d``, one row per entry (:func:`mechanism_entries`); then
    one pass over the nodes, in increasing index, adds to each node exactly what
    NEURON adds and in its order: pas (onto rhs = d = 0), the node's entries in
    mechanism-type order, the capacitance, and the node's axial terms, which also
    reach its parent (whose own terms are complete, as the parent's index is smaller).
    Adding ``-x`` is IEEE-identical to subtracting ``x``, so the sums are NEURON's to
    the bit.
    """
    n = fixed.parent.size
    v = st.v
    rhs = st.rhs
    d = st.d
    term_rhs = st.term_rhs
    term_d = st.term_d
    # IClamp (an electrode current: rhs += i, d -= di/dv = 0)
    t_mid = fixed.t_mid[k]
    for j in range(fixed.ic_node.size):
        e = fixed.ic_entry[j]
        mfact = fixed.ic_mfact[j]
        for q0 in range(count):
            q = numba.uint64(q0)
            start_time = par.ic_del[c, j, q]
            if t_mid < start_time + par.ic_dur[c, j, q] and t_mid >= start_time:
                current = par.ic_amp[c, j, q]
            else:
                current = 0.0
            term_rhs[c, e, q] = current * mfact
            term_d[c, e, q] = 0.0
    # ExpSyn: i = g*(v - e), scaled by 1e2/area
    for j in range(fixed.es_node.size):
        i = fixed.es_node[j]
        e = fixed.es_entry[j]
        mfact = fixed.es_mfact[j]
        for q0 in range(count):
            q = numba.uint64(q0)
            g = st.es_g[c, j, q]
            reversal = par.es_e[c, j, q]
            vq = v[c, i, q]
            i_up = g * ((vq + 0.001) - reversal)
            i_now = g * (vq - reversal)
            term_rhs[c, e, q] = -(i_now * mfact)
            term_d[c, e, q] = ((i_up - i_now) / 0.001) * mfact
    # Exp2Syn: i = (B - A)*(v - e), scaled by 1e2/area
    for j in range(fixed.e2_node.size):
        i = fixed.e2_node[j]
        e = fixed.e2_entry[j]
        mfact = fixed.e2_mfact[j]
        for q0 in range(count):
            q = numba.uint64(q0)
            g = st.e2_B[c, j, q] - st.e2_A[c, j, q]
            reversal = par.e2_e[c, j, q]
            vq = v[c, i, q]
            i_up = g * ((vq + 0.001) - reversal)
            i_now = g * (vq - reversal)
            term_rhs[c, e, q] = -(i_now * mfact)
            term_d[c, e, q] = ((i_up - i_now) / 0.001) * mfact
    # hh: ina + ik + il
    for j in range(fixed.hh_node.size):
        i = fixed.hh_node[j]
        e = fixed.hh_entry[j]
        for q0 in range(count):
            q = numba.uint64(q0)
            vq = v[c, i, q]
            m = st.hh_m[c, j, q]
            h = st.hh_h[c, j, q]
            nn = st.hh_n[c, j, q]
            gnabar = par.hh_gnabar[c, j, q]
            gkbar = par.hh_gkbar[c, j, q]
            gl = par.hh_gl[c, j, q]
            el = par.hh_el[c, j, q]
            ena = par.hh_ena[c, j, q]
            ek = par.hh_ek[c, j, q]
            i_up = mech.hh_current(vq + 0.001, m, h, nn, gnabar, gkbar, gl, el, ena, ek)
            i_now = mech.hh_current(vq, m, h, nn, gnabar, gkbar, gl, el, ena, ek)
            term_rhs[c, e, q] = -i_now
            term_d[c, e, q] = (i_up - i_now) / 0.001
    # AmpaNmda (type after hh): i = g_ampa*(v - e) + g_nmda*mgblock(v)*(v - e), 1e2/area
    for j in range(fixed.an_node.size):
        i = fixed.an_node[j]
        e = fixed.an_entry[j]
        mfact = fixed.an_mfact[j]
        for q0 in range(count):
            q = numba.uint64(q0)
            g_ampa = st.an_B_ampa[c, j, q] - st.an_A_ampa[c, j, q]
            g_nmda = st.an_B_nmda[c, j, q] - st.an_A_nmda[c, j, q]
            reversal = par.an_e[c, j, q]
            mg = par.an_mg[c, j, q]
            vq = v[c, i, q]
            i_up = mech.ampanmda_current(vq + 0.001, g_ampa, g_nmda, reversal, mg)
            i_now = mech.ampanmda_current(vq, g_ampa, g_nmda, reversal, mg)
            term_rhs[c, e, q] = -(i_now * mfact)
            term_d[c, e, q] = ((i_up - i_now) / 0.001) * mfact
    # The pass over the nodes.
    cfac = fixed.cfac
    for i in range(n):
        j = fixed.pas_row[i]
        if j >= 0:  # pas: i = g*(v - e), onto rhs = d = 0
            for q0 in range(count):
                q = numba.uint64(q0)
                g = par.pas_g[c, j, q]
                reversal = par.pas_e[c, j, q]
                vq = v[c, i, q]
                i_up = g * ((vq + 0.001) - reversal)
                i_now = g * (vq - reversal)
                rhs[c, i, q] = 0.0 - i_now
                d[c, i, q] = 0.0 + (i_up - i_now) / 0.001
        else:
            for q0 in range(count):
                q = numba.uint64(q0)
                rhs[c, i, q] = 0.0
                d[c, i, q] = 0.0
        for e in range(fixed.entry_ptr[i], fixed.entry_ptr[i + 1]):
            for q0 in range(count):
                q = numba.uint64(q0)
                rhs[c, i, q] += term_rhs[c, e, q]
                d[c, i, q] += term_d[c, e, q]
        for q0 in range(count):
            q = numba.uint64(q0)
            d[c, i, q] += cfac * par.cm[c, i, q]
        p = fixed.parent[i]
        if p >= 0:
            a_i = fixed.a[i]
            b_i = fixed.b[i]
            for q0 in range(count):
                q = numba.uint64(q0)
                dv = v[c, p, q] - v[c, i, q]
                rhs[c, i, q] -= b_i * dv
                rhs[c, p, q] += a_i * dv
                d[c, i, q] -= b_i
                d[c, p, q] -= a_i


@numba.njit(cache=True, error_model="numpy")
def _hines(c, start, count, parent, a, b, d, rhs, v):
    """NEURON's ``triang`` and ``bksub`` on chunk ``c`` (its first ``count`` columns),
    then ``v += rhs`` (x goes into rhs).

    Needs ``parent[i] < i``. ``d`` is overwritten with the pivots. The update of v is
    folded into the back substitution: a node's x is final once computed there.
    """
    n = parent.size
    for i in range(n - 1, -1, -1):
        p = parent[i]
        if p < 0:
            continue
        a_i = a[i]
        b_i = b[i]
        for q0 in range(count):
            q = numba.uint64(q0)
            factor = a_i / d[c, i, q]
            d[c, p, q] -= factor * b_i
            rhs[c, p, q] -= factor * rhs[c, i, q]
    for i in range(n):
        p = parent[i]
        if p < 0:
            for q0 in range(count):
                q = numba.uint64(q0)
                x = rhs[c, i, q] / d[c, i, q]
                rhs[c, i, q] = x
                v[c, i, q] += x
        else:
            b_i = b[i]
            for q0 in range(count):
                q = numba.uint64(q0)
                x = (rhs[c, i, q] - b_i * rhs[c, p, q]) / d[c, i, q]
                rhs[c, i, q] = x
                v[c, i, q] += x


@numba.njit(cache=True, error_model="numpy")
def _finish(c, start, count, k, fixed, par, st, out):
    """The states at ``t_grid[k + 1]`` (``nonvint``) with the new v, record, spikes."""
    dt = fixed.dt
    for j in range(fixed.hh_node.size):
        i = fixed.hh_node[j]
        for q0 in range(count):
            q = numba.uint64(q0)
            if fixed.use_table:
                rates = mech.hh_rates_table(st.v[c, i, q], fixed.table)
            else:
                rates = mech.hh_rates(st.v[c, i, q], fixed.q10)
            st.hh_m[c, j, q] = mech.cnexp(st.hh_m[c, j, q], rates[0], rates[1], dt)
            st.hh_h[c, j, q] = mech.cnexp(st.hh_h[c, j, q], rates[2], rates[3], dt)
            st.hh_n[c, j, q] = mech.cnexp(st.hh_n[c, j, q], rates[4], rates[5], dt)
    for j in range(fixed.es_node.size):
        for q0 in range(count):
            q = numba.uint64(q0)
            st.es_g[c, j, q] = mech.decay(st.es_g[c, j, q], par.es_tau[c, j, q], dt)
    for j in range(fixed.e2_node.size):
        for q0 in range(count):
            q = numba.uint64(q0)
            st.e2_A[c, j, q] = mech.decay(st.e2_A[c, j, q], par.e2_tau1[c, j, q], dt)
            st.e2_B[c, j, q] = mech.decay(st.e2_B[c, j, q], par.e2_tau2[c, j, q], dt)
    for j in range(fixed.an_node.size):
        for q0 in range(count):
            q = numba.uint64(q0)
            st.an_A_ampa[c, j, q] = mech.decay(st.an_A_ampa[c, j, q], par.an_tau1_ampa[c, j, q], dt)
            st.an_B_ampa[c, j, q] = mech.decay(st.an_B_ampa[c, j, q], par.an_tau2_ampa[c, j, q], dt)
            st.an_A_nmda[c, j, q] = mech.decay(st.an_A_nmda[c, j, q], par.an_tau1_nmda[c, j, q], dt)
            st.an_B_nmda[c, j, q] = mech.decay(st.an_B_nmda[c, j, q], par.an_tau2_nmda[c, j, q], dt)
    _observe(c, start, count, k + 1, fixed, st, out)


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _run_chunks(first, last, starts, fixed, par, st, ev, out):
    """The whole run for chunks ``first, ..., last - 1``.

    Chunk c holds instances ``starts[c] .. starts[c + 1] - 1`` in its first columns.

    It releases the GIL, so Python threads run several of these calls in parallel (one
    per worker): the chunks are independent, and each stays in its worker from the
    first step to the last. Each worker takes one contiguous block of chunks, so two
    workers share (at most) the cache lines at the one boundary of their blocks, not
    the lines at every chunk boundary (false sharing).
    """
    n_steps = fixed.t_mid.size
    for c in range(first, last):
        start = starts[c]
        count = starts[c + 1] - start
        _initialize(c, start, count, fixed, par, st, out)
        for k in range(n_steps):
            _deliver(c, start, count, k, par, st, ev)
            _assemble(c, start, count, k, fixed, par, st)
            _hines(c, start, count, fixed.parent, fixed.a, fixed.b, st.d, st.rhs, st.v)
            _finish(c, start, count, k, fixed, par, st, out)


@numba.njit(cache=True, error_model="numpy")
def _initialize_all(starts, fixed, par, st, out):
    for c in range(starts.size - 1):
        _initialize(c, starts[c], starts[c + 1] - starts[c], fixed, par, st, out)


@numba.njit(cache=True, error_model="numpy")
def _before_solve_all(starts, k, fixed, par, st, ev):
    for c in range(starts.size - 1):
        start, count = starts[c], starts[c + 1] - starts[c]
        _deliver(c, start, count, k, par, st, ev)
        _assemble(c, start, count, k, fixed, par, st)


@numba.njit(cache=True, error_model="numpy")
def _after_solve_all(starts, k, fixed, par, st, out):
    for c in range(starts.size - 1):
        _finish(c, starts[c], starts[c + 1] - starts[c], k, fixed, par, st, out)


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
CACHE_LINE = 64  # bytes


def _aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised C-contiguous float64 array whose data start on a cache line."""
    size = math.prod(shape)
    buffer = np.empty(size + CACHE_LINE // 8)
    offset = (-buffer.ctypes.data % CACHE_LINE) // 8
    return buffer[offset : offset + size].reshape(shape)


#: The mechanisms with entries, in NEURON's order of adding currents (type numbers).
ENTRY_ORDER = (("IClamp", "ic_entry"), ("ExpSyn", "es_entry"), ("Exp2Syn", "e2_entry"),
               ("hh", "hh_entry"), ("AmpaNmda", "an_entry"))  # fmt: skip


def mechanism_entries(model: CellModel) -> dict[str, np.ndarray]:
    """Where each mechanism instance other than pas adds its terms, per node.

    Returns ``pas_row`` (the pas row of each node, -1 without pas), ``entry_ptr``
    (node i's entries are ``entry_ptr[i] .. entry_ptr[i + 1] - 1``) and, for each
    mechanism of :data:`ENTRY_ORDER`, the entry of each of its rows. A node's entries
    are in NEURON's order: by mechanism type, then in the table's order (which, for
    point processes of one type at one node, is the order NEURON sums them in).
    """
    tables = model.mechanisms
    pas_row = np.full(model.n, -1, dtype=np.int64)
    pas_row[tables["pas"].node] = np.arange(tables["pas"].count)
    nodes = [tables[name].node for name, _ in ENTRY_ORDER]
    node = np.concatenate(nodes).astype(np.int64)
    rank = np.concatenate([np.full(x.size, r, np.int64) for r, x in enumerate(nodes)])
    row = np.concatenate([np.arange(x.size, dtype=np.int64) for x in nodes])
    order = np.lexsort((row, rank, node))  # by node, then type, then row
    entry = np.empty(node.size, dtype=np.int64)
    entry[order] = np.arange(node.size)
    result = {
        "pas_row": pas_row,
        "entry_ptr": np.searchsorted(node[order], np.arange(model.n + 1)).astype(np.int64),
    }
    bounds = np.cumsum([0] + [x.size for x in nodes])
    for r, (_, field) in enumerate(ENTRY_ORDER):
        result[field] = entry[bounds[r] : bounds[r + 1]]
    return result


def chunk_plan(n_instances: int, width: int, workers: int) -> tuple[np.ndarray, list[int]]:
    """How the CPU engine splits the instances into chunks and the chunks into workers.

    The instances are split into ``workers`` contiguous groups of equal size (within 1),
    and each group into chunks of ``width`` instances and one narrower last chunk, so
    every worker gets the same work (7 chunks of 16 for N = 100 would give one worker
    4 and the other 3).

    Returns
    -------
    starts : ndarray of int64, shape (n_chunks + 1,)
        Chunk c holds instances ``starts[c] .. starts[c + 1] - 1``.
    bounds : list of int, length ``workers + 1``
        Worker w runs chunks ``bounds[w] .. bounds[w + 1] - 1``.
    """
    starts = [0]
    bounds = [0]
    for w in range(workers):
        end = (w + 1) * n_instances // workers
        while starts[-1] < end:
            starts.append(min(end, starts[-1] + width))
        bounds.append(len(starts) - 1)
    return np.array(starts, dtype=np.int64), bounds


def _chunk_major(x: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``(rows, N)`` -> ``(n_chunks, rows, width)`` (``(N,)`` -> ``(n_chunks, width)``).

    Chunk c holds instances ``starts[c] ..`` in its first columns; the columns past
    them repeat the chunk's last instance, so they hold finite numbers (never read).
    """
    x = np.asarray(x, dtype=np.float64)
    flat = x[None, :] if x.ndim == 1 else x
    rows = flat.shape[0]
    n_chunks = starts.size - 1
    out = _aligned_empty((n_chunks, rows, width))
    for c in range(n_chunks):
        start, stop = starts[c], starts[c + 1]
        out[c, :, : stop - start] = flat[:, start:stop]
        out[c, :, stop - start :] = flat[:, stop - 1 : stop]
    return out[:, 0, :] if x.ndim == 1 else out


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
        (:func:`dhs.backends.resolve_backend`): ``"cuda"`` when a real GPU is present,
        else ``"cpu"``. :attr:`backend` says which one runs.
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
                f"backend {backend!r} is not available for the engine; use 'cpu', 'cuda' or 'auto'"
            )
        backend = resolve_backend(backend)  # "auto": "cuda" with a real GPU, else "cpu"
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
        self.backend = backend
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

    def _event_arrays(self, t_mid: np.ndarray, starts: np.ndarray, tstop: float) -> _Events:
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
        n_chunks = starts.size - 1
        chunk_of = np.searchsorted(starts, col, side="right") - 1
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
            **mechanism_entries(model),
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
        # CPU: chunk-major, (n_chunks, rows, width), every chunk's block contiguous;
        # CUDA: node-major, which is the same thing with one chunk of all instances.
        if self.backend == "cuda":
            width, workers = N, 1
            starts, bounds = np.array([0, N], dtype=np.int64), [0, 1]
        else:
            width = self.chunk
            workers = min(self.workers or _default_workers(), N)
            starts, bounds = chunk_plan(N, width, workers)
        n_chunks = starts.size - 1
        params = _Params(*(_chunk_major(x, starts, width) for x in params))
        counts = {name: tables[name].count for name in ("hh", "ExpSyn", "Exp2Syn", "AmpaNmda")}
        rows = {
            "v": n, "rhs": n, "d": n, "hh_m": counts["hh"], "hh_h": counts["hh"],
            "hh_n": counts["hh"], "es_g": counts["ExpSyn"], "e2_A": counts["Exp2Syn"],
            "e2_B": counts["Exp2Syn"], "an_A_ampa": counts["AmpaNmda"],
            "an_B_ampa": counts["AmpaNmda"], "an_A_nmda": counts["AmpaNmda"],
            "an_B_nmda": counts["AmpaNmda"], "term_rhs": static.entry_ptr[-1],
            "term_d": static.entry_ptr[-1],
        }  # fmt: skip
        state = _State(
            **{name: _aligned_empty((n_chunks, m, width)) for name, m in rows.items()},
            spike_flag=np.zeros((n_chunks, width), np.uint8),
            spike_v=np.zeros((n_chunks, width)),
        )
        events = self._event_arrays(t_mid, starts, n_steps * float(dt))
        output = _Output(
            rec_node=rec_node, rec_every=record_every,
            rec=np.zeros((n_steps // record_every + 1, rec_node.size, N)),
            spike_node=spike, threshold=float(spike_threshold),
            interpolate=spike_method == "interpolate",
            spike_t=np.zeros((N, max(int(max_spikes), 0))),
            spike_n=np.zeros(N, np.int64),
        )  # fmt: skip

        if self.backend == "cuda":
            from .cuda import run_cuda

            run_cuda(self, n_steps, static, params, state, events, output)
        elif self.solver == "fused":
            arguments = (starts, static, params, state, events, output)
            if workers == 1:
                _run_chunks(0, n_chunks, *arguments)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    jobs = [pool.submit(_run_chunks, bounds[w], bounds[w + 1], *arguments)
                            for w in range(workers)]  # fmt: skip
                    for job in jobs:
                        job.result()
        else:
            self._run_with_dhs(n_steps, starts, static, params, state, events, output)

        spike_n, spike_t = output.spike_n, output.spike_t
        spikes = None
        if spike >= 0:
            if np.any(spike_n > spike_t.shape[1]):
                warnings.warn(
                    f"more than max_spikes={spike_t.shape[1]} spikes in some instances; "
                    "the later ones are not kept",
                    RuntimeWarning,
                    stacklevel=2,
                )
            spikes = [spike_t[q, : min(int(spike_n[q]), spike_t.shape[1])].copy() for q in range(N)]
        return RunResult(
            t=t_grid[::record_every].copy(),
            v=np.ascontiguousarray(output.rec.transpose(2, 1, 0)),
            record_nodes=rec_node,
            spikes=spikes,
            v_final=state.v.transpose(0, 2, 1).reshape(-1, n)[_slots(starts, width)],
            dt=float(dt),
            n_steps=n_steps,
        )

    def _run_with_dhs(self, n_steps, starts, static, params, state, events, output) -> None:
        solver = Solver(Tree(self.model.parent), backend="cpu")
        _initialize_all(starts, static, params, state, output)
        n_chunks, n, width = state.v.shape
        slots = _slots(starts, width)
        a, b = self.model.a, self.model.b
        x_all = np.zeros((n_chunks * width, n))  # padding columns stay 0
        for k in range(n_steps):
            _before_solve_all(starts, k, static, params, state, events)
            d_rows = state.d.transpose(0, 2, 1).reshape(-1, n)[slots]
            x_rows = state.rhs.transpose(0, 2, 1).reshape(-1, n)[slots]
            solver.solve(a, b, d_rows, x_rows, inplace=True)
            x_all[slots] = x_rows
            state.rhs[:] = x_all.reshape(n_chunks, width, n).transpose(0, 2, 1)
            state.v[:] += state.rhs  # as the fused kernel: v += x (padding included)
            _after_solve_all(starts, k, static, params, state, output)


def _slots(starts: np.ndarray, width: int) -> np.ndarray:
    """Instance q's row in a chunk-major array viewed as ``(n_chunks * width, ...)``."""
    counts = np.diff(starts)
    chunk = np.repeat(np.arange(counts.size), counts)
    return chunk * width + (np.arange(starts[-1]) - starts[chunk])
