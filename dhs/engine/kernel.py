"""The engine's time loop, generated for one model's set of mechanisms.

:func:`generate` writes the Python source of one module from a :class:`KernelPlan` (the
model's mechanisms in NEURON's order, its ions, the stored fields, and the scheme): the
phases of NEURON's fixed step (``finitialize``, event delivery, assembly, solve, state
update, recording) as loops that call the mechanisms' generated scalar functions
(:mod:`dhs.engine.nmodl`). One printer writes three builds:

``cpu``      a chunk of instances per call; every loop body runs over the chunk's
             instances (``for q0 in range(count)``, contiguous in memory);
``thread``   CUDA, one thread per instance: the same body once per thread;
``lanes``    CUDA, one block per instance (DHS): the block's lanes share the nodes and
             the mechanism instances, and the tree solve steps through the cell's Hu
             schedule with the standalone solver's own device functions.

The design note is ``dhs/engine/DESIGN.md``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from .mechanism import Mechanism
from .nmodl.build import load_module, runtime_digest
from .nmodl.translate import GENERATOR_VERSION

__all__ = [
    "DRIVER_ARGUMENTS",
    "ION_FIELDS",
    "KERNEL_VERSION",
    "SCHEMES",
    "KernelPlan",
    "argument_names",
    "generate",
    "load",
]

#: Bump when the generated kernel changes.
KERNEL_VERSION = 9
#: ``cpu``; CUDA with one thread per instance; CUDA with a block of lanes per instance.
SCHEMES = ("cpu", "thread", "lanes")
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
class KernelPlan:
    """What the generated code depends on (not the numbers, nor the morphology).

    Attributes
    ----------
    mechanisms : tuple of Mechanism
        In NEURON's order (the order currents are summed and states advanced).
    ions : tuple of str
        Ion species present.
    stored : tuple of tuple of str
        Per mechanism, the fields kept in its array (parameters, states, the assigned
        variables the phases need, and optional ones asked for by a recording).
    scheme : {"cpu", "thread", "lanes"}
    scalar : bool
        ``cpu`` with chunks of one instance: no loops over instances at all (a single
        instance's own path, without the overhead of a loop of one).
    """

    mechanisms: tuple[Mechanism, ...]
    ions: tuple[str, ...]
    stored: tuple[tuple[str, ...], ...]
    scheme: str = "cpu"
    scalar: bool = False

    @property
    def cuda(self) -> bool:
        return self.scheme != "cpu"

    @property
    def digest(self) -> str:
        text = repr((KERNEL_VERSION, GENERATOR_VERSION, runtime_digest(),
                     [m.digest for m in self.mechanisms],
                     self.ions, self.stored, self.scheme, self.scalar))  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()


def _tuple_unpack(names: list[str], value: str) -> str:
    if not names:
        return f"_ = {value}"
    return f"{', '.join(names)} = {value}"


class _Printer:
    """Emits the phase functions of one scheme."""

    def __init__(self, plan: KernelPlan) -> None:
        self.plan = plan
        self.scheme = plan.scheme
        # The CPU's indices are unsigned: Numba then adds no negative-index wraparound
        # to every access (measured: 15 % of a step at 16 instances, 21 % at one).
        self.unsigned = plan.scheme == "cpu"
        self.looped = plan.scheme == "cpu" and not plan.scalar
        self.lines: list[str] = []
        self.indent = 0

    # -------------------------------------------------------------- text
    def emit(self, line: str = "") -> None:
        self.lines.append("    " * self.indent + line if line else "")

    def open(self, line: str) -> None:
        self.emit(line)
        self.indent += 1

    def close(self, levels: int = 1) -> None:
        self.indent -= levels

    def instances(self) -> int:
        """Open the loop over a chunk's instances (``cpu``) or nothing (CUDA); returns
        the number of levels to close."""
        if not self.looped:
            return 0
        self.open("for q0 in range(count):")
        self.emit("q = uint64(q0)")
        return 1

    def index(self, variable: str, value: str) -> None:
        """``variable = value``, unsigned on the CPU."""
        self.emit(f"{variable} = uint64({value})" if self.unsigned else f"{variable} = {value}")

    def loop(self, variable: str, bounds: str) -> int:
        """Open ``for variable in range(bounds)`` (unsigned on the CPU); returns 1."""
        if self.unsigned:
            self.open(f"for {variable}0 in range({bounds}):")
            self.emit(f"{variable} = uint64({variable}0)")
        else:
            self.open(f"for {variable} in range({bounds}):")
        return 1

    def spread(self, variable: str, stop: str, start: str = "0") -> int:
        """Open a loop of ``variable`` over ``start .. stop - 1``: all of it (``cpu``,
        ``thread``) or this lane's share (``lanes``); returns the levels to close."""
        if self.scheme == "lanes":
            self.open(f"for {variable} in range({start} + lane, {stop}, lanes):")
            return 1
        return self.loop(variable, f"{start}, {stop}")

    def barrier(self) -> None:
        if self.scheme == "lanes":
            self.emit("cuda.syncthreads()")

    # -------------------------------------------------------------- arguments
    def arguments(self) -> list[str]:
        """Every array and scalar the phases read, in the order the engine passes them."""
        names = ["parent", "a", "b", "diam", "area", "cm", "v_init", "v", "rhs", "d",
                 "scalars"]  # fmt: skip
        if self.scheme == "lanes":
            names += ["node_ptr", "step_ptr", "step_lo", "step_hi", "child_ptr",
                      "child_index", "identity"]  # fmt: skip
        else:
            names += ["block_ptr", "cross_ptr", "cross_child"]
        for s, _ion in enumerate(self.plan.ions):
            names += [f"ion{s}", f"ion{s}_node", f"ion{s}_style", f"ion{s}_constants"]
            if self.scheme != "lanes":
                names.append(f"ion{s}_block")
        for k, mechanism in enumerate(self.plan.mechanisms):
            names += [f"m{k}", f"m{k}_node", f"m{k}_globals"]
            if mechanism.is_point_process:
                names += [f"m{k}_mfact", f"m{k}_order"]
                if self.scheme == "lanes":
                    names.append(f"m{k}_unit_ptr")
            if self.scheme != "lanes":
                names.append(f"m{k}_block")
            for use in mechanism.ions:
                names.append(f"m{k}_ion_{use.ion}")
            for table in mechanism.translation.tables:
                names += [f"m{k}_table_{table.function}", f"m{k}_limits_{table.function}"]
        return names

    # -------------------------------------------------------------- phase calls
    def call(
        self, k: int, phase: str, time: str, extra_arguments: tuple[str, ...] = ()
    ) -> list[str]:
        """Emit the call of mechanism k's ``phase`` for its instance j at node i;
        returns the names of the outputs (already unpacked)."""
        plan = self.plan
        mechanism = plan.mechanisms[k]
        spec = mechanism.phases[phase]
        translation = mechanism.translation
        arguments = ["v[c, i, q]", time, "dt", "celsius"]
        arguments += [f"m{k}_globals[{g}]" for g in range(len(translation.globals))]
        for table in translation.tables:
            arguments += [f"m{k}_table_{table.function}", f"m{k}_limits_{table.function}[0]",
                          f"m{k}_limits_{table.function}[1]"]  # fmt: skip
        arguments += [f"{name}[i]" for name in translation.geometry]
        for ion, field_name in spec.ion_inputs:
            s = plan.ions.index(ion)
            arguments.append(f"ion{s}[c, {ION_FIELDS.index(field_name)}, r_{ion}, q]")
        stored = plan.stored[k]
        for name in spec.instance_inputs:
            arguments.append(f"m{k}[c, {stored.index(name)}, j, q]" if name in stored else "0.0")
        arguments += list(extra_arguments)
        outputs = [f"o{n}" for n in range(len(spec.extras) + len(spec.ion_outputs)
                                           + len(spec.instance_outputs))]  # fmt: skip
        self.emit(_tuple_unpack(outputs, f"m{k}_{phase}({', '.join(arguments)})"))
        return outputs

    def store_outputs(self, k: int, phase: str, outputs: list[str], skip: int) -> None:
        """Store the ion and instance outputs after the first ``skip`` (extras)."""
        plan = self.plan
        mechanism = plan.mechanisms[k]
        spec = mechanism.phases[phase]
        rest = outputs[skip:]
        ion_outputs = spec.ion_outputs
        if phase == "current":
            currents = [pair for pair in ion_outputs if pair[1] in ("i", "didv")]
            ion_outputs = ion_outputs[len(currents) :]
            rest = rest[len(currents) :]
        for (ion, field_name), value in zip(ion_outputs, rest, strict=False):
            s = plan.ions.index(ion)
            self.emit(f"ion{s}[c, {ION_FIELDS.index(field_name)}, r_{ion}, q] = {value}")
        rest = rest[len(ion_outputs) :]
        stored = plan.stored[k]
        for name, value in zip(spec.instance_outputs, rest, strict=True):
            if name in stored:
                self.emit(f"m{k}[c, {stored.index(name)}, j, q] = {value}")

    def mechanism_instances(self, k: int, block: bool) -> int:
        """Open the loop over mechanism k's instances, sets ``j``, ``i`` and the ion
        rows; returns the levels to close.

        ``cpu``/``thread``: the instances of node block ``block`` or all, in
        node order (a point process's through ``m{k}_order``, which keeps NEURON's
        order among those at one node). ``lanes``: this lane's share; a point process's
        are taken by node (``m{k}_unit_ptr``), so that one lane adds every instance at a
        node, in NEURON's order.
        """
        mechanism = self.plan.mechanisms[k]
        point = mechanism.is_point_process
        levels = 0
        if self.scheme == "lanes":
            if point:
                levels += self.spread("u", f"m{k}_unit_ptr.size - 1")
                self.open(f"for position in range(m{k}_unit_ptr[u], m{k}_unit_ptr[u + 1]):")
                self.emit(f"j = m{k}_order[position]")
                levels += 1
            else:
                levels += self.spread("j", f"m{k}_node.size")
        else:
            bounds = f"m{k}_block[block], m{k}_block[block + 1]" if block else f"m{k}_node.size"
            if point:
                levels += self.loop("position", bounds)
                self.index("j", f"m{k}_order[position]")
            else:
                levels += self.loop("j", bounds)
        self.index("i", f"m{k}_node[j]")
        for use in mechanism.ions:
            self.index(f"r_{use.ion}", f"m{k}_ion_{use.ion}[j]")
        return levels

    def wrote_concentration(self, k: int) -> None:
        """``nrn_wrote_conc``: after INITIAL wrote a concentration, e by Nernst if the
        ion's style says so."""
        for ion in self.plan.mechanisms[k].writes_concentration:
            s = self.plan.ions.index(ion)
            self.open(f"if ion{s}_style[r_{ion}] & {STYLE_REVERSAL_INIT}:")
            self.emit(f"ion{s}[c, 0, r_{ion}, q] = nrn_nernst(ion{s}[c, 1, r_{ion}, q], "
                      f"ion{s}[c, 2, r_{ion}, q], ion{s}_constants[2], celsius)")  # fmt: skip
            self.close()

    # -------------------------------------------------------------- phases
    def header(self, name: str, extra: str) -> None:
        self.emit()
        self.emit("@kernel_jit")
        lane = "lane, lanes, " if self.scheme == "lanes" else ""
        self.open(f"def {name}({lane}{extra}{', '.join(self.arguments())}):")
        if not self.plan.cuda:
            self.emit("vector_gathers()")
        self.emit("dt = scalars[0]")
        self.emit("celsius = scalars[1]")
        if self.plan.scalar:
            self.emit("q = uint64(0)  # one instance per chunk")

    def initialize(self) -> None:
        """``finitialize``: v, the ions' initial concentrations and reversal potentials,
        then every mechanism's INITIAL in NEURON's order."""
        self.header("initialize", "c, count, q, ")
        levels = self.spread("i", "parent.size")
        levels += self.instances()
        self.emit("v[c, i, q] = v_init[c, q]")
        self.close(levels)
        for s, _ion in enumerate(self.plan.ions):
            levels = self.spread("r", f"ion{s}_node.size")
            self.emit(f"style = ion{s}_style[r]")
            levels += self.instances()
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
            self.close(levels)
        self.barrier()
        for k, mechanism in enumerate(self.plan.mechanisms):
            if "initial" not in mechanism.phases:
                continue
            levels = self.mechanism_instances(k, block=False)
            levels += self.instances()
            outputs = self.call(k, "initial", "0.0")
            self.store_outputs(k, "initial", outputs, 0)
            self.wrote_concentration(k)
            self.close(levels)
            self.barrier()
        self.emit("return 0")
        self.close()

    def clear_ions(self, s: int, rows: str) -> None:
        """Zero ion s's currents at ``rows`` (e by Nernst where the style says so)."""
        if self.scheme == "lanes":
            self.open(f"for r in range(lane, ion{s}_node.size, lanes):")
        else:
            self.loop("r", rows)
        self.emit(f"advance = ion{s}_style[r] & {STYLE_REVERSAL_ADVANCE}")
        levels = self.instances()
        self.emit(f"ion{s}[c, 3, r, q] = 0.0")
        self.emit(f"ion{s}[c, 4, r, q] = 0.0")
        self.open("if advance:")
        self.emit(f"ion{s}[c, 0, r, q] = nrn_nernst(ion{s}[c, 1, r, q], ion{s}[c, 2, r, q], "
                  f"ion{s}_constants[2], celsius)")  # fmt: skip
        self.close()
        self.close(levels + 1)

    def add_current(self, k: int) -> None:
        """Mechanism k's current at its instance j (node i), added to rhs and d as
        ``nrn_cur``/``nrn_jacob`` do, and its ion currents to the ions."""
        mechanism = self.plan.mechanisms[k]
        spec = mechanism.phases["current"]
        outputs = self.call(k, "current", "time")
        rhs, conductance = outputs[0], outputs[1]
        point = mechanism.is_point_process
        if point:
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
            s = self.plan.ions.index(ion)
            index = ION_FIELDS.index(field_name)
            # a point process: ``ica * 1.e2 / area``, left to right, as nocmodl
            scaled = f"{value} * 1.0e2 / area[i]" if point else value
            self.emit(f"ion{s}[c, {index}, r_{ion}, q] += {scaled}")
        self.store_outputs(k, "current", outputs, 2)

    def mechanism_currents(self, block: bool) -> None:
        for k, mechanism in enumerate(self.plan.mechanisms):
            if not mechanism.has_current:
                continue
            levels = self.mechanism_instances(k, block)
            if mechanism.is_point_process:
                self.emit(f"mfact = m{k}_mfact[j]")
            levels += self.instances()
            self.add_current(k)
            self.close(levels)
            self.barrier()

    def membrane_and_axial(self) -> None:
        """At node i: the capacitance, then the axial terms (NEURON's order on every
        row). ``cpu``/``thread`` add the child's terms to its parent's row when the
        parent is in this block (the parent's own terms came first, its other children
        follow in increasing index); a parent in an earlier block, whose row is not
        assembled yet, takes them when its block comes (:meth:`assemble`). ``lanes``
        has node i pull its children's terms in increasing tree index instead (the
        layout lists them in decreasing tree index), so no two lanes write one row."""
        self.emit("p = parent[i]")
        if self.scheme == "lanes":
            levels = self.instances()
            self.emit("d[c, i, q] += cfac * cm[c, i, q]")
            self.open("if p >= 0:")
            self.emit("dv = v[c, p, q] - v[c, i, q]")
            self.emit("rhs[c, i, q] -= b[i] * dv")
            self.emit("d[c, i, q] -= b[i]")
            self.close()
            self.open("for position in range(child_ptr[i + 1] - 1, child_ptr[i] - 1, -1):")
            self.emit("child = child_index[position]")
            self.emit("dv = v[c, i, q] - v[c, child, q]")
            self.emit("rhs[c, i, q] += a[child] * dv")
            self.emit("d[c, i, q] -= a[child]")
            self.close(levels + 1)
            return
        levels = self.instances()
        self.emit("d[c, i, q] += cfac * cm[c, i, q]")
        self.close(levels)
        self.open("if p >= first:")
        self.index("up", "p")
        self.emit("a_i = a[i]")
        self.emit("b_i = b[i]")
        levels = self.instances()
        self.emit("dv = v[c, up, q] - v[c, i, q]")
        self.emit("rhs[c, i, q] -= b_i * dv")
        self.emit("rhs[c, up, q] += a_i * dv")
        self.emit("d[c, i, q] -= b_i")
        self.emit("d[c, up, q] -= a_i")
        self.close(levels + 1)
        self.open("elif p >= 0:")
        self.index("up", "p")
        self.emit("b_i = b[i]")
        levels = self.instances()
        self.emit("dv = v[c, up, q] - v[c, i, q]")
        self.emit("rhs[c, i, q] -= b_i * dv")
        self.emit("d[c, i, q] -= b_i")
        self.close(levels + 1)

    def eliminate_block(self) -> None:
        """Block ``block``'s rows, after their own terms and those of the children in
        the block: the axial terms of the children in later blocks (increasing index),
        then ``triang`` into them from those children (decreasing index, each child's
        row final: its block came earlier in the walk), then ``triang`` within the
        block from its last node. Every row gets NEURON's terms in NEURON's order."""
        self.loop("position", "cross_ptr[block], cross_ptr[block + 1]")
        self.index("child", "cross_child[position]")
        self.index("up", "parent[child]")
        self.emit("a_child = a[child]")
        levels = self.instances()
        self.emit("dv = v[c, up, q] - v[c, child, q]")
        self.emit("rhs[c, up, q] += a_child * dv")
        self.emit("d[c, up, q] -= a_child")
        self.close(levels + 1)
        self.open("for position0 in range(cross_ptr[block + 1] - 1, cross_ptr[block] - 1, -1):")
        self.index("child", "cross_child[position0]")
        self.index("up", "parent[child]")
        self.triang("child")
        self.close()
        self.open("for i0 in range(block_ptr[block + 1] - 1, first - 1, -1):")
        self.index("i", "i0")
        self.emit("p = parent[i]")
        self.open("if p >= first:")
        self.index("up", "p")
        self.triang("i")
        self.close(2)

    def triang(self, node: str) -> None:
        """NEURON's ``triang`` for one node (its row final) into its parent ``up``."""
        self.emit(f"a_{node} = a[{node}]")
        self.emit(f"b_{node} = b[{node}]")
        levels = self.instances()
        self.emit(f"factor = a_{node} / d[c, {node}, q]")
        self.emit(f"d[c, up, q] -= factor * b_{node}")
        self.emit(f"rhs[c, up, q] -= factor * rhs[c, {node}, q]")
        self.close(levels)

    def assemble(self) -> None:
        """``setup_tree_matrix`` at ``time``: rhs, d and the ions' currents to 0 (e by
        Nernst where the style says so), every mechanism's current in NEURON's order,
        the capacitance and the axial terms. ``cpu``/``thread`` do it block of nodes
        after block, from the last block back, and run ``triang`` on each block as soon
        as its rows are complete, so that one pass over the state assembles and
        eliminates; every row gets NEURON's terms in NEURON's order (a node's
        mechanisms before its own and its children's axial terms, then the children's
        elimination in decreasing index). ``lanes`` assembles phase after phase and
        eliminates in :meth:`update`."""
        self.header("assemble", "c, count, q, time, cfac, ")
        if self.scheme == "lanes":
            levels = self.spread("i", "parent.size")
            levels += self.instances()
            self.emit("rhs[c, i, q] = 0.0")
            self.emit("d[c, i, q] = 0.0")
            self.close(levels)
            for s, _ion in enumerate(self.plan.ions):
                self.clear_ions(s, "")
            self.barrier()
            self.mechanism_currents(block=False)
            self.spread("i", "parent.size")
            self.membrane_and_axial()
            self.close()
            self.barrier()
        else:
            self.open("for back in range(block_ptr.size - 1):")
            self.emit("block = block_ptr.size - 2 - back")
            self.emit("first = block_ptr[block]")
            self.loop("i", "first, block_ptr[block + 1]")
            levels = self.instances()
            self.emit("rhs[c, i, q] = 0.0")
            self.emit("d[c, i, q] = 0.0")
            self.close(levels + 1)
            for s, _ion in enumerate(self.plan.ions):
                self.clear_ions(s, f"ion{s}_block[block], ion{s}_block[block + 1]")
            self.mechanism_currents(block=True)
            self.loop("i", "first, block_ptr[block + 1]")
            self.membrane_and_axial()
            self.close()
            self.eliminate_block()
            self.close()
        self.emit("return 0")
        self.close()

    def advance_states(self, block: bool) -> None:
        """Every SOLVEd block in NEURON's order, at ``time`` (the new v)."""
        for k, mechanism in enumerate(self.plan.mechanisms):
            if "state" not in mechanism.phases:
                continue
            levels = self.mechanism_instances(k, block)
            levels += self.instances()
            outputs = self.call(k, "state", "time")
            self.store_outputs(k, "state", outputs, 0)
            self.close(levels)
            self.barrier()

    def update(self) -> None:
        """The rest of the tree solve (``lanes``: NEURON's ``triang`` and ``bksub``;
        ``cpu``/``thread``: ``bksub``, :meth:`assemble` having eliminated; x goes into
        rhs, d holds the pivots), ``v += x``, then the states (``nonvint``) at
        ``time``. ``cpu``/``thread`` advance a block's states right after its nodes'
        back-substitution (a state reads only its own node)."""
        self.header("update", "c, count, q, time, ")
        if self.scheme == "lanes":
            self.open("for component in range(node_ptr.size - 1):")
            self.emit("lo = node_ptr[component]")
            self.emit("hi = node_ptr[component + 1]")
            self.emit("pivot = d[c, lo:hi, q]")
            self.emit("value = rhs[c, lo:hi, q]")
            self.emit("first = step_ptr[component]")
            self.emit("last = step_ptr[component + 1]")
            self.emit("eliminate(lane, first, last, step_lo, step_hi, child_ptr, child_index, "
                      "identity, a, b, 0, pivot, value, lo, True)")  # fmt: skip
            self.emit("back_substitute(lane, first, last, step_lo, step_hi, parent, identity, "
                      "b, 0, pivot, value, lo, True)")  # fmt: skip
            self.close()
            self.open("for i in range(lane, parent.size, lanes):")
            self.emit("v[c, i, q] += rhs[c, i, q]")
            self.close()
            self.barrier()
            self.advance_states(block=False)
        else:
            self.open("for block in range(block_ptr.size - 1):")
            self.loop("i", "block_ptr[block], block_ptr[block + 1]")
            self.emit("p = parent[i]")
            self.open("if p < 0:")
            levels = self.instances()
            self.emit("x = rhs[c, i, q] / d[c, i, q]")
            self.emit("rhs[c, i, q] = x")
            self.emit("v[c, i, q] += x")
            self.close(levels + 1)
            self.open("else:")
            self.index("up", "p")
            self.emit("b_i = b[i]")
            levels = self.instances()
            self.emit("x = (rhs[c, i, q] - b_i * rhs[c, up, q]) / d[c, i, q]")
            self.emit("rhs[c, i, q] = x")
            self.emit("v[c, i, q] += x")
            self.close(levels + 2)
            self.advance_states(block=True)
            self.close()
        self.emit("return 0")
        self.close()

    def deliver(self) -> None:
        """One event: NET_RECEIVE of mechanism ``kind``'s instance j, for instance q."""
        self.header("receive", "c, q, kind, j, time, weights, ")
        first = True
        for k, mechanism in enumerate(self.plan.mechanisms):
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
        self.close()

    def record(self) -> None:
        """The value a recording of (kind, field, row) reads for instance q."""
        self.emit()
        self.emit("@kernel_jit")
        names = ", ".join(self.stores())
        self.open(f"def probe(c, q, kind, field, row, {names}):")
        self.open("if kind == 0:")
        self.emit("return v[c, row, q]")
        self.close()
        for s in range(len(self.plan.ions)):
            self.open(f"if kind == {1 + s}:")
            self.emit(f"return ion{s}[c, field, row, q]")
            self.close()
        base = 1 + len(self.plan.ions)
        for k in range(len(self.plan.mechanisms)):
            self.open(f"if kind == {base + k}:")
            self.emit(f"return m{k}[c, field, row, q]")
            self.close()
        self.emit("return 0.0")
        self.close()

    def stores(self) -> list[str]:
        return (["v"] + [f"ion{s}" for s in range(len(self.plan.ions))]
                + [f"m{k}" for k in range(len(self.plan.mechanisms))])  # fmt: skip

    # -------------------------------------------------------------- the driver
    def observe(self) -> None:
        """Record at step k and test the spike threshold (NEURON checks at a step's
        start, so never after the last step). ``lanes``: the lanes share the
        recordings, lane 0 tests the threshold."""
        stores = ", ".join(self.stores())
        self.emit()
        self.emit("@kernel_jit")
        lane = "lane, lanes, " if self.scheme == "lanes" else ""
        self.open(f"def observe({lane}c, start, count, q, k, n_steps, t_grid, rec_kind, "
                  "rec_field, rec_row, rec_every, rec, spike_node, threshold, interpolate, "
                  f"spike_t, spike_n, spike_flag, spike_v, {stores}):")  # fmt: skip
        self.open("if k % rec_every == 0:")
        self.emit("sample = k // rec_every")
        levels = self.spread("r", "rec_kind.size")
        levels += self.instances()
        self.emit(f"rec[sample, r, start + q] = probe(c, q, rec_kind[r], rec_field[r], "
                  f"rec_row[r], {stores})")  # fmt: skip
        self.close(levels + 1)
        test = "spike_node >= 0 and k < n_steps"
        self.open(f"if {test} and lane == 0:" if self.scheme == "lanes" else f"if {test}:")
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
        self.barrier()
        self.emit("return 0")
        self.close()

    def driver(self) -> None:
        """The whole run: of chunks ``first .. last - 1`` (``cpu``), of instance q in
        chunk 0 (``thread``: events grouped per instance, ``ev_ptr[q]``), or of instance
        c, one per block (``lanes``: chunks of one instance)."""
        arguments = ", ".join(self.arguments())
        observed = ("n_steps, t_grid, rec_kind, rec_field, rec_row, rec_every, rec, "
                    "spike_node, threshold, interpolate, spike_t, spike_n, spike_flag, "
                    f"spike_v, {', '.join(self.stores())}")  # fmt: skip
        head = "".join(f"{name}, " for name in DRIVER_ARGUMENTS)
        lane = "lane, lanes, " if self.scheme == "lanes" else ""
        self.emit()
        if self.scheme == "thread":
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
        elif self.scheme == "lanes":
            self.emit("@cuda.jit(cache=True)")
            self.open(f"def run_instances(n_instances, {head}{arguments}):")
            self.emit("c = cuda.blockIdx.x")
            self.emit("lane = cuda.threadIdx.x")
            self.emit("lanes = cuda.blockDim.x")
            self.open("if c >= n_instances:")
            self.emit("return")
            self.close()
            self.emit("q = 0")
            self.emit("start = c")
            self.emit("count = 1")
            self.emit("group = c")
        else:
            self.emit("@driver_jit")
            self.open(f"def run_chunks(first, last, {head}{arguments}):")
            self.emit("q = uint64(0)")
            self.loop("c", "first, last")
            self.emit("start = starts[c]")
            self.emit("count = starts[c + 1] - start")
            self.emit("group = c")
        self.emit(f"initialize({lane}c, count, q, {arguments})")
        # finitialize ends with one assembly at t = 0, so the currents are valid there
        self.emit(f"assemble({lane}c, count, q, 0.0, cfac, {arguments})")
        self.emit(f"observe({lane}c, start, count, q, 0, {observed})")
        self.emit("cursor = ev_ptr[group]")
        self.emit("end = ev_ptr[group + 1]")
        self.open("for k in range(n_steps):")
        if self.scheme == "lanes":
            self.open("if lane == 0:")
        self.open("while cursor < end and ev_step[cursor] <= k:")
        self.emit(f"receive({lane}c, ev_column[cursor] - start, ev_kind[cursor], ev_row[cursor], "
                  f"ev_time[cursor], ev_weight[cursor], {arguments})")  # fmt: skip
        self.emit("cursor += 1")
        self.close()
        if self.scheme == "lanes":
            self.close()
            self.barrier()
        self.emit(f"assemble({lane}c, count, q, t_mid[k], cfac, {arguments})")
        self.emit(f"update({lane}c, count, q, t_grid[k + 1], {arguments})")
        self.emit(f"observe({lane}c, start, count, q, k + 1, {observed})")
        self.close(2 if self.scheme != "cpu" else 3)


def argument_names(plan: KernelPlan) -> list[str]:
    """The arrays the generated phases take, in order (after the driver's own)."""
    return _Printer(plan).arguments()


def generate(plan: KernelPlan) -> str:
    """The source of the kernel module for ``plan``."""
    printer = _Printer(plan)
    lines = [
        f'"""Generated by dhs.engine.kernel (version {KERNEL_VERSION}, scheme {plan.scheme}) for',
        "the mechanisms " + ", ".join(m.name for m in plan.mechanisms) + ". Do not edit.",
        '"""',
        "",
    ]
    if plan.cuda:
        lines += [
            "from numba import cuda  # noqa: F401",
            "",
            "from dhs.engine.kernel_runtime import device_jit as kernel_jit  # noqa: F401",
            "from dhs.engine.nmodl.runtime_cuda import device_module, device_runtime",
            "from dhs.solvers.cuda import back_substitute, eliminate  # noqa: F401",
            "",
            'nrn_nernst = device_runtime()["nrn_nernst"]',
        ]
        for k, mechanism in enumerate(plan.mechanisms):
            lines.append(f'_m{k} = device_module("{mechanism.module_name}")')
            lines += [f"m{k}_{phase} = _m{k}.{phase}" for phase in mechanism.phases]
    else:
        lines += [
            "from numba import uint64  # noqa: F401",
            "",
            "from dhs.engine.nmodl.runtime import nrn_nernst  # noqa: F401",
            "from dhs.engine.kernel_runtime import (  # noqa: F401",
            "    driver_jit,",
            "    kernel_jit,",
            "    vector_gathers,",
            ")",
        ]
        for k, mechanism in enumerate(plan.mechanisms):
            lines += [
                f"from {mechanism.module_name} import {phase} as m{k}_{phase}  # noqa: F401"
                for phase in mechanism.phases
            ]
    printer.lines = lines
    printer.initialize()
    printer.assemble()
    printer.update()
    printer.deliver()
    printer.record()
    printer.observe()
    printer.driver()
    return "\n".join(printer.lines) + "\n"


@functools.cache
def load(plan: KernelPlan):
    """The kernel module of ``plan`` (generated into the cache once, and once per process;
    its mechanisms' modules are imported first)."""
    for mechanism in plan.mechanisms:
        mechanism.module  # noqa: B018 - writes and imports the mechanism's module first
    name = f"kernel_{plan.scheme}"
    return load_module(name, plan.digest, generate(plan), kind="kernels")
