"""The engine's time loop, generated for one model's set of mechanisms.

:func:`generate` writes the Python source of one module from a :class:`Layout` (the
model's mechanisms in NEURON's type order, its ions, which fields are stored): the
phases of NEURON's fixed step (``finitialize``, event delivery, assembly, solve, state
update, recording) as loops over each mechanism's instances that call the
mechanism's generated scalar functions (:mod:`dhs.engine.nmodl`). One printer makes
both builds: for the CPU every loop body runs over the instances of a chunk
(``for q0 in range(count)``); for CUDA the same body runs once in the thread of
instance ``q``. The design note is ``dhs/engine/DESIGN.md``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .mechanism import Mechanism
from .nmodl.build import load_module
from .nmodl.translate import GENERATOR_VERSION

__all__ = [
    "DRIVER_ARGUMENTS",
    "ION_FIELDS",
    "KERNEL_VERSION",
    "Layout",
    "argument_names",
    "generate",
    "load",
]

#: Bump when the generated kernel changes.
KERNEL_VERSION = 4
#: Per-node fields of an ion, in storage order.
ION_FIELDS = ("e", "ci", "co", "i", "didv")
#: Ion style bits (NEURON's ``eion.cpp``).
STYLE_CONCENTRATION_INIT = 0o4
STYLE_REVERSAL_INIT = 0o40
STYLE_REVERSAL_ADVANCE = 0o100
#: The driver's own arguments, before the phases' (:func:`argument_names`).
DRIVER_ARGUMENTS = (
    "starts", "n_steps", "t_grid", "t_mid", "cfac",
    "ev_ptr", "ev_step", "ev_column", "ev_kind", "ev_row", "ev_time", "ev_weight",
    "rec_kind", "rec_field", "rec_row", "rec_every", "rec",
    "spike_node", "threshold", "interpolate", "spike_t", "spike_n", "spike_flag", "spike_v",
)  # fmt: skip
#: ms: NEURON's ``check_thresh`` sends a spike at t + 1e-10.
SPIKE_DELAY = 1e-10


@dataclass(frozen=True)
class Layout:
    """What the generated code depends on (not the numbers).

    Attributes
    ----------
    mechanisms : tuple of Mechanism
        In NEURON's type order (the order currents are summed and states advanced).
    ions : tuple of str
        Ion species present.
    stored : tuple of tuple of str
        Per mechanism, the fields kept in its array (parameters, states, the assigned
        variables the phases need, and optional ones asked for by a recording).
    """

    mechanisms: tuple[Mechanism, ...]
    ions: tuple[str, ...]
    stored: tuple[tuple[str, ...], ...]

    @property
    def digest(self) -> str:
        text = repr((KERNEL_VERSION, GENERATOR_VERSION, [m.digest for m in self.mechanisms],
                     self.ions, self.stored))  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()

    def field_index(self, k: int, name: str) -> int:
        return self.stored[k].index(name)


def _tuple_unpack(names: list[str], value: str) -> str:
    if not names:
        return f"_ = {value}"
    if len(names) == 1:
        return f"{names[0]} = {value}"
    return f"{', '.join(names)} = {value}"


class _Printer:
    """Emits the kernel's phase functions; ``cuda`` switches the per-instance loop."""

    def __init__(self, layout: Layout, cuda: bool) -> None:
        self.layout = layout
        self.cuda = cuda
        self.lines: list[str] = []
        self.indent = 0

    def emit(self, line: str = "") -> None:
        self.lines.append("    " * self.indent + line if line else "")

    def open(self, line: str) -> None:
        self.emit(line)
        self.indent += 1

    def close(self, levels: int = 1) -> None:
        self.indent -= levels

    def instances(self) -> int:
        """Open the loop over a chunk's instances (CPU) or nothing (CUDA); returns the
        number of levels to close."""
        if self.cuda:
            return 0
        self.open("for q0 in range(count):")
        self.emit("q = uint64(q0)")
        return 1

    # -------------------------------------------------------------- arguments
    def arguments(self) -> list[str]:
        """Every array and scalar the phases read, in the order the engine passes them."""
        names = ["parent", "a", "b", "diam", "area", "cm", "v_init", "v", "rhs", "d",
                 "scalars"]  # fmt: skip
        for s, _ion in enumerate(self.layout.ions):
            names += [f"ion{s}", f"ion{s}_node", f"ion{s}_style", f"ion{s}_constants"]
        for k, mechanism in enumerate(self.layout.mechanisms):
            names += [f"m{k}", f"m{k}_node", f"m{k}_globals"]
            if mechanism.is_point_process:
                names.append(f"m{k}_mfact")
            for use in mechanism.ions:
                names.append(f"m{k}_ion_{use.ion}")
            for table in mechanism.translation.tables:
                names += [f"m{k}_table_{table.function}", f"m{k}_limits_{table.function}"]
        return names

    # -------------------------------------------------------------- phase calls
    def call(
        self, k: int, phase: str, time: str, extra_arguments: tuple[str, ...] = ()
    ) -> list[str]:
        """Emit the call of mechanism k's ``phase`` for instance j, node i; returns the
        output names (already unpacked)."""
        layout = self.layout
        mechanism = layout.mechanisms[k]
        spec = mechanism.phases[phase]
        translation = mechanism.translation
        arguments = ["v[c, i, q]", time, "dt", "celsius"]
        arguments += [f"m{k}_globals[{g}]" for g in range(len(translation.globals))]
        for table in translation.tables:
            arguments += [f"m{k}_table_{table.function}", f"m{k}_limits_{table.function}[0]",
                          f"m{k}_limits_{table.function}[1]"]  # fmt: skip
        arguments += [f"{name}[i]" for name in translation.geometry]
        for ion, field_name in spec.ion_inputs:
            s = layout.ions.index(ion)
            arguments.append(f"ion{s}[c, {ION_FIELDS.index(field_name)}, r_{ion}, q]")
        stored = layout.stored[k]
        for name in spec.instance_inputs:
            arguments.append(f"m{k}[c, {stored.index(name)}, j, q]" if name in stored else "0.0")
        arguments += list(extra_arguments)
        outputs = [f"o{n}" for n in range(len(spec.extras) + len(spec.ion_outputs)
                                           + len(spec.instance_outputs))]  # fmt: skip
        self.emit(_tuple_unpack(outputs, f"m{k}_{phase}({', '.join(arguments)})"))
        return outputs

    def store_outputs(self, k: int, phase: str, outputs: list[str], skip: int) -> None:
        """Store the ion and instance outputs after the first ``skip`` (extras)."""
        layout = self.layout
        mechanism = layout.mechanisms[k]
        spec = mechanism.phases[phase]
        rest = outputs[skip:]
        ion_outputs = spec.ion_outputs
        if phase == "current":
            currents = [pair for pair in ion_outputs if pair[1] in ("i", "didv")]
            ion_outputs = ion_outputs[len(currents) :]
            rest = rest[len(currents) :]
        for (ion, field_name), value in zip(ion_outputs, rest, strict=False):
            s = layout.ions.index(ion)
            self.emit(f"ion{s}[c, {ION_FIELDS.index(field_name)}, r_{ion}, q] = {value}")
        rest = rest[len(ion_outputs) :]
        stored = layout.stored[k]
        for name, value in zip(spec.instance_outputs, rest, strict=True):
            if name in stored:
                self.emit(f"m{k}[c, {stored.index(name)}, j, q] = {value}")

    def mechanism_loop(self, k: int) -> int:
        """Open the loop over mechanism k's instances; returns levels to close."""
        mechanism = self.layout.mechanisms[k]
        self.open(f"for j in range(m{k}_node.size):")
        self.emit(f"i = m{k}_node[j]")
        for use in mechanism.ions:
            self.emit(f"r_{use.ion} = m{k}_ion_{use.ion}[j]")
        return 1 + self.instances()

    def wrote_concentration(self, k: int) -> None:
        """``nrn_wrote_conc``: after INITIAL wrote a concentration, e by Nernst if the
        ion's style says so."""
        for ion in self.layout.mechanisms[k].writes_concentration:
            s = self.layout.ions.index(ion)
            self.open(f"if ion{s}_style[r_{ion}] & {STYLE_REVERSAL_INIT}:")
            self.emit(f"ion{s}[c, 0, r_{ion}, q] = nrn_nernst(ion{s}[c, 1, r_{ion}, q], "
                      f"ion{s}[c, 2, r_{ion}, q], ion{s}_constants[2], celsius)")  # fmt: skip
            self.close()

    # -------------------------------------------------------------- phases
    def header(self, name: str, extra: str) -> None:
        self.emit()
        self.emit("@kernel_jit")
        self.open(f"def {name}({extra}{', '.join(self.arguments())}):")
        self.emit("dt = scalars[0]")
        self.emit("celsius = scalars[1]")

    def initialize(self) -> None:
        """``finitialize``: v, the ions' initial concentrations and reversal potentials,
        then every mechanism's INITIAL in type order."""
        self.header("initialize", "c, count, q, ")
        self.open("for i in range(parent.size):")
        levels = self.instances()
        self.emit("v[c, i, q] = v_init[c, q]")
        self.close(levels + 1)
        for s, _ion in enumerate(self.layout.ions):
            self.open(f"for r in range(ion{s}_node.size):")
            self.emit(f"style = ion{s}_style[r]")
            levels = self.instances()
            self.open(f"if style & {STYLE_CONCENTRATION_INIT}:")
            self.emit(f"ion{s}[c, 1, r, q] = ion{s}_constants[0]")
            self.emit(f"ion{s}[c, 2, r, q] = ion{s}_constants[1]")
            self.close()
            self.open(f"if style & {STYLE_REVERSAL_INIT}:")
            self.emit(f"ion{s}[c, 0, r, q] = nrn_nernst(ion{s}[c, 1, r, q], ion{s}[c, 2, r, q], "
                      f"ion{s}_constants[2], celsius)")  # fmt: skip
            self.close()
            self.emit(f"ion{s}[c, 3, r, q] = 0.0")
            self.emit(f"ion{s}[c, 4, r, q] = 0.0")
            self.close(levels + 1)
        for k, mechanism in enumerate(self.layout.mechanisms):
            if "initial" not in mechanism.phases:
                continue
            levels = self.mechanism_loop(k)
            outputs = self.call(k, "initial", "0.0")
            self.store_outputs(k, "initial", outputs, 0)
            self.wrote_concentration(k)
            self.close(levels)
        self.emit("return 0")

    def assemble(self) -> None:
        """``setup_tree_matrix`` at ``time``: rhs and d to 0; the ions' currents to 0
        (and e by Nernst where the style says so); every mechanism's current in type
        order, each instance adding straight into its node's rhs and d as NEURON does
        (so every node's sums are NEURON's, term by term); then the capacitance and the
        axial terms, node by node in increasing index."""
        self.header("assemble", "c, count, q, time, cfac, ")
        self.open("for i in range(parent.size):")
        levels = self.instances()
        self.emit("rhs[c, i, q] = 0.0")
        self.emit("d[c, i, q] = 0.0")
        self.close(levels + 1)
        for s, _ion in enumerate(self.layout.ions):
            self.open(f"for r in range(ion{s}_node.size):")
            self.emit(f"advance = ion{s}_style[r] & {STYLE_REVERSAL_ADVANCE}")
            levels = self.instances()
            self.emit(f"ion{s}[c, 3, r, q] = 0.0")
            self.emit(f"ion{s}[c, 4, r, q] = 0.0")
            self.open("if advance:")
            self.emit(f"ion{s}[c, 0, r, q] = nrn_nernst(ion{s}[c, 1, r, q], ion{s}[c, 2, r, q], "
                      f"ion{s}_constants[2], celsius)")  # fmt: skip
            self.close()
            self.close(levels + 1)
        for k, mechanism in enumerate(self.layout.mechanisms):
            if not mechanism.has_current:
                continue
            spec = mechanism.phases["current"]
            levels = self.mechanism_loop(k)
            outputs = self.call(k, "current", "time")
            rhs, conductance = outputs[0], outputs[1]
            point = mechanism.is_point_process
            if point:
                self.emit(f"mfact = m{k}_mfact[j]")
                conductance_term = f"{conductance} * mfact"
                rhs_term = f"{rhs} * mfact"
            else:
                conductance_term, rhs_term = conductance, rhs
            if mechanism.electrode_current:  # rhs += i, d -= g
                self.emit(f"rhs[c, i, q] += {rhs_term}")
                self.emit(f"d[c, i, q] -= {conductance_term}")
            else:  # rhs -= i, d += g
                self.emit(f"rhs[c, i, q] -= {rhs_term}")
                self.emit(f"d[c, i, q] += {conductance_term}")
            currents = [pair for pair in spec.ion_outputs if pair[1] in ("i", "didv")]
            for (ion, field_name), value in zip(currents, outputs[2:], strict=False):
                s = self.layout.ions.index(ion)
                index = ION_FIELDS.index(field_name)
                # a point process: ``ica * 1.e2 / area``, left to right, as nocmodl
                scaled = f"{value} * 1.0e2 / area[i]" if point else value
                self.emit(f"ion{s}[c, {index}, r_{ion}, q] += {scaled}")
            self.store_outputs(k, "current", outputs, 2)
            self.close(levels)
        # the capacitance and the axial terms
        self.open("for i in range(parent.size):")
        levels = self.instances()
        self.emit("d[c, i, q] += cfac * cm[c, i, q]")
        self.close(levels)
        self.emit("p = parent[i]")
        self.open("if p >= 0:")
        self.emit("a_i = a[i]")
        self.emit("b_i = b[i]")
        levels = self.instances()
        self.emit("dv = v[c, p, q] - v[c, i, q]")
        self.emit("rhs[c, i, q] -= b_i * dv")
        self.emit("rhs[c, p, q] += a_i * dv")
        self.emit("d[c, i, q] -= b_i")
        self.emit("d[c, p, q] -= a_i")
        self.close(levels + 2)
        self.emit("return 0")

    def advance(self) -> None:
        """``nonvint``: every mechanism's SOLVEd states in type order, at ``time``."""
        self.header("advance", "c, count, q, time, ")
        for k, mechanism in enumerate(self.layout.mechanisms):
            if "state" not in mechanism.phases:
                continue
            levels = self.mechanism_loop(k)
            outputs = self.call(k, "state", "time")
            self.store_outputs(k, "state", outputs, 0)
            self.close(levels)
        self.emit("return 0")

    def deliver(self) -> None:
        """One event: NET_RECEIVE of mechanism ``kind``'s instance j, for instance q."""
        self.header("receive", "c, q, kind, j, time, weights, ")
        first = True
        for k, mechanism in enumerate(self.layout.mechanisms):
            if not mechanism.receives_events:
                continue
            self.open(f"{'if' if first else 'elif'} kind == {k}:")
            first = False
            self.emit(f"i = m{k}_node[j]")
            for use in mechanism.ions:
                self.emit(f"r_{use.ion} = m{k}_ion_{use.ion}[j]")
            n_arguments = len(mechanism.net_receive_arguments)
            outputs = self.call(k, "net_receive", "time",
                                tuple(f"weights[{w}]" for w in range(n_arguments)))  # fmt: skip
            self.store_outputs(k, "net_receive", outputs, 0)
            self.close()
        self.emit("return 0")

    def record(self) -> None:
        """The value a recording of (kind, field, row) reads for instance q."""
        self.emit()
        self.emit("@kernel_jit")
        names = ", ".join(["v"] + [f"ion{s}" for s in range(len(self.layout.ions))]
                          + [f"m{k}" for k in range(len(self.layout.mechanisms))])  # fmt: skip
        self.open(f"def probe(c, q, kind, field, row, {names}):")
        self.open("if kind == 0:")
        self.emit("return v[c, row, q]")
        self.close()
        for s in range(len(self.layout.ions)):
            self.open(f"if kind == {1 + s}:")
            self.emit(f"return ion{s}[c, field, row, q]")
            self.close()
        base = 1 + len(self.layout.ions)
        for k in range(len(self.layout.mechanisms)):
            self.open(f"if kind == {base + k}:")
            self.emit(f"return m{k}[c, field, row, q]")
            self.close()
        self.emit("return 0.0")
        self.close()

    # -------------------------------------------------------------- the solve
    def solve(self) -> None:
        """NEURON's ``triang`` and ``bksub`` (``parent[i] < i``), then ``v += x``; x
        goes into rhs and d is overwritten with the pivots."""
        self.emit()
        self.emit("@kernel_jit")
        self.open("def solve(c, count, q, parent, a, b, d, rhs, v):")
        self.open("for i in range(parent.size - 1, -1, -1):")
        self.emit("p = parent[i]")
        self.open("if p >= 0:")
        self.emit("a_i = a[i]")
        self.emit("b_i = b[i]")
        levels = self.instances()
        self.emit("factor = a_i / d[c, i, q]")
        self.emit("d[c, p, q] -= factor * b_i")
        self.emit("rhs[c, p, q] -= factor * rhs[c, i, q]")
        self.close(levels + 2)
        self.open("for i in range(parent.size):")
        self.emit("p = parent[i]")
        self.open("if p < 0:")
        levels = self.instances()
        self.emit("x = rhs[c, i, q] / d[c, i, q]")
        self.emit("rhs[c, i, q] = x")
        self.emit("v[c, i, q] += x")
        self.close(levels + 1)
        self.open("else:")
        self.emit("b_i = b[i]")
        levels = self.instances()
        self.emit("x = (rhs[c, i, q] - b_i * rhs[c, p, q]) / d[c, i, q]")
        self.emit("rhs[c, i, q] = x")
        self.emit("v[c, i, q] += x")
        self.close(levels + 2)
        self.emit("return 0")
        self.close()

    # -------------------------------------------------------------- the driver
    def observe(self) -> None:
        """Record at step k and test the spike threshold (NEURON checks at a step's
        start, so never after the last step)."""
        stores = ", ".join(["v"] + [f"ion{s}" for s in range(len(self.layout.ions))]
                           + [f"m{k}" for k in range(len(self.layout.mechanisms))])  # fmt: skip
        self.emit()
        self.emit("@kernel_jit")
        self.open("def observe(c, start, count, q, k, n_steps, t_grid, rec_kind, rec_field, "
                  "rec_row, rec_every, rec, spike_node, threshold, interpolate, spike_t, "
                  f"spike_n, spike_flag, spike_v, {stores}):")  # fmt: skip
        self.open("if k % rec_every == 0:")
        self.emit("sample = k // rec_every")
        self.open("for r in range(rec_kind.size):")
        levels = self.instances()
        self.emit(f"rec[sample, r, start + q] = probe(c, q, rec_kind[r], rec_field[r], "
                  f"rec_row[r], {stores})")  # fmt: skip
        self.close(levels + 2)
        self.open("if spike_node >= 0 and k < n_steps:")
        self.emit("t_now = t_grid[k]")
        levels = self.instances()
        self.emit("column = start + q")
        self.emit("value = v[c, spike_node, q]")
        self.open("if value - threshold > 0.0:")
        self.open("if spike_flag[c, q] == 0:")
        self.emit("spike_flag[c, q] = 1")
        self.open("if interpolate and k > 0:")
        self.emit("t_before = t_grid[k - 1]")
        self.emit("v_before = spike_v[c, q]")
        self.emit("t_spike = t_before + (t_now - t_before) * (threshold - v_before) / "
                  "(value - v_before)")  # fmt: skip
        self.close()
        self.open("elif interpolate:")
        self.emit("t_spike = t_now")
        self.close()
        self.open("else:")
        self.emit(f"t_spike = t_now + {SPIKE_DELAY!r}")
        self.close()
        self.emit("n = spike_n[column]")
        self.open("if n < spike_t.shape[1]:")
        self.emit("spike_t[column, n] = t_spike")
        self.close()
        self.emit("spike_n[column] = n + 1")
        self.close(2)
        self.open("else:")
        self.emit("spike_flag[c, q] = 0")
        self.close()
        self.emit("spike_v[c, q] = value")
        self.close(levels + 1)
        self.emit("return 0")
        self.close()

    def driver(self) -> None:
        """The whole run of chunks ``first .. last - 1`` (CPU), or of instance q in
        chunk 0 (CUDA: events are grouped per instance, ``ev_ptr[q]``)."""
        arguments = ", ".join(self.arguments())
        stores = ", ".join(["v"] + [f"ion{s}" for s in range(len(self.layout.ions))]
                           + [f"m{k}" for k in range(len(self.layout.mechanisms))])  # fmt: skip
        observed = ("n_steps, t_grid, rec_kind, rec_field, rec_row, rec_every, rec, "
                    "spike_node, threshold, interpolate, spike_t, spike_n, spike_flag, "
                    f"spike_v, {stores}")  # fmt: skip
        head = "".join(f"{name}, " for name in DRIVER_ARGUMENTS)
        self.emit()
        if self.cuda:
            self.emit("@cuda.jit(cache=True)")
            self.open(f"def run_instances(n_instances, {head}{arguments}):")
            self.emit("q = cuda.grid(1)")
            self.open("if q >= n_instances:")
            self.emit("return")
            self.close()
            self.emit("c = 0")
            self.emit("start = 0")
            self.emit("count = 1")
            self.emit("group = q")
            self.open("if True:")
        else:
            self.emit("@driver_jit")
            self.open(f"def run_chunks(first, last, {head}{arguments}):")
            self.emit("q = uint64(0)")
            self.open("for c in range(first, last):")
            self.emit("start = starts[c]")
            self.emit("count = starts[c + 1] - start")
            self.emit("group = c")
        self.emit(f"initialize(c, count, q, {arguments})")
        # finitialize ends with one assembly at t = 0, so the currents are valid there
        self.emit(f"assemble(c, count, q, 0.0, cfac, {arguments})")
        self.emit(f"observe(c, start, count, q, 0, {observed})")
        self.emit("cursor = ev_ptr[group]")
        self.emit("end = ev_ptr[group + 1]")
        self.open("for k in range(n_steps):")
        self.open("while cursor < end and ev_step[cursor] <= k:")
        self.emit(f"receive(c, ev_column[cursor] - start, ev_kind[cursor], ev_row[cursor], "
                  f"ev_time[cursor], ev_weight[cursor], {arguments})")  # fmt: skip
        self.emit("cursor += 1")
        self.close()
        self.emit(f"assemble(c, count, q, t_mid[k], cfac, {arguments})")
        self.emit("solve(c, count, q, parent, a, b, d, rhs, v)")
        self.emit(f"advance(c, count, q, t_grid[k + 1], {arguments})")
        self.emit(f"observe(c, start, count, q, k + 1, {observed})")
        self.close(3)


