"""The engine on an NVIDIA GPU: the whole time loop of :mod:`dhs.engine.integrate` on the
device, with no host round-trip per step.

Scheme
------
One thread per instance. The state keeps the engine's node-major layout
``(n_nodes, n_instances)``: thread ``q`` walks the nodes of its own instance, and at
every node the threads of a warp touch consecutive instances, so every load and store
is coalesced (CoreNEURON's ``cell_permute = 1`` interleaving). Each thread does, per
step, exactly what the CPU kernel :func:`dhs.engine.integrate._run_chunks` does for one
column: event delivery from its own event list, the assembly (pas, IClamp, ExpSyn,
Exp2Syn, hh with finite-difference conductances, capacitance, axial terms), NEURON's
serial ``triang``/``bksub``, ``v += rhs``, the state update (cnexp), recording every
``record_every`` steps into a device array, and NEURON's threshold detection. The
threads never meet, so there is no barrier and the run is a single kernel launch.

``finitialize`` (v, the hh steady states, the record at t = 0 and the threshold test
at t = 0) runs on the host with the CPU engine's own code, so the starting state is
the CPU engine's bit for bit.

Arithmetic
----------
The kernel is written out in one piece (no device functions: Numba-CUDA cannot compile
those to PTX without a GPU context, which would rule out the compile checks) and
repeats the CPU kernel's operations in the same order, in float64, with
``fastmath=False`` (IEEE ``div.rn.f64``). Two things could still make the last bit
differ from the CPU:

* **FMA contraction.** NVVM contracts ``a * b + c`` into ``fma.rn.f64`` by default
  (its ``-fma=1``; Numba-CUDA passes no option to change it, and ``fastmath=False`` does
  not turn it off). :func:`run_cuda` therefore launches, and so compiles, the kernel
  under :func:`no_fma`, which adds ``fma=0`` to the NVVM options. The PTX checks in
  ``tests/test_engine_cuda.py`` confirm it: the only ``fma`` left are libdevice's own,
  inside ``exp`` (15 per inlined exp for sm_90 with CUDA 13's libdevice).
* **exp.** ``math.exp`` is libdevice's ``__nv_exp`` on the GPU and the C library's on
  the CPU; both are accurate to about one ulp but not guaranteed to round alike. hh
  (rates computed exactly, or cnexp's ``exp(-dt / tau)``) and the synaptic decays go
  through it, so a real GPU may differ from the CPU in the last bits; the GPU test
  allows 1e-9 mV. Under the simulator the arithmetic is Python's, which equals the
  CPU engine's bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings

import numba
import numpy as np
from numba import cuda

from ..backends import cuda_simulator_enabled, gpu_available
from . import integrate
from .model import MECHANISMS

__all__ = [
    "SUPPORTED_MECHANISMS",
    "check_available",
    "check_model",
    "compile_ptx",
    "kernel",
    "kernel_signature",
    "no_fma",
    "run_cuda",
]

SUPPORTED_MECHANISMS = ("pas", "hh", "IClamp", "ExpSyn", "Exp2Syn", "AmpaNmda")
THREADS_PER_BLOCK = 128
_COMPILE_LOCK = threading.Lock()


@contextlib.contextmanager
def no_fma():
    """Compile with NVVM's ``-fma=0`` (no contraction of ``a * b + c``) inside the block.

    Numba-CUDA builds its NVVM options from ``fastmath`` and ``opt`` only; this wraps
    ``numba.cuda.cudadrv.nvvm.compile_ir`` for the duration so that kernels compiled in
    the block (``cuda.jit(signature)``, ``cuda.compile_ptx``) get ``fma=False`` too.
    """
    from numba.cuda.cudadrv import nvvm

    original = getattr(nvvm, "compile_ir", None)
    if original is None:  # numba-cuda internals moved: compile as it would by default
        warnings.warn(
            "numba-cuda has no nvvm.compile_ir to turn FMA contraction off; the GPU engine "
            "may then differ from the CPU engine in the last bits",
            RuntimeWarning,
            stacklevel=3,
        )
        yield
        return

    def compile_ir(llvmir, **options):
        options["fma"] = False
        return original(llvmir, **options)

    with _COMPILE_LOCK:
        nvvm.compile_ir = compile_ir
        try:
            yield
        finally:
            nvvm.compile_ir = original


def _engine_step_kernel(
    parent, a, b, cfac, dt, t_grid, t_mid,
    pas_node, hh_node, ic_node, ic_mfact, es_node, es_mfact, e2_node, e2_mfact,
    q10, use_table, table, an_node, an_mfact,
    cm, pas_g, pas_e, hh_gnabar, hh_gkbar, hh_gl, hh_el, hh_ena, hh_ek,
    ic_del, ic_dur, ic_amp, es_tau, es_e, e2_tau1, e2_tau2, e2_e, e2_factor,
    an_tau1_ampa, an_tau2_ampa, an_tau1_nmda, an_tau2_nmda, an_e, an_ratio, an_mg,
    an_factor_ampa, an_factor_nmda,
    v, rhs, d, hh_m, hh_h, hh_n, es_g, e2_A, e2_B, an_A_ampa, an_B_ampa, an_A_nmda,
    an_B_nmda, spike_flag, spike_v,
    ev_ptr, ev_step, ev_kind, ev_syn, ev_weight,
    rec_node, rec_every, rec, spike_node, threshold, interpolate, spike_t, spike_n,
    n_steps,
):  # fmt: skip
    """Steps ``0 .. n_steps - 1`` for instance ``q = grid(1)`` (after ``finitialize``)."""
    q = cuda.grid(1)
    if q >= v.shape[1]:
        return
    n = parent.size
    cursor = ev_ptr[q]
    end = ev_ptr[q + 1]
    for k in range(n_steps):
        # ---- deliver (integrate._deliver)
        while cursor < end and ev_step[cursor] <= k:
            s = ev_syn[cursor]
            w = ev_weight[cursor]
            if ev_kind[cursor] == 0:
                es_g[s, q] = es_g[s, q] + w
            elif ev_kind[cursor] == 1:  # Exp2Syn
                e2_A[s, q] = e2_A[s, q] + w * e2_factor[s, q]
                e2_B[s, q] = e2_B[s, q] + w * e2_factor[s, q]
            else:  # AmpaNmda
                ampa = w * an_factor_ampa[s, q]
                nmda = w * an_ratio[s, q] * an_factor_nmda[s, q]
                an_A_ampa[s, q] = an_A_ampa[s, q] + ampa
                an_B_ampa[s, q] = an_B_ampa[s, q] + ampa
                an_A_nmda[s, q] = an_A_nmda[s, q] + nmda
                an_B_nmda[s, q] = an_B_nmda[s, q] + nmda
            cursor += 1
        # ---- assemble (integrate._assemble)
        for i in range(n):
            rhs[i, q] = 0.0
            d[i, q] = 0.0
        for j in range(pas_node.size):
            i = pas_node[j]
            g = pas_g[j, q]
            e = pas_e[j, q]
            vq = v[i, q]
            i_up = g * ((vq + 0.001) - e)
            i_now = g * (vq - e)
            rhs[i, q] -= i_now
            d[i, q] += (i_up - i_now) / 0.001
        tm = t_mid[k]
        for j in range(ic_node.size):
            i = ic_node[j]
            mfact = ic_mfact[j]
            start = ic_del[j, q]
            if tm < start + ic_dur[j, q] and tm >= start:
                current = ic_amp[j, q]
            else:
                current = 0.0
            rhs[i, q] += current * mfact
        for j in range(es_node.size):
            i = es_node[j]
            mfact = es_mfact[j]
            g = es_g[j, q]
            e = es_e[j, q]
            vq = v[i, q]
            i_up = g * ((vq + 0.001) - e)
            i_now = g * (vq - e)
            rhs[i, q] -= i_now * mfact
            d[i, q] += ((i_up - i_now) / 0.001) * mfact
        for j in range(e2_node.size):
            i = e2_node[j]
            mfact = e2_mfact[j]
            g = e2_B[j, q] - e2_A[j, q]
            e = e2_e[j, q]
            vq = v[i, q]
            i_up = g * ((vq + 0.001) - e)
            i_now = g * (vq - e)
            rhs[i, q] -= i_now * mfact
            d[i, q] += ((i_up - i_now) / 0.001) * mfact
        for j in range(hh_node.size):
            i = hh_node[j]
            vq = v[i, q]
            m = hh_m[j, q]
            h = hh_h[j, q]
            nn = hh_n[j, q]
            gnabar = hh_gnabar[j, q]
            gkbar = hh_gkbar[j, q]
            gl = hh_gl[j, q]
            el = hh_el[j, q]
            ena = hh_ena[j, q]
            ek = hh_ek[j, q]
            # mechanisms.hh_current at vq + 0.001, then at vq
            vu = vq + 0.001
            gna = gnabar * m * m * m * h
            ina = gna * (vu - ena)
            gk = gkbar * nn * nn * nn * nn
            ik = gk * (vu - ek)
            il = gl * (vu - el)
            i_up = 0.0
            i_up += ina
            i_up += ik
            i_up += il
            gna = gnabar * m * m * m * h
            ina = gna * (vq - ena)
            gk = gkbar * nn * nn * nn * nn
            ik = gk * (vq - ek)
            il = gl * (vq - el)
            i_now = 0.0
            i_now += ina
            i_now += ik
            i_now += il
            rhs[i, q] -= i_now
            d[i, q] += (i_up - i_now) / 0.001
        for j in range(an_node.size):  # mechanisms.ampanmda_current at vq + 0.001, vq
            i = an_node[j]
            mfact = an_mfact[j]
            g_ampa = an_B_ampa[j, q] - an_A_ampa[j, q]
            g_nmda = an_B_nmda[j, q] - an_A_nmda[j, q]
            e = an_e[j, q]
            mg = an_mg[j, q]
            vq = v[i, q]
            vu = vq + 0.001
            z = 0.062 * -vu
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            block = 1.0 / (1.0 + ez * (mg / 3.57))
            i_up = 0.0
            i_up += g_ampa * (vu - e) + g_nmda * block * (vu - e)
            z = 0.062 * -vq
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            block = 1.0 / (1.0 + ez * (mg / 3.57))
            i_now = 0.0
            i_now += g_ampa * (vq - e) + g_nmda * block * (vq - e)
            rhs[i, q] -= i_now * mfact
            d[i, q] += ((i_up - i_now) / 0.001) * mfact
        for i in range(n):
            d[i, q] += cfac * cm[i, q]
            p = parent[i]
            if p >= 0:
                a_i = a[i]
                b_i = b[i]
                dv = v[p, q] - v[i, q]
                rhs[i, q] -= b_i * dv
                rhs[p, q] += a_i * dv
                d[i, q] -= b_i
                d[p, q] -= a_i
        # ---- Hines (integrate._hines): triang, then bksub
        for i in range(n - 1, -1, -1):
            p = parent[i]
            if p >= 0:
                factor = a[i] / d[i, q]
                d[p, q] -= factor * b[i]
                rhs[p, q] -= factor * rhs[i, q]
        for i in range(n):
            p = parent[i]
            if p < 0:
                rhs[i, q] = rhs[i, q] / d[i, q]
            else:
                rhs[i, q] = (rhs[i, q] - b[i] * rhs[p, q]) / d[i, q]
        # ---- finish (integrate._finish)
        for i in range(n):
            v[i, q] += rhs[i, q]
        for j in range(hh_node.size):
            x = v[hh_node[j], q]
            if use_table:  # mechanisms.hh_rates_table
                xi = 1.0 * (x - (-100.0))
                if math.isnan(xi):
                    minf = mtau = hinf = htau = ninf = ntau = xi
                elif xi <= 0.0:
                    minf = table[0, 0]
                    mtau = table[1, 0]
                    hinf = table[2, 0]
                    htau = table[3, 0]
                    ninf = table[4, 0]
                    ntau = table[5, 0]
                elif xi >= 200.0:
                    minf = table[0, 200]
                    mtau = table[1, 200]
                    hinf = table[2, 200]
                    htau = table[3, 200]
                    ninf = table[4, 200]
                    ntau = table[5, 200]
                else:
                    it = int(xi)
                    theta = xi - float(it)
                    minf = table[0, it] + theta * (table[0, it + 1] - table[0, it])
                    mtau = table[1, it] + theta * (table[1, it + 1] - table[1, it])
                    hinf = table[2, it] + theta * (table[2, it + 1] - table[2, it])
                    htau = table[3, it] + theta * (table[3, it + 1] - table[3, it])
                    ninf = table[4, it] + theta * (table[4, it + 1] - table[4, it])
                    ntau = table[5, it] + theta * (table[5, it + 1] - table[5, it])
            else:  # mechanisms.hh_rates, with vtrap and hoc_exp written out
                y = -(x + 40.0)
                if math.fabs(y / 10.0) < 1e-6:
                    trap = 10.0 * (1.0 - y / 10.0 / 2.0)
                else:
                    z = y / 10.0
                    if z < -700.0:
                        ez = 0.0
                    elif z > 700.0:
                        ez = math.exp(700.0)
                    else:
                        ez = math.exp(z)
                    trap = y / (ez - 1.0)
                alpha = 0.1 * trap
                z = -(x + 65.0) / 18.0
                if z < -700.0:
                    ez = 0.0
                elif z > 700.0:
                    ez = math.exp(700.0)
                else:
                    ez = math.exp(z)
                beta = 4.0 * ez
                total = alpha + beta
                mtau = 1.0 / (q10 * total)
                minf = alpha / total
                z = -(x + 65.0) / 20.0
                if z < -700.0:
                    ez = 0.0
                elif z > 700.0:
                    ez = math.exp(700.0)
                else:
                    ez = math.exp(z)
                alpha = 0.07 * ez
                z = -(x + 35.0) / 10.0
                if z < -700.0:
                    ez = 0.0
                elif z > 700.0:
                    ez = math.exp(700.0)
                else:
                    ez = math.exp(z)
                beta = 1.0 / (ez + 1.0)
                total = alpha + beta
                htau = 1.0 / (q10 * total)
                hinf = alpha / total
                y = -(x + 55.0)
                if math.fabs(y / 10.0) < 1e-6:
                    trap = 10.0 * (1.0 - y / 10.0 / 2.0)
                else:
                    z = y / 10.0
                    if z < -700.0:
                        ez = 0.0
                    elif z > 700.0:
                        ez = math.exp(700.0)
                    else:
                        ez = math.exp(z)
                    trap = y / (ez - 1.0)
                alpha = 0.01 * trap
                z = -(x + 65.0) / 80.0
                if z < -700.0:
                    ez = 0.0
                elif z > 700.0:
                    ez = math.exp(700.0)
                else:
                    ez = math.exp(z)
                beta = 0.125 * ez
                total = alpha + beta
                ntau = 1.0 / (q10 * total)
                ninf = alpha / total
            # mechanisms.cnexp for m, h, n
            z = dt * ((-1.0) / mtau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            hh_m[j, q] = hh_m[j, q] + (1.0 - ez) * (-(minf / mtau) / ((-1.0) / mtau) - hh_m[j, q])
            z = dt * ((-1.0) / htau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            hh_h[j, q] = hh_h[j, q] + (1.0 - ez) * (-(hinf / htau) / ((-1.0) / htau) - hh_h[j, q])
            z = dt * ((-1.0) / ntau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            hh_n[j, q] = hh_n[j, q] + (1.0 - ez) * (-(ninf / ntau) / ((-1.0) / ntau) - hh_n[j, q])
        # mechanisms.decay for the synapses
        for j in range(es_node.size):
            tau = es_tau[j, q]
            z = dt * ((-1.0) / tau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            es_g[j, q] = es_g[j, q] + (1.0 - ez) * (-(0.0) / ((-1.0) / tau) - es_g[j, q])
        for j in range(e2_node.size):
            tau = e2_tau1[j, q]
            z = dt * ((-1.0) / tau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            e2_A[j, q] = e2_A[j, q] + (1.0 - ez) * (-(0.0) / ((-1.0) / tau) - e2_A[j, q])
            tau = e2_tau2[j, q]
            z = dt * ((-1.0) / tau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            e2_B[j, q] = e2_B[j, q] + (1.0 - ez) * (-(0.0) / ((-1.0) / tau) - e2_B[j, q])
        for j in range(an_node.size):
            tau = an_tau1_ampa[j, q]
            z = dt * ((-1.0) / tau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            an_A_ampa[j, q] = an_A_ampa[j, q] + (1.0 - ez) * (
                -(0.0) / ((-1.0) / tau) - an_A_ampa[j, q]
            )
            tau = an_tau2_ampa[j, q]
            z = dt * ((-1.0) / tau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            an_B_ampa[j, q] = an_B_ampa[j, q] + (1.0 - ez) * (
                -(0.0) / ((-1.0) / tau) - an_B_ampa[j, q]
            )
            tau = an_tau1_nmda[j, q]
            z = dt * ((-1.0) / tau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            an_A_nmda[j, q] = an_A_nmda[j, q] + (1.0 - ez) * (
                -(0.0) / ((-1.0) / tau) - an_A_nmda[j, q]
            )
            tau = an_tau2_nmda[j, q]
            z = dt * ((-1.0) / tau)
            if z < -700.0:
                ez = 0.0
            elif z > 700.0:
                ez = math.exp(700.0)
            else:
                ez = math.exp(z)
            an_B_nmda[j, q] = an_B_nmda[j, q] + (1.0 - ez) * (
                -(0.0) / ((-1.0) / tau) - an_B_nmda[j, q]
            )
        # ---- observe at step k + 1 (integrate._observe)
        kk = k + 1
        if kk % rec_every == 0:
            row = kk // rec_every
            for r in range(rec_node.size):
                rec[row, r, q] = v[rec_node[r], q]
        if spike_node >= 0 and kk < n_steps:  # NEURON checks at a step's start
            t_now = t_grid[kk]
            value = v[spike_node, q]
            if value - threshold > 0.0:
                if spike_flag[q] == 0:
                    spike_flag[q] = 1
                    if interpolate:
                        t_prev = t_grid[kk - 1]
                        v_prev = spike_v[q]
                        t_spike = t_prev + (t_now - t_prev) * (threshold - v_prev) / (
                            value - v_prev
                        )
                    else:
                        t_spike = t_now + 1e-10  # integrate.SPIKE_TEPS
                    count = spike_n[q]
                    if count < spike_t.shape[1]:
                        spike_t[q, count] = t_spike
                    spike_n[q] = count + 1
            else:
                spike_flag[q] = 0
            spike_v[q] = value


def kernel_signature():
    """Argument types of the engine kernel, for ``cuda.jit`` and ``cuda.compile_ptx``."""
    t = numba.types
    idx = t.int64[::1]
    vec = t.float64[::1]
    mat = t.float64[:, ::1]
    f = t.float64
    i = t.int64
    fixed = (idx, vec, vec, f, f, vec, vec, idx, idx, idx, vec, idx, vec, idx, vec, f,
             t.boolean, mat, idx, vec)  # fmt: skip
    params = (mat,) * 27  # cm ... an_factor_nmda
    state = (mat,) * 13 + (t.uint8[::1], vec)
    events = (idx, idx, t.int8[::1], idx, vec)
    output = (idx, i, t.float64[:, :, ::1], i, f, t.boolean, mat, idx)
    return (*fixed, *params, *state, *events, *output, i)


@functools.cache
def kernel():
    """The engine kernel (float64, ``fastmath=False``).

    It compiles at its first launch for the arguments' types; :func:`run_cuda` launches
    it under :func:`no_fma`, so the compilation has FMA contraction off. Under the
    simulator this is the simulated kernel.
    """
    return cuda.jit(fastmath=False)(_engine_step_kernel)


def _launch_config(n_instances: int) -> tuple[int, int]:
    """(blocks, threads): up to 128 threads a block, fewer when that leaves SMs idle."""
    if cuda_simulator_enabled():
        threads = 32
    else:
        threads = THREADS_PER_BLOCK
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
        while threads > 32 and (n_instances + threads - 1) // threads < sms:
            threads //= 2
    return (n_instances + threads - 1) // threads, threads


def check_available() -> None:
    """Raise ValueError unless a real GPU or the CUDA simulator is there."""
    if not (gpu_available() or cuda_simulator_enabled()):
        raise ValueError(
            "backend='cuda' needs an NVIDIA GPU with a working CUDA driver, and none was "
            "found (numba.cuda.is_available() is False); use backend='cpu'"
        )


def check_model(model) -> None:
    """Raise ValueError when the model uses a mechanism the GPU kernel does not have."""
    missing = [
        name
        for name in MECHANISMS
        if name not in SUPPORTED_MECHANISMS and model.mechanisms[name].count > 0
    ]
    if missing:
        raise ValueError(
            f"backend='cuda' does not support {missing} yet (supported: "
            f"{list(SUPPORTED_MECHANISMS)}); use backend='cpu'"
        )


def _per_instance_events(ev, n_instances: int):
    """The engine's chunk-ordered events regrouped per instance.

    Within a chunk they are sorted by (step, time); a stable sort by instance keeps that
    order, which is the delivery order of the CPU engine for every instance.
    """
    order = np.argsort(ev.col, kind="stable")
    col = ev.col[order]
    ptr = np.searchsorted(col, np.arange(n_instances + 1), side="left").astype(np.int64)
    return (
        ptr,
        np.ascontiguousarray(ev.step[order], dtype=np.int64),
        np.ascontiguousarray(ev.kind[order], dtype=np.int8),
        np.ascontiguousarray(ev.syn[order], dtype=np.int64),
        np.ascontiguousarray(ev.weight[order], dtype=np.float64),
    )


def run_cuda(engine, n_steps, static, params, state, events, output) -> None:
    """Run ``n_steps`` steps of :meth:`Engine.run` on the GPU (or the simulator).

    Takes the arrays :meth:`dhs.engine.Engine.run` builds (``_Static``, ``_Params``,
    ``_State``, ``_Events``, ``_Output``); fills ``state`` and ``output`` in place, as
    the CPU kernel does.
    """
    check_available()
    check_model(engine.model)
    # State and parameters come as one chunk of all instances, (1, rows, n_instances):
    # node-major, which is what one thread per instance reads coalesced.
    n_instances = state.v.shape[2]
    # finitialize on the host, with the CPU engine's code (record and threshold at t=0).
    integrate._initialize_all(np.array([0, n_instances]), static, params, state, output)
    if n_steps == 0:
        return

    def c(x, dtype=np.float64):
        return np.ascontiguousarray(x, dtype=dtype)

    def node_major(x, dtype=np.float64):
        return np.ascontiguousarray(x[0], dtype=dtype)

    fixed = (
        c(static.parent, np.int64), c(static.a), c(static.b), float(static.cfac),
        float(static.dt), c(static.t_grid), c(static.t_mid), c(static.pas_node, np.int64),
        c(static.hh_node, np.int64), c(static.ic_node, np.int64), c(static.ic_mfact),
        c(static.es_node, np.int64), c(static.es_mfact), c(static.e2_node, np.int64),
        c(static.e2_mfact), float(static.q10), bool(static.use_table), c(static.table),
        c(static.an_node, np.int64), c(static.an_mfact),
    )  # fmt: skip
    par = tuple(
        node_major(getattr(params, name))
        for name in ("cm", "pas_g", "pas_e", "hh_gnabar", "hh_gkbar", "hh_gl", "hh_el",
                     "hh_ena", "hh_ek", "ic_del", "ic_dur", "ic_amp", "es_tau", "es_e",
                     "e2_tau1", "e2_tau2", "e2_e", "e2_factor", "an_tau1_ampa", "an_tau2_ampa",
                     "an_tau1_nmda", "an_tau2_nmda", "an_e", "an_ratio", "an_mg",
                     "an_factor_ampa", "an_factor_nmda")
    )  # fmt: skip
    state_names = ("v", "rhs", "d", "hh_m", "hh_h", "hh_n", "es_g", "e2_A", "e2_B",
                   "an_A_ampa", "an_B_ampa", "an_A_nmda", "an_B_nmda")  # fmt: skip
    stream = cuda.stream()
    d_par = tuple(cuda.to_device(x, stream=stream) for x in par)
    d_fixed = tuple(
        cuda.to_device(x, stream=stream) if isinstance(x, np.ndarray) else x for x in fixed
    )
    d_state = [
        cuda.to_device(node_major(getattr(state, name)), stream=stream) for name in state_names
    ]
    d_flag = cuda.to_device(node_major(state.spike_flag, np.uint8), stream=stream)
    d_spike_v = cuda.to_device(node_major(state.spike_v), stream=stream)
    d_events = tuple(
        cuda.to_device(x, stream=stream) for x in _per_instance_events(events, n_instances)
    )
    d_rec = cuda.to_device(c(output.rec), stream=stream)
    d_spike_t = cuda.to_device(c(output.spike_t), stream=stream)
    d_spike_n = cuda.to_device(c(output.spike_n, np.int64), stream=stream)
    out_args = (
        cuda.to_device(c(output.rec_node, np.int64), stream=stream), int(output.rec_every),
        d_rec, int(output.spike_node), float(output.threshold), bool(output.interpolate),
        d_spike_t, d_spike_n,
    )  # fmt: skip
    blocks, threads = _launch_config(n_instances)
    with contextlib.nullcontext() if cuda_simulator_enabled() else no_fma():
        kernel()[blocks, threads, stream](
            *d_fixed, *d_par, *d_state, d_flag, d_spike_v, *d_events, *out_args, int(n_steps)
        )
    for name, device in zip(state_names, d_state, strict=True):
        getattr(state, name)[0] = device.copy_to_host(stream=stream)
    state.spike_flag[0] = d_flag.copy_to_host(stream=stream)
    state.spike_v[0] = d_spike_v.copy_to_host(stream=stream)
    output.rec[...] = d_rec.copy_to_host(stream=stream)
    output.spike_t[...] = d_spike_t.copy_to_host(stream=stream)
    output.spike_n[...] = d_spike_n.copy_to_host(stream=stream)
    stream.synchronize()


def compile_ptx(cc=(9, 0), fma: bool = False) -> str:
    """PTX of the engine kernel for compute capability ``cc`` (no GPU needed).

    ``fma=False`` (default) compiles as :func:`kernel` does, under :func:`no_fma`;
    ``fma=True`` shows NVVM's default contraction.
    """
    context = contextlib.nullcontext() if fma else no_fma()
    with context:
        ptx, _ = cuda.compile_ptx(_engine_step_kernel, kernel_signature(), cc=cc)
    return ptx
