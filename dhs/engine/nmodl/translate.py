"""Translate one ``.mod`` file into an engine mechanism: its description and a Python
module of scalar functions.

The design note is ``dhs/engine/nmodl/DESIGN.md``. In short: every PROCEDURE and
FUNCTION becomes a Python function whose arguments are its own plus the mechanism
variables it reads or writes, and which returns what it writes; the phases NEURON
runs per instance (``nrn_init``, ``nrn_cur``, ``nrn_state``, ``net_receive``) become
the functions ``initial``, ``current``, ``state`` and ``net_receive``, with the
arithmetic nocmodl generates (the cnexp form, the conductance by a finite difference
at ``v + .001``, ``hoc_Exp``, the TABLE lookup). The same module is built for the CPU
and for CUDA (:mod:`dhs.engine.nmodl.build`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field

from . import ir
from .build import runtime_digest
from .cnexp import NotLinear, cnexp_update
from .frontend import ModFile, read_mod
from .hoist import hoist
from .implicit import OdeSystem, derivative_system, emit_system, kinetic_system
from .parse import NmodlError

__all__ = ["GENERATOR_VERSION", "Translation", "translate", "translate_file"]

#: Bump when the generated code changes, so cached modules are rebuilt.
GENERATOR_VERSION = 5

SIMULATION = ("t", "dt", "celsius")
GEOMETRY = ("diam", "area")
ION_FIELDS = ("e", "ci", "co", "i", "didv")

#: NMODL's built-in functions and the runtime names generated code calls.
BUILTINS = {
    "exp": "hoc_exp",
    "pow": "power",
    "log": "log",
    "log10": "log10",
    "sqrt": "sqrt",
    "fabs": "fabs",
    "floor": "floor",
    "ceil": "ceil",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "atan2": "atan2",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "erf": "erf",
    "erfc": "erfc",
    "fmod": "fmod",
}
#: Calls that change no number of the fixed-step simulation: their value is 0.
#: (``at_time`` only makes CVode stop at a discontinuity; in the fixed step it is 0.)
NO_EFFECT_CALLS = ("printf", "at_time")
#: Calls the engine cannot run, with what they are.
UNSUPPORTED_CALLS = {
    "net_send": "net_send (self-events)",
    "net_event": "net_event (a mechanism that spikes)",
    "net_move": "net_move (self-events)",
    "normrand": "random numbers (normrand)",
    "exprand": "random numbers (exprand)",
    "unirand": "random numbers (unirand)",
    "scop_random": "random numbers (scop_random)",
    "poisrand": "random numbers (poisrand)",
    "negexp": "random numbers (negexp)",
    "random_negexp": "random numbers (random_negexp)",
    "random_uniform": "random numbers (random_uniform)",
    "random_normal": "random numbers (random_normal)",
    "nrn_random_pick": "random numbers (nrn_random_pick)",
    "state_discontinuity": "state_discontinuity",
    "nrn_pointing": "POINTER (nrn_pointing)",
}


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class VariableSpec:
    """A variable of the mechanism description."""

    name: str
    default: float = 0.0
    units: str = ""


@dataclass(frozen=True)
class IonSpec:
    """How a mechanism uses one ion: which of its fields (``e``, ``ci``, ``co``, ``i``)
    it reads and writes, by NMODL name."""

    ion: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    valence: float | None

    def field_of(self, name: str) -> str:
        return ion_field(self.ion, name)


@dataclass(frozen=True)
class PhaseSpec:
    """The signature of one generated phase function.

    The function takes ``(v, t, dt, celsius, *globals, *tables, *geometry,
    *ion_inputs, *instance_inputs, *event_arguments)`` and returns
    ``(*extras, *ion_outputs, *instance_outputs)``.
    """

    name: str
    ion_inputs: tuple[tuple[str, str], ...]  # (ion, field)
    instance_inputs: tuple[str, ...]
    extras: tuple[str, ...]
    ion_outputs: tuple[tuple[str, str], ...]
    instance_outputs: tuple[str, ...]


@dataclass(frozen=True)
class TableSpec:
    """A TABLE of a FUNCTION or PROCEDURE: ``points + 1`` rows of ``variables``."""

    function: str
    variables: tuple[str, ...]
    points: int
    inputs: tuple[str, ...] = ()  # what ``build_<function>`` takes after ``out``: celsius, GLOBALs


@dataclass
class Translation:
    """A translated ``.mod`` file."""

    name: str
    kind: str
    digest: str
    source_path: str
    source_text: str
    parameters: tuple[VariableSpec, ...]
    globals: tuple[VariableSpec, ...]
    states: tuple[VariableSpec, ...]
    assigned: tuple[VariableSpec, ...]
    optional: tuple[str, ...]
    ions: tuple[IonSpec, ...]
    geometry: tuple[str, ...]
    tables: tuple[TableSpec, ...]
    phases: dict[str, PhaseSpec]
    net_receive_arguments: tuple[str, ...]
    electrode_current: bool
    currents: tuple[str, ...]
    module_source: str
    notes: list[str] = field(default_factory=list)
    #: GLOBALs that a block assigns: each instance keeps its own copy (a parameter).
    global_copies: tuple[str, ...] = ()

    @property
    def instance_variables(self) -> tuple[str, ...]:
        """Per-instance storage, in order: parameters, states, assigned."""
        return (
            tuple(p.name for p in self.parameters)
            + tuple(s.name for s in self.states)
            + tuple(a.name for a in self.assigned)
        )


def ion_field(ion: str, name: str) -> str:
    """The ion mechanism's field that an NMODL ion variable names (``ena`` -> ``e``)."""
    for field_name, candidate in (
        ("e", f"e{ion}"),
        ("ci", f"{ion}i"),
        ("co", f"{ion}o"),
        ("i", f"i{ion}"),
        ("didv", f"di{ion}_dv_"),
    ):
        if name == candidate:
            return field_name
    raise NmodlError(f"{name} is not a variable of the {ion} ion")


# ----------------------------------------------------------------------------- helpers
def _evaluate(expression: ir.Expr, constants: dict[str, float]) -> float | None:
    """The value of a constant expression (numbers, constants, + - * /), or None."""
    if isinstance(expression, ir.Num):
        return expression.value
    if isinstance(expression, ir.Var) and expression.index is None:
        return constants.get(expression.name)
    if isinstance(expression, ir.Unary) and expression.op == "-":
        value = _evaluate(expression.operand, constants)
        return None if value is None else -value
    if isinstance(expression, ir.Binary) and expression.op in "+-*/":
        left = _evaluate(expression.left, constants)
        right = _evaluate(expression.right, constants)
        if left is None or right is None:
            return None
        if expression.op == "+":
            return left + right
        if expression.op == "-":
            return left - right
        if expression.op == "*":
            return left * right
        return left / right if right else None
    return None