def argument_names(layout: Layout) -> list[str]:
    """The arrays the generated phases take, in order (after the driver's own)."""
    return _Printer(layout, False).arguments()


def generate(layout: Layout, *, cuda: bool = False) -> str:
    """The source of the kernel module for ``layout`` (CPU, or the CUDA device build)."""
    printer = _Printer(layout, cuda)
    lines = [
        f'"""Generated by dhs.engine.kernel (version {KERNEL_VERSION}, '
        f"{'CUDA' if cuda else 'CPU'} build) for",
        "the mechanisms " + ", ".join(m.name for m in layout.mechanisms) + ". Do not edit.",
        '"""',
        "",
    ]
    if cuda:
        lines += [
            "from numba import cuda  # noqa: F401",
            "",
            "from dhs.engine.kernel_runtime import device_jit as kernel_jit  # noqa: F401",
            "from dhs.engine.nmodl.runtime_cuda import device_module, device_runtime",
            "",
            'nrn_nernst = device_runtime()["nrn_nernst"]',
        ]
        for k, mechanism in enumerate(layout.mechanisms):
            lines.append(f'_m{k} = device_module("{mechanism.module_name}")')
            lines += [f"m{k}_{phase} = _m{k}.{phase}" for phase in mechanism.phases]
    else:
        lines += [
            "from numba import uint64  # noqa: F401",
            "",
            "from dhs.engine.nmodl.runtime import nrn_nernst  # noqa: F401",
            "from dhs.engine.kernel_runtime import driver_jit, kernel_jit  # noqa: F401",
        ]
        for k, mechanism in enumerate(layout.mechanisms):
            lines += [
                f"from {mechanism.module_name} import {phase} as m{k}_{phase}  # noqa: F401"
                for phase in mechanism.phases
            ]
    printer.lines = lines
    printer.initialize()
    printer.close()
    printer.assemble()
    printer.close()
    printer.advance()
    printer.close()
    printer.deliver()
    printer.close()
    printer.record()
    printer.solve()
    printer.observe()
    printer.driver()
    return "\n".join(printer.lines) + "\n"


def load(layout: Layout, *, cuda: bool = False):
    """The kernel module of ``layout``, CPU or CUDA build (generated into the cache once;
    its mechanisms' modules are imported first)."""
    for mechanism in layout.mechanisms:
        mechanism.module  # noqa: B018 - writes and imports the mechanism's module first
    name = "kernel_cuda" if cuda else "kernel"
    return load_module(name, layout.digest, generate(layout, cuda=cuda), kind="kernels")