def _element(name: str, index: int) -> str:
    return f"{name}[{index}]"


class _Unroller:
    """Unrolls FROM loops with constant bounds and resolves constant array indices, so
    every array element becomes a scalar variable ``name[k]``."""

    def __init__(self, mod: ModFile, arrays: dict[str, int]) -> None:
        self.mod = mod
        self.arrays = arrays
        self.constants = dict(mod.constants)
        self.constants.update({k: float(v) for k, v in mod.defines.items()})

    def expression(self, node: ir.Expr, bound: dict[str, float]) -> ir.Expr:
        if isinstance(node, ir.Var):
            if node.index is None:
                if node.name in bound:
                    return ir.Num(bound[node.name])
                return node
            index = _evaluate(self.expression(node.index, bound), {**self.constants, **bound})
            if index is None or index != int(index):
                raise NmodlError(
                    f"{self.mod.source.path}: the index of {node.name}[...] is not a constant; "
                    "only constant indices (or FROM loops with constant bounds) are supported"
                )
            size = self.arrays.get(node.name, 0)
            if not 0 <= index < size:
                raise NmodlError(
                    f"{self.mod.source.path}: {node.name}[{int(index)}] is outside its "
                    f"declared size {size}"
                )
            return ir.Var(_element(node.name, int(index)))
        if isinstance(node, ir.Unary):
            return ir.Unary(node.op, self.expression(node.operand, bound))
        if isinstance(node, ir.Binary):
            return ir.Binary(
                node.op, self.expression(node.left, bound), self.expression(node.right, bound)
            )
        if isinstance(node, ir.Call):
            return ir.Call(node.name, tuple(self.expression(a, bound) for a in node.args))
        return node

    def statements(self, body, bound: dict[str, float]) -> tuple[ir.Statement, ...]:
        out: list[ir.Statement] = []
        for statement in body:
            out.extend(self.statement(statement, bound))
        return tuple(out)

    def statement(self, node: ir.Statement, bound) -> list[ir.Statement]:
        e = self.expression
        if isinstance(node, ir.For):
            constants = {**self.constants, **bound}
            start = _evaluate(self.expression(node.start, bound), constants)
            stop = _evaluate(self.expression(node.stop, bound), constants)
            if start is None or stop is None:
                raise NmodlError(f"{self.mod.where(node.line)}: FROM loop bounds must be constants")
            out = []
            for value in range(int(start), int(stop) + 1):
                out += self.statements(node.body, {**bound, node.variable: float(value)})
            return out
        if isinstance(node, ir.Assign):
            target = e(node.target, bound)
            assert isinstance(target, ir.Var)
            return [ir.Assign(target, e(node.value, bound), node.line)]
        if isinstance(node, ir.CallStatement):
            call = e(node.call, bound)
            assert isinstance(call, ir.Call)
            return [ir.CallStatement(call, node.line)]
        if isinstance(node, ir.If):
            return [
                ir.If(
                    e(node.condition, bound),
                    self.statements(node.then, bound),
                    self.statements(node.orelse, bound),
                    node.line,
                )
            ]
        if isinstance(node, ir.While):
            return [
                ir.While(e(node.condition, bound), self.statements(node.body, bound), node.line)
            ]
        if isinstance(node, ir.DiffEq):
            state = e(node.state, bound)
            assert isinstance(state, ir.Var)
            return [ir.DiffEq(state, e(node.rhs, bound), node.line)]
        if isinstance(node, ir.Reaction):

            def side(terms):
                return tuple((k, e(v, bound)) for k, v in terms)

            return [
                ir.Reaction(
                    side(node.left),
                    node.operator,
                    side(node.right),
                    e(node.forward, bound),
                    None if node.backward is None else e(node.backward, bound),
                    node.line,
                )
            ]
        if isinstance(node, ir.Conserve):
            return [
                ir.Conserve(
                    tuple((k, e(v, bound)) for k, v in node.terms), e(node.total, bound), node.line
                )
            ]
        if isinstance(node, ir.Compartment):
            if node.index:
                raise NmodlError(
                    f"{self.mod.where(node.line)}: indexed COMPARTMENT is not supported"
                )
            states = []
            for name in node.states:
                size = self.arrays.get(name, 0)
                states += [_element(name, k) for k in range(size)] if size else [name]
            return [ir.Compartment("", e(node.volume, bound), tuple(states), node.line)]
        if isinstance(node, ir.Table):
            return [
                ir.Table(
                    node.variables,
                    node.depend,
                    e(node.low, bound),
                    e(node.high, bound),
                    node.points,
                    node.line,
                )
            ]
        return [node]


# ----------------------------------------------------------------------------- analysis
@dataclass
class _Effects:
    """What a piece of code reads and writes among the mechanism's (non-local)
    variables: ``exposed`` are read before being written on some path."""

    exposed: set[str] = field(default_factory=set)
    must: set[str] = field(default_factory=set)
    may: set[str] = field(default_factory=set)


@dataclass
class _Callable:
    block: ir.Block
    body: tuple[ir.Statement, ...]
    local_names: set[str]
    tabled: ir.Table | None = None
    effects: _Effects = field(default_factory=_Effects)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


class _Mechanism:
    """The analysis of one file."""

    def __init__(self, mod: ModFile) -> None:
        self.mod = mod
        self.path = mod.source.path
        self.problems: list[tuple[str, int, str]] = list(mod.unsupported)
        self.notes: list[str] = []
        self.global_copies: list[str] = []
        self._classify()
        self._unroller = _Unroller(mod, self.arrays)
        self.callables: dict[str, _Callable] = {}
        for name, block in mod.blocks.items():
            if block.kind in ("PROCEDURE", "FUNCTION"):
                self.callables[name] = self._callable(block)
        self._check_calls()
        self._function_effects()

    # ------------------------------------------------------------- classification
    def _classify(self) -> None:
        mod = self.mod
        point = mod.kind in ("point", "artificial")
        self.ion_names: dict[str, tuple[str, str]] = {}  # nmodl name -> (ion, field)
        self.ion_specs: list[IonSpec] = []
        for use in mod.ions:
            for name in use.read + use.write:
                try:
                    self.ion_names[name] = (use.name, ion_field(use.name, name))
                except NmodlError as error:
                    raise NmodlError(f"{self.path}: {error}") from None
            self.ion_specs.append(IonSpec(use.name, use.read, use.write, use.valence))
        self.ion_currents = [
            n for use in mod.ions for n in use.write if self.ion_names[n][1] == "i"
        ]
        self.ion_concentrations = [
            n for use in mod.ions for n in use.write if self.ion_names[n][1] in ("ci", "co")
        ]
        for use in mod.ions:
            for name in use.write:
                if self.ion_names[name][1] == "e":
                    self.problems.append(("USEION ... WRITE e" + use.name, 0, name))
        self.currents = tuple(self.ion_currents + list(mod.nonspecific) + list(mod.electrode))
        range_names = set(mod.range_names)
        global_names = set(mod.global_names)
        self.arrays: dict[str, int] = {}
        self.parameters: list[VariableSpec] = []
        self.globals: list[VariableSpec] = []
        self.kinds: dict[str, str] = {}
        for name in SIMULATION:
            self.kinds[name] = "simulation"
        self.kinds["v"] = "voltage"
        for name, (_ion, _field) in self.ion_names.items():
            self.kinds[name] = "ion"
        used_geometry = set()
        for name, declaration in mod.parameters.items():
            if name in ("v", "celsius", "dt", "t") or name in self.ion_names:
                continue  # declared in PARAMETER only to give units/defaults
            if name in GEOMETRY:
                self.kinds[name] = "geometry"
                used_geometry.add(name)
                continue
            default = 0.0 if declaration.default is None else declaration.default
            if declaration.size:
                self.problems.append(("PARAMETER array", 0, name))
                continue
            is_range = name in range_names or (point and name not in global_names)
            spec = VariableSpec(name, default, declaration.units)
            if is_range:
                self.parameters.append(spec)
                self.kinds[name] = "parameter"
            else:
                self.globals.append(spec)
                self.kinds[name] = "global"
        self.states: list[VariableSpec] = []
        for name, declaration in mod.states.items():
            if name in self.ion_names:
                continue  # an ion concentration written by this mechanism
            names = (
                [_element(name, k) for k in range(declaration.size)] if declaration.size else [name]
            )
            if declaration.size:
                self.arrays[name] = declaration.size
            for element in names:
                self.states.append(VariableSpec(element, 0.0, declaration.units))
                self.kinds[element] = "state"
        self.assigned_all: list[VariableSpec] = []
        for name, declaration in mod.assigned.items():
            if name in self.kinds or name in self.ion_names:
                continue
            if name in GEOMETRY:
                self.kinds[name] = "geometry"
                used_geometry.add(name)
                continue
            if name in self.currents and name not in self.ion_names:
                pass  # non-specific and electrode currents are assigned variables
            names = (
                [_element(name, k) for k in range(declaration.size)] if declaration.size else [name]
            )
            if declaration.size:
                self.arrays[name] = declaration.size
            for element in names:
                self.assigned_all.append(VariableSpec(element, 0.0, declaration.units))
                self.kinds[element] = "assigned"
        for name, size in mod.file_locals.items():
            names = [_element(name, k) for k in range(size)] if size else [name]
            if size:
                self.arrays[name] = size
            for element in names:
                self.assigned_all.append(VariableSpec(element, 0.0, ""))
                self.kinds[element] = "assigned"
        for name in mod.constants:
            self.kinds.setdefault(name, "constant")
        self.range_names = range_names
        self.global_names = global_names
        self.geometry = tuple(g for g in GEOMETRY if g in used_geometry)
        has_table = any(isinstance(s, ir.Table) for b in mod.blocks.values() for s in b.body)
        if has_table:
            self.globals.append(VariableSpec("usetable", 1.0, ""))
            self.kinds["usetable"] = "global"

    # ------------------------------------------------------------- callables
    def _callable(self, block: ir.Block) -> _Callable:
        local_names = set(block.arguments)
        if block.kind == "FUNCTION":
            local_names.add(block.name)
        body = []
        tabled = None
        for statement in block.body:
            if isinstance(statement, ir.Local):
                local_names.update(n for n, _ in statement.names)
                if any(size for _, size in statement.names):
                    self.problems.append(("LOCAL array", statement.line, block.name))
                continue
            if isinstance(statement, ir.Table):
                tabled = statement
                continue
            body.append(statement)
        body_t = self._unroller.statements(tuple(body), {})
        if tabled is not None:
            if len(block.arguments) != 1:
                self.problems.append(
                    (
                        "TABLE in a FUNCTION/PROCEDURE without exactly one argument",
                        tabled.line,
                        block.name,
                    )
                )
            tabled = self._unroller.statement(tabled, {})[0]
        return _Callable(block, body_t, local_names, tabled)

    def _check_calls(self) -> None:
        for callable_ in self.callables.values():
            self._check_body(callable_.body, callable_.block.name)

    def _check_body(self, body, where: str) -> None:
        for statement in ir.walk_statements(body):
            if isinstance(statement, ir.Unsupported):
                self.problems.append((statement.construct, statement.line, where))
            for expression in ir.walk_expressions(statement):
                if isinstance(expression, ir.Call):
                    name = expression.name
                    if name in UNSUPPORTED_CALLS:
                        self.problems.append(
                            (
                                UNSUPPORTED_CALLS[name],
                                statement.line or self.mod.source.line_of(rf"\b{name}\s*\("),
                                where,
                            )
                        )
                    elif (
                        name not in BUILTINS
                        and name not in self.callables
                        and name not in NO_EFFECT_CALLS
                        and name != "nrn_ghk"
                    ):
                        self.problems.append(
                            (
                                f"call of {name}() (not a FUNCTION or PROCEDURE of "
                                "this file, nor an NMODL built-in)",
                                self.mod.source.line_of(rf"\b{name}\s*\("),
                                where,
                            )
                        )

    def is_mechanism_variable(self, name: str) -> bool:
        return self.kinds.get(name) not in (None, "constant")

    # ------------------------------------------------------------- effects
    def _function_effects(self) -> None:
        order = self._call_order()
        for name in order:
            callable_ = self.callables[name]
            effects = self.effects(callable_.body, callable_.local_names)
            if callable_.tabled is not None:
                # The lookup branch writes the table variables; the other writes may
                # not happen, so every write passes its input through.
                effects.must = set(callable_.tabled.variables) & effects.must
                effects.exposed |= effects.may - effects.must
            callable_.effects = effects
            table_inputs = (
                (f"{name}__table", f"{name}__min", f"{name}__mfac") if callable_.tabled else ()
            )
            reads = sorted(effects.exposed | (effects.may - effects.must))
            if callable_.tabled is not None:
                reads = sorted(set(reads) | {"usetable"})
            callable_.inputs = tuple(reads) + table_inputs
            callable_.outputs = tuple(sorted(effects.may))

    def _call_order(self) -> list[str]:
        """Callables with callees first; recursion is reported."""
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, chain: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " -> ".join([*chain, name])
                raise NmodlError(f"{self.path}: recursive FUNCTION/PROCEDURE calls ({cycle})")
            state[name] = 1
            for statement in ir.walk_statements(self.callables[name].body):
                for expression in ir.walk_expressions(statement):
                    if isinstance(expression, ir.Call) and expression.name in self.callables:
                        visit(expression.name, [*chain, name])
            state[name] = 2
            order.append(name)

        for name in self.callables:
            visit(name, [])
        return order

    def call_inputs(self, name: str) -> tuple[str, ...]:
        return self.callables[name].inputs

    def effects(self, body, local_names: set[str]) -> _Effects:
        """Reads before writes, definite and possible writes of ``body`` among
        mechanism variables (names in ``local_names`` are the block's own)."""
        result = _Effects()
        defined: set[str] = set()
        self._effects_statements(body, local_names, defined, result)
        result.must = set(defined)
        return result

    def _read(self, expression: ir.Expr, local_names, defined: set[str], result: _Effects) -> None:
        for node in ir.walk_expressions(expression):
            if isinstance(node, ir.Var):
                name = node.name
                if name in local_names or not self.is_mechanism_variable(name):
                    continue
                if name not in defined:
                    result.exposed.add(name)
            elif isinstance(node, ir.Call) and node.name in self.callables:
                callee = self.callables[node.name]
                for name in callee.effects.exposed | (callee.effects.may - callee.effects.must):
                    if name not in defined:
                        result.exposed.add(name)
                if callee.tabled is not None and "usetable" not in defined:
                    result.exposed.add("usetable")
                result.may |= callee.effects.may
                defined |= callee.effects.must

    def _write(self, name: str, local_names, defined: set[str], result: _Effects) -> None:
        if name in local_names or not self.is_mechanism_variable(name):
            return
        defined.add(name)
        result.may.add(name)

    def _effects_statements(self, body, local_names, defined: set[str], result: _Effects) -> None:
        for statement in body:
            if isinstance(statement, ir.Assign):
                self._read(statement.value, local_names, defined, result)
                self._write(statement.target.name, local_names, defined, result)
            elif isinstance(statement, ir.CallStatement):
                self._read(statement.call, local_names, defined, result)
            elif isinstance(statement, ir.If):
                self._read(statement.condition, local_names, defined, result)
                then_defined = set(defined)
                self._effects_statements(statement.then, local_names, then_defined, result)
                else_defined = set(defined)
                self._effects_statements(statement.orelse, local_names, else_defined, result)
                defined.clear()
                defined |= then_defined & else_defined
            elif isinstance(statement, ir.While):
                self._read(statement.condition, local_names, defined, result)
                inner = set(defined)
                self._effects_statements(statement.body, local_names, inner, result)
                # the body may run zero times; a second pass sees loop-carried reads
                self._effects_statements(statement.body, local_names, set(inner), result)
            elif isinstance(statement, ir.DiffEq):
                self._read(statement.rhs, local_names, defined, result)
                self._read(statement.state, local_names, defined, result)
                self._write(statement.state.name, local_names, defined, result)
            elif isinstance(statement, ir.Local):
                local_names |= {n for n, _ in statement.names}
            elif isinstance(statement, OdeSystem):
                inner = set(local_names) | set(statement.local_names)
                for name in statement.states:
                    self._read(ir.Var(name), inner, defined, result)
                self._effects_statements(statement.body, inner, defined, result)
                for expression in statement.expressions():
                    self._read(expression, inner, defined, result)
                for name in statement.states:
                    self._write(name, inner, defined, result)


# ----------------------------------------------------------------------------- printing
def _identifier(name: str) -> str:
    """A Python identifier for an NMODL variable (``ca[3]`` -> ``x_ca__3``)."""
    return "x_" + name.replace("[", "__").replace("]", "")


def _number(value: float) -> str:
    if math.isinf(value):
        return "math.inf" if value > 0 else "(-math.inf)"
    if math.isnan(value):
        return "math.nan"
    text = repr(float(value))
    return f"({text})" if text.startswith("-") else text


class _Printer:
    """Python source for IR, with names resolved against the current scope."""

    def __init__(self, mechanism: _Mechanism) -> None:
        self.mechanism = mechanism
        self.lines: list[str] = []
        self.local_names: set[str] = set()
        self.temporary = 0

    def name(self, name: str) -> str:
        if name in self.local_names:
            return "l_" + name
        kind = self.mechanism.kinds.get(name)
        if kind == "constant":
            return _number(self.mechanism.mod.constants[name])
        if kind is None:
            raise NmodlError(f"{self.mechanism.path}: unknown variable {name!r}")
        return _identifier(name)

    def expression(self, node: ir.Expr) -> str:
        if isinstance(node, ir.Num):
            return _number(node.value)
        if isinstance(node, ir.Var):
            if node.index is not None:
                raise NmodlError(f"{self.mechanism.path}: unexpected array index on {node.name}")
            if node.name == "flag" and node.name not in self.local_names:
                return "0.0"
            return self.name(node.name)
        if isinstance(node, ir.Unary):
            operand = self.expression(node.operand)
            return f"(-{operand})" if node.op == "-" else f"(not {operand})"
        if isinstance(node, ir.Binary):
            left = self.expression(node.left)
            right = self.expression(node.right)
            if node.op == "^":
                return f"power({left}, {right})"
            op = {"&&": "and", "||": "or"}.get(node.op, node.op)
            if op in ("and", "or"):
                return f"(bool({left}) {op} bool({right}))"
            return f"({left} {op} {right})"
        if isinstance(node, ir.Call):
            return self.call(node)
        raise NmodlError(f"{self.mechanism.path}: cannot print {node!r}")

    def call(self, node: ir.Call) -> str:
        name = node.name
        args = [self.expression(a) for a in node.args]
        if name in BUILTINS:
            return f"{BUILTINS[name]}({', '.join(args)})"
        if name == "nrn_ghk" and name not in self.mechanism.callables:
            return f"nrn_ghk({', '.join(args)}, x_celsius)"
        if name in NO_EFFECT_CALLS:
            return "0.0"
        callable_ = self.mechanism.callables.get(name)
        if callable_ is None:
            raise NmodlError(f"{self.mechanism.path}: unknown function {name}")
        inputs = [self.name_or_table(n) for n in callable_.inputs]
        call = f"f_{name}({', '.join(args + inputs)})"
        if callable_.block.kind == "PROCEDURE" or callable_.outputs:
            # Hoisted: the call's writes happen before the statement that uses it.
            temporary = f"t_{self.temporary}"
            self.temporary += 1
            targets = [temporary] + [self.name(n) for n in callable_.outputs]
            self.emit(f"{', '.join(targets)} = {call}")
            return temporary
        return call

    def name_or_table(self, name: str) -> str:
        if "__" in name and name.split("__")[-1] in ("table", "min", "mfac"):
            return "tbl_" + name
        return self.name(name)

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    indent = "    "

    def statements(self, body) -> None:
        for statement in body:
            self.statement(statement)

    def block(self, body) -> None:
        saved = self.indent
        self.indent = saved + "    "
        start = len(self.lines)
        self.statements(body)
        if len(self.lines) == start:
            self.emit("pass")
        self.indent = saved

    def statement(self, node: ir.Statement) -> None:
        if isinstance(node, ir.Assign):
            value = self.expression(node.value)
            self.emit(f"{self.name(node.target.name)} = {value}")
        elif isinstance(node, ir.CallStatement):
            text = self.expression(node.call)
            if not text.startswith("t_") and text != "0.0":
                self.emit(f"_ = {text}")
        elif isinstance(node, ir.If):
            condition = self.expression(node.condition)
            self.emit(f"if {condition}:")
            self.block(node.then)
            if node.orelse:
                self.emit("else:")
                self.block(node.orelse)
        elif isinstance(node, ir.While):
            # the condition is evaluated before every pass, as in C
            self.emit("while True:")
            saved = self.indent
            self.indent = saved + "    "
            condition = self.expression(node.condition)
            self.emit(f"if not ({condition}):")
            self.emit("    break")
            self.indent = saved
            self.block(node.body)
        elif isinstance(node, ir.Local):
            for name, _size in node.names:
                self.local_names.add(name)
                self.emit(f"l_{name} = 0.0")
        elif isinstance(node, OdeSystem):
            emit_system(self, node)
        elif isinstance(node, (ir.Table, ir.Conductance)):
            pass  # handled by the callers
        elif isinstance(node, ir.DiffEq):
            raise NmodlError(
                f"{self.mechanism.mod.where(node.line)}: a derivative outside a "
                "SOLVEd DERIVATIVE block"
            )
        elif isinstance(node, ir.Solve):
            raise NmodlError(
                f"{self.mechanism.mod.where(node.line)}: SOLVE is only supported "
                "in BREAKPOINT and INITIAL"
            )
        else:
            raise NmodlError(
                f"{self.mechanism.mod.where(getattr(node, 'line', 0))}: "
                f"{type(node).__name__} is not supported here"
            )


# ----------------------------------------------------------------------------- generation
class _Generator:
    def __init__(self, mechanism: _Mechanism, digest: str) -> None:
        self.m = mechanism
        self.mod = mechanism.mod
        self.digest = digest
        self.out: list[str] = []
        self.phase_specs: dict[str, PhaseSpec] = {}
        self.tables: list[TableSpec] = []

    # ------------------------------------------------------------- header
    def run(self) -> tuple[str, dict[str, PhaseSpec]]:
        self.out += [
            f'"""Generated by dhs.engine.nmodl (generator {GENERATOR_VERSION}) from',
            f"{self.m.path} (sha256 {self.digest}). Do not edit: it is rebuilt from the file.",
            '"""',
            "",
            "import math  # noqa: F401",
            "",
            "from dhs.engine.nmodl.runtime import *  # noqa: F403",
            "",
        ]
        for name in self.m._call_order():
            self.callable(self.m.callables[name])
        self.phases()
        return "\n".join(self.out) + "\n", self.phase_specs

    def callable(self, callable_: _Callable) -> None:
        block = callable_.block
        name = block.name
        printer = _Printer(self.m)
        printer.local_names = set(callable_.local_names)
        arguments = ["l_" + a for a in block.arguments]
        inputs = [
            printer.name_or_table(n) if "__" in n else _identifier(n) for n in callable_.inputs
        ]
        outputs = [_identifier(n) for n in callable_.outputs]
        exact = f"f_{name}" if callable_.tabled is None else f"exact_{name}"
        exact_inputs = [i for i in inputs if not i.startswith("tbl_") and i != "x_usetable"]
        if callable_.tabled is not None:
            exact_inputs = [i for i in inputs if not i.startswith("tbl_")]
        self.out.append("@jit")
        self.out.append(f"def {exact}({', '.join(arguments + exact_inputs)}):")
        for local in sorted(callable_.local_names - set(block.arguments)):
            printer.emit(f"l_{local} = 0.0")
        printer.statements(callable_.body)
        returns = ([f"l_{name}"] if block.kind == "FUNCTION" else []) + outputs
        if block.kind == "PROCEDURE":
            returns = ["0.0", *outputs]
        printer.emit(f"return {self._tuple(returns)}")
        self.out += printer.lines
        self.out.append("")
        if callable_.tabled is not None:
            self.table_functions(callable_, arguments, exact_inputs, inputs, outputs)

    @staticmethod
    def _tuple(items: list[str]) -> str:
        if len(items) == 1:
            return items[0]
        return "(" + ", ".join(items) + ")"

    def table_functions(self, callable_: _Callable, arguments, exact_inputs, inputs, outputs):
        block = callable_.block
        name = block.name
        table = callable_.tabled
        variables = (block.name,) if block.kind == "FUNCTION" else table.variables
        m = self.m
        for variable in table.variables:
            if m.kinds.get(variable) not in ("assigned", "global") and block.kind == "PROCEDURE":
                m.problems.append(
                    (f"TABLE variable {variable} that is not ASSIGNED", table.line, name)
                )
        depends = callable_.effects.exposed - {"usetable", "celsius"} - set(table.depend)
        bad = sorted(
            d
            for d in depends
            if m.kinds.get(d) in ("parameter", "state", "assigned", "ion", "voltage", "geometry")
        )
        if bad:
            m.problems.append(
                (
                    f"TABLE in {name} reads the per-instance variable(s) {', '.join(bad)}, "
                    "which a table shared by all instances cannot depend on",
                    table.line,
                    name,
                )
            )
        printer = _Printer(m)
        low = printer.expression(table.low)
        high = printer.expression(table.high)
        n = table.points
        # the table: built on the host at the start of a run (nocmodl's _check_<name>)
        build_inputs = [i for i in exact_inputs if i != "l_" + block.arguments[0]]
        self.tables.append(
            TableSpec(
                name, variables, table.points, tuple(i.removeprefix("x_") for i in build_inputs)
            )
        )
        self.out.append("@jit")
        self.out.append(
            f"def build_{name}(out, {', '.join(build_inputs)}):"
            if build_inputs
            else f"def build_{name}(out):"
        )
        self.out.append(f"    tmin = {low}")
        self.out.append(f"    tmax = {high}")
        self.out.append(f"    dx = (tmax - tmin) / {float(n)!r}")
        self.out.append("    mfac = 1.0 / dx")
        self.out.append("    x = tmin")
        self.out.append(f"    for i in range({n + 1}):")
        # placeholders for inputs written by the exact function
        call_inputs = ", ".join(["x", *exact_inputs])
        exact_outputs = ([f"r_{name}"] if block.kind == "FUNCTION" else ["r_"]) + outputs
        self.out.append(
            f"        {', '.join(exact_outputs)} = exact_{name}({call_inputs})"
            if len(exact_outputs) > 1
            else f"        {exact_outputs[0]} = exact_{name}({call_inputs})"
        )
        for k, variable in enumerate(variables):
            value = f"r_{name}" if block.kind == "FUNCTION" else _identifier(variable)
            self.out.append(f"        out[{k}, i] = {value}")
        self.out.append("        x += dx")
        self.out.append("    return tmin, mfac")
        self.out.append("")
        # the lookup (nocmodl's _n_<name>)
        self.out.append("@jit")
        self.out.append(f"def f_{name}({', '.join(arguments + inputs)}):")
        argument = arguments[0]
        body = [
            "if x_usetable == 0.0:",
            f"    return exact_{name}({', '.join(arguments + exact_inputs)})",
            f"xi = tbl_{name}__mfac * ({argument} - tbl_{name}__min)",
        ]
        table_name = f"tbl_{name}__table"

        def values(index_expr: str | None, nan: bool = False) -> list[str]:
            result = []
            for k, variable in enumerate(variables):
                if nan:
                    value = "xi"
                elif index_expr is None:
                    value = None
                else:
                    value = f"{table_name}[{k}, {index_expr}]"
                target = f"r_{k}"
                result.append((target, value, variable))
            return result

        def assemble(pairs) -> list[str]:
            lines = [f"{t} = {v}" for t, v, _ in pairs]
            ret = []
            if block.kind == "FUNCTION":
                ret = [pairs[0][0]]
            else:
                ret = ["0.0"]
            by_variable = {var: t for t, _, var in pairs}
            for out in outputs:
                variable = out[2:]
                ret.append(by_variable.get(variable, out))
            return [*lines, f"return {self._tuple(ret)}"]

        body.append("if math.isnan(xi):")
        body += ["    " + line for line in assemble(values("", nan=True))]
        body.append("if xi <= 0.0:")
        body += ["    " + line for line in assemble(values("0"))]
        body.append(f"if xi >= {float(n)!r}:")
        body += ["    " + line for line in assemble(values(str(n)))]
        body.append("i = int(xi)")
        body.append("theta = xi - float(i)")
        interpolated = []
        for k, variable in enumerate(variables):
            if block.kind == "FUNCTION":
                # _t[_i] + (_xi - (double)_i)*(_t[_i+1] - _t[_i])
                value = (
                    f"{table_name}[{k}, i] + (xi - float(i)) * "
                    f"({table_name}[{k}, i + 1] - {table_name}[{k}, i])"
                )
            else:
                value = (
                    f"{table_name}[{k}, i] + theta * "
                    f"({table_name}[{k}, i + 1] - {table_name}[{k}, i])"
                )
            interpolated.append((f"r_{k}", value, variable))
        body += assemble(interpolated)
        self.out += ["    " + line for line in body]
        self.out.append("")

    # ------------------------------------------------------------- phases
    def phases(self) -> None:
        m = self.m
        mod = self.mod
        breakpoint_body: list[ir.Statement] = []
        solves: list[ir.Solve] = []
        self.conductance_hints: list[ir.Conductance] = []
        breakpoint_locals: set[str] = set()
        if mod.breakpoint is not None:
            for statement in mod.breakpoint.body:
                if isinstance(statement, ir.Solve):
                    solves.append(statement)
                elif isinstance(statement, ir.Conductance):
                    self.conductance_hints.append(statement)
                else:
                    if isinstance(statement, ir.Local):
                        breakpoint_locals |= {n for n, _ in statement.names}
                    breakpoint_body.append(statement)
        breakpoint_body_t = m._unroller.statements(tuple(breakpoint_body), {})
        m._check_body(breakpoint_body_t, "BREAKPOINT")
        initial_body: tuple[ir.Statement, ...] = ()
        initial_locals: set[str] = set()
        if mod.initial is not None:
            initial_body = self.initial_solves(m._unroller.statements(mod.initial.body, {}))
            initial_locals = {
                n for s in initial_body if isinstance(s, ir.Local) for n, _ in s.names
            }
            m._check_body(initial_body, "INITIAL")
        state_body = self.state_statements(solves)
        net_body: tuple[ir.Statement, ...] = ()
        net_locals: set[str] = set()
        if mod.net_receive is not None:
            net_body = m._unroller.statements(mod.net_receive.body, {})
            net_locals = set(mod.net_receive.arguments) | {
                n for s in net_body if isinstance(s, ir.Local) for n, _ in s.names
            }
            m._check_body(net_body, "NET_RECEIVE")
            for statement in ir.walk_statements(net_body):
                if (
                    isinstance(statement, ir.Assign)
                    and statement.target.name in mod.net_receive.arguments
                ):
                    m.problems.append(
                        (
                            f"NET_RECEIVE assigns its argument {statement.target.name} "
                            "(per-connection state)",
                            statement.line,
                            "NET_RECEIVE",
                        )
                    )
        state_body, breakpoint_body_t, initial_body = self.hoist_invariants(
            state_body, breakpoint_body_t, breakpoint_locals, net_body, net_locals, initial_body
        )
        # ----- which assigned variables need storage
        effects = {
            "initial": m.effects(self.initial_prologue() + initial_body, set(initial_locals)),
            "current": m.effects(breakpoint_body_t, set(breakpoint_locals)),
            "state": m.effects(state_body, set()),
            "net_receive": m.effects(net_body, set(net_locals)),
        }
        written = set().union(*(e.may for e in effects.values()))
        exposed = set().union(*(e.exposed for e in effects.values()))
        required = []
        optional = []
        for spec in m.assigned_all:
            name = spec.name
            if name in exposed:
                required.append(spec)
            elif name in written and (name.split("[")[0] in m.range_names or name in m.currents):
                optional.append(spec)
        self.assigned = required + optional
        self.optional = tuple(s.name for s in optional)
        assigned_names = {s.name for s in self.assigned}
        for spec in m.assigned_all:
            if spec.name not in assigned_names:
                m.kinds[spec.name] = "local"
        # written globals become per-instance copies
        for spec in list(m.globals):
            if spec.name in written and spec.name != "usetable":
                m.globals.remove(spec)
                m.parameters.append(spec)
                m.global_copies.append(spec.name)
                m.kinds[spec.name] = "parameter"
                m.notes.append(
                    f"the GLOBAL {spec.name} is assigned in a block; each instance "
                    "keeps its own copy"
                )
        self.instance = (
            [p.name for p in m.parameters]
            + [s.name for s in m.states]
            + [a.name for a in self.assigned]
        )
        self.phase("initial", self.initial_prologue() + initial_body, initial_locals, effects)
        if mod.breakpoint is not None and (m.currents or breakpoint_body_t):
            self.current_phase(breakpoint_body_t, breakpoint_locals, effects["current"])
        if state_body:
            self.phase("state", state_body, set(), effects)
        if mod.net_receive is not None:
            self.phase(
                "net_receive", net_body, net_locals, effects, arguments=mod.net_receive.arguments
            )

    def hoist_invariants(
        self, state_body, current_body, current_locals, net_body, net_locals, initial_body
    ):
        """The step phases with their run-invariant values (:mod:`.hoist`) read from
        per-instance variables that INITIAL's end computes."""
        m = self.m
        step_written: set[str] = set()
        for body, local_names in (
            (state_body, set()),
            (current_body, set(current_locals)),
            (net_body, set(net_locals)),
        ):
            step_written |= m.effects(body, set(local_names)).may
        fixed = {p.name for p in m.parameters} | {g.name for g in m.globals}
        fixed |= set(m.geometry) | {"dt", "celsius"}
        invariant = fixed - step_written  # hoist() drops names a LOCAL shadows
        taken = set(m.kinds) | set(m.callables) | set(current_locals) | set(net_locals)
        bodies, hoisted = hoist(
            {"state": state_body, "current": current_body}, invariant, set(BUILTINS), taken
        )
        for assignment in hoisted.assignments():
            m.assigned_all.append(VariableSpec(assignment.target.name, 0.0, ""))
            m.kinds[assignment.target.name] = "assigned"
        return bodies["state"], bodies["current"], tuple(initial_body) + hoisted.assignments()

    def initial_prologue(self) -> tuple[ir.Statement, ...]:
        """nocmodl's initmodel: every state (but ion concentrations) to its ``name0``."""
        return tuple(ir.Assign(ir.Var(s.name), ir.Num(0.0)) for s in self.m.states)

    def state_statements(self, solves: list[ir.Solve]) -> tuple[ir.Statement, ...]:
        m = self.m
        body: list[ir.Statement] = []
        for solve in solves:
            block = self.mod.blocks.get(solve.block)
            if block is None:
                raise NmodlError(
                    f"{self.mod.where(solve.line)}: SOLVE {solve.block}: no such block"
                )
            if block.kind == "DERIVATIVE":
                statements = m._unroller.statements(block.body, {})
                m._check_body(statements, block.name)
                method = solve.method
                if solve.steadystate:
                    m.problems.append((f"SOLVE {block.name} STEADYSTATE", solve.line, block.name))
                    continue
                if method == "cnexp":
                    try:
                        body += self.cnexp(statements)
                        continue
                    except NotLinear:
                        m.notes.append(
                            f"{block.name}: not linear in its states; "
                            "derivimplicit is used, as nocmodl does"
                        )
                        method = "derivimplicit"
                if method in ("derivimplicit", "euler"):
                    body.append(
                        derivative_system(method, block, statements, self._is_state, self.mod.where)
                    )
                    continue
                m.problems.append(
                    (
                        f"METHOD {solve.method or '(none)'} of a DERIVATIVE block",
                        solve.line,
                        block.name,
                    )
                )
            elif block.kind == "KINETIC":
                if solve.method != "sparse" or solve.steadystate:
                    kind = "STEADYSTATE" if solve.steadystate else "METHOD"
                    m.problems.append(
                        (f"KINETIC block with {kind} {solve.method}", solve.line, block.name)
                    )
                    continue
                statements = m._unroller.statements(block.body, {})
                m._check_body(statements, block.name)
                body.append(kinetic_system(block, statements, self._is_state, self.mod.where))
            elif block.kind == "PROCEDURE":
                body.append(ir.CallStatement(ir.Call(block.name, ()), solve.line))
            else:
                m.problems.append((f"SOLVE of a {block.kind} block", solve.line, block.name))
        return tuple(body)

    def initial_solves(self, body) -> tuple[ir.Statement, ...]:
        """INITIAL's ``SOLVE kinetic STEADYSTATE sparse`` as NEURON's ``_ss_sparse``;
        any other SOLVE there is reported."""
        out: list[ir.Statement] = []
        for statement in body:
            if not isinstance(statement, ir.Solve):
                out.append(statement)
                continue
            block = self.mod.blocks.get(statement.block)
            if (
                block is not None
                and block.kind == "KINETIC"
                and statement.steadystate
                and statement.method == "sparse"
            ):
                statements = self.m._unroller.statements(block.body, {})
                self.m._check_body(statements, block.name)
                system = kinetic_system(block, statements, self._is_state, self.mod.where)
                out.append(dataclasses.replace(system, steady=True))
                continue
            kind = "STEADYSTATE" if statement.steadystate else "METHOD"
            self.m.problems.append(
                (
                    f"SOLVE {statement.block} {kind} {statement.method} in INITIAL",
                    statement.line,
                    "INITIAL",
                )
            )
        return tuple(out)

    def _is_state(self, name: str) -> bool:
        return self.m.kinds.get(name) == "state" or (
            self.m.kinds.get(name) == "ion" and name in self.mod.states
        )

    def cnexp(self, statements) -> list[ir.Statement]:
        out: list[ir.Statement] = []
        locals_: set[str] = set()
        for statement in statements:
            if isinstance(statement, ir.DiffEq):
                if statement.state.name not in self.m.kinds or self.m.kinds[
                    statement.state.name
                ] not in ("state", "ion"):
                    raise NmodlError(
                        f"{self.mod.where(statement.line)}: {statement.state.name}' of a "
                        "variable that is not a STATE"
                    )
                out.append(cnexp_update(statement.state, statement.rhs, statement.line))
            else:
                if isinstance(statement, ir.Local):
                    locals_ |= {n for n, _ in statement.names}
                out.append(statement)
        return out

    def _signature(
        self,
        phase: str,
        effects: _Effects,
        extras=(),
        ion_outputs=(),
        arguments: tuple[str, ...] = (),
    ) -> tuple[list[str], PhaseSpec]:
        m = self.m
        globals_ = [g.name for g in m.globals]
        tables = [f"{t.function}__{part}" for t in self.tables for part in ("table", "min", "mfac")]
        ion_inputs = []
        # nocmodl reads every READ ion variable and the written concentrations
        for use in self.mod.ions:
            for name in use.read + tuple(n for n in use.write if m.ion_names[n][1] in ("ci", "co")):
                if name in effects.exposed or name in effects.may:
                    if (use.name, m.ion_names[name][1]) not in ion_inputs:
                        ion_inputs.append((use.name, m.ion_names[name][1]))
        instance_inputs = [n for n in self.instance if n in effects.exposed or n in effects.may]
        instance_outputs = [n for n in self.instance if n in effects.may]
        spec = PhaseSpec(
            phase,
            tuple(ion_inputs),
            tuple(instance_inputs),
            tuple(extras),
            tuple(ion_outputs),
            tuple(instance_outputs),
        )
        parameters = (
            ["v_node", "x_t", "x_dt", "x_celsius"]
            + [_identifier(g) for g in globals_]
            + ["tbl_" + t for t in tables]
            + [_identifier(g) for g in m.geometry]
            + [_identifier(self._ion_name(ion, f)) for ion, f in ion_inputs]
            + [_identifier(n) for n in instance_inputs]
            + ["l_" + a for a in arguments]
        )
        return parameters, spec

    def _ion_name(self, ion: str, field_name: str) -> str:
        for name, (i, f) in self.m.ion_names.items():
            if i == ion and f == field_name:
                return name
        raise AssertionError((ion, field_name))

    def _locals(self, printer: _Printer, effects: _Effects, local_names: set[str]) -> None:
        """Initial values of mechanism variables the phase writes but takes no input for
        (nocmodl's block locals and computed variables)."""
        for name, kind in sorted(self.m.kinds.items()):
            if kind == "local":
                printer.emit(f"{_identifier(name)} = 0.0")
        for use in self.mod.ions:
            for name in use.write:
                if self.m.ion_names[name][1] == "i" and name not in effects.exposed:
                    printer.emit(f"{_identifier(name)} = 0.0")

    def phase(self, phase: str, body, local_names: set[str], all_effects, arguments=()) -> None:
        m = self.m
        effects = all_effects[phase]
        ion_outputs = []
        for use in self.mod.ions:
            for name in use.write:
                field_name = m.ion_names[name][1]
                if field_name in ("ci", "co") and name in effects.may:
                    ion_outputs.append((use.name, field_name))
        for use in self.mod.ions:
            for name in use.write:
                if m.ion_names[name][1] == "i" and name not in use.read and name in effects.exposed:
                    m.problems.append(
                        (
                            f"{phase} reads {name}, which the file only WRITEs (the value "
                            "its BREAKPOINT last computed is not stored)",
                            0,
                            phase,
                        )
                    )
        parameters, spec = self._signature(phase, effects, (), tuple(ion_outputs), arguments)
        self.phase_specs[phase] = spec
        printer = _Printer(m)
        printer.local_names = set(local_names)
        self.out.append("@jit")
        self.out.append(f"def {phase}({', '.join(parameters)}):")
        printer.emit("x_v = v_node")
        self._locals(printer, effects, local_names)
        for name in sorted(local_names - set(arguments)):
            printer.emit(f"l_{name} = 0.0")
        printer.statements(body)
        returns = [_identifier(self._ion_name(i, f)) for i, f in ion_outputs] + [
            _identifier(n) for n in spec.instance_outputs
        ]
        printer.emit(f"return {self._tuple(returns) if returns else '0.0'}")
        self.out += printer.lines
        self.out.append("")

    def current_phase(self, body, local_names: set[str], effects: _Effects) -> None:
        m = self.m
        ion_outputs = []
        for name in m.ion_currents:
            ion, _ = m.ion_names[name]
            ion_outputs += [(ion, "i"), (ion, "didv")]
        for use in self.mod.ions:
            for name in use.write:
                field_name = m.ion_names[name][1]
                if field_name in ("ci", "co") and name in effects.may:
                    ion_outputs.append((use.name, field_name))
        if self.conductance_hints:
            m.problems.append(("CONDUCTANCE hint", self.conductance_hints[0].line, "BREAKPOINT"))
        parameters, spec = self._signature("current", effects, ("rhs", "g"), tuple(ion_outputs))
        self.phase_specs["current"] = spec
        printer = _Printer(m)
        self.out.append("@jit")
        self.out.append(f"def current({', '.join(parameters)}):")
        self._locals(printer, effects, local_names)

        def evaluation(voltage: str, total: str) -> None:
            printer.local_names = set()
            printer.emit(f"x_v = {voltage}")
            for name in sorted(local_names):
                printer.emit(f"l_{name} = 0.0")
            printer.local_names = set(local_names)
            printer.statements(body)
            printer.emit(f"{total} = 0.0")
            for name in m.currents:
                printer.emit(f"{total} += {_identifier(name)}")

        evaluation("v_node + 0.001", "g_local")
        for name in m.ion_currents:
            printer.emit(f"d_{name} = {_identifier(name)}")
        evaluation("v_node", "rhs")
        outputs = []
        for name in m.ion_currents:
            printer.emit(f"didv_{name} = (d_{name} - {_identifier(name)}) / 0.001")
            outputs += [_identifier(name), f"didv_{name}"]
        printer.emit("g = (g_local - rhs) / 0.001")
        for ion, field_name in ion_outputs[2 * len(m.ion_currents) :]:
            outputs.append(_identifier(self._ion_name(ion, field_name)))
        returns = ["rhs", "g"] + outputs + [_identifier(n) for n in spec.instance_outputs]
        printer.emit(f"return {self._tuple(returns)}")
        self.out += printer.lines
        self.out.append("")


def translate(mod: ModFile, *, digest: str = "") -> Translation:
    """Translate a parsed file (see :func:`translate_file`)."""
    mechanism = _Mechanism(mod)
    generator = _Generator(mechanism, digest)
    source, phases = generator.run()
    problems = mechanism.problems
    if problems:
        lines = [
            f"  {construct} at {mod.where(line)}" + (f" ({detail})" if detail else "")
            for construct, line, detail in problems
        ]
        raise NmodlError(
            f"{mod.name} ({mod.source.path}) uses what the engine does not support:\n"
            + "\n".join(lines)
        )
    return Translation(
        name=mod.name,
        kind=mod.kind,
        digest=digest,
        source_path=mod.source.path,
        source_text=mod.source.text,
        parameters=tuple(mechanism.parameters),
        globals=tuple(mechanism.globals),
        states=tuple(mechanism.states),
        assigned=tuple(generator.assigned),
        optional=generator.optional,
        ions=tuple(mechanism.ion_specs),
        geometry=mechanism.geometry,
        tables=tuple(generator.tables),
        phases=phases,
        net_receive_arguments=mod.net_receive.arguments if mod.net_receive else (),
        electrode_current=bool(mod.electrode),
        currents=mechanism.currents,
        module_source=source,
        notes=mechanism.notes,
        global_copies=tuple(mechanism.global_copies),
    )


def source_digest(text: str) -> str:
    """The cache key of a file's text: its SHA-256 with the generator version and the
    runtime's digest."""
    key = f"{GENERATOR_VERSION}\0{runtime_digest()}\0{text}"
    return hashlib.sha256(key.encode()).hexdigest()


def translate_file(path=None, *, text: str | None = None) -> Translation:
    """Read and translate a ``.mod`` file.

    Raises
    ------
    NmodlError
        A syntax error (NMODL's message with file and line), or one message listing
        every construct the engine does not support, each with its file and line.
    """
    mod = read_mod(path, text=text)
    return translate(mod, digest=source_digest(mod.source.text))
