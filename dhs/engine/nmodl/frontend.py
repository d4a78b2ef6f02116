"""From NMODL's syntax tree (JSON) to a :class:`ModFile` of declarations and IR blocks.

Only the structure is read here; what the variables mean, and whether the engine can
run the file, is decided in :mod:`dhs.engine.nmodl.semantics`. Constructs the engine
does not run are recorded in :attr:`ModFile.unsupported` (with their lines) rather
than rejected at once, so that one error can list all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import ir
from .parse import NmodlError, Source, parse
from .units import factor_value

__all__ = ["Declaration", "IonUse", "ModFile", "mechanism_name", "read_mod"]


@dataclass(frozen=True)
class IonUse:
    """``USEION name READ ... WRITE ... VALENCE z``."""

    name: str
    read: tuple[str, ...]
    write: tuple[str, ...]
    valence: float | None


@dataclass(frozen=True)
class Declaration:
    """A PARAMETER, ASSIGNED or STATE variable (``size`` 0 for a scalar)."""

    name: str
    default: float | None = None
    units: str = ""
    size: int = 0


@dataclass
class ModFile:
    """What a ``.mod`` file declares and its blocks."""

    source: Source
    kind: str = "density"  # "density", "point" or "artificial"
    name: str = ""
    ions: list[IonUse] = field(default_factory=list)
    nonspecific: list[str] = field(default_factory=list)
    electrode: list[str] = field(default_factory=list)
    range_names: list[str] = field(default_factory=list)
    global_names: list[str] = field(default_factory=list)
    parameters: dict[str, Declaration] = field(default_factory=dict)
    assigned: dict[str, Declaration] = field(default_factory=dict)
    states: dict[str, Declaration] = field(default_factory=dict)
    constants: dict[str, float] = field(default_factory=dict)
    defines: dict[str, int] = field(default_factory=dict)
    file_locals: dict[str, int] = field(default_factory=dict)
    blocks: dict[str, ir.Block] = field(default_factory=dict)
    initial: ir.Block | None = None
    breakpoint: ir.Block | None = None
    net_receive: ir.Block | None = None
    unsupported: list[tuple[str, int, str]] = field(default_factory=list)

    def where(self, line: int) -> str:
        return self.source.where(line)


# --------------------------------------------------------------------------- json helpers
def _kind(node: dict) -> str:
    return next(iter(node))


def _children(node: dict) -> list:
    value = node[_kind(node)]
    return value if isinstance(value, list) else []


def _text(node: dict) -> str:
    """The text of a ``Name``/``String``/``Double``/... leaf chain."""
    while True:
        if "name" in node:
            return node["name"]
        children = _children(node)
        if not children:
            return ""
        node = children[0]


_BINARY = {"+", "-", "*", "/", "^", "<", ">", "<=", ">=", "==", "!=", "&&", "||"}


class _Reader:
    def __init__(self, source: Source, mod: ModFile) -> None:
        self.source = source
        self.mod = mod
        self._cursor = 0  # line where the current block starts, for locating statements

    # ------------------------------------------------------------- expressions
    def local_declaration(self, node: dict) -> tuple[str, int]:
        """``(name, size)`` of one ``LOCAL`` variable (size 0 for a scalar)."""
        parts = _children(node)
        if parts and _kind(parts[0]) == "IndexedName":  # LOCAL name[size]
            parts = _children(parts[0])
        size = int(self.number(parts[1])) if len(parts) > 1 else 0
        return _text(parts[0]), size

    def number(self, node: dict) -> float:
        kind = _kind(node)
        if kind == "Integer":
            children = _children(node)
            if children and _kind(children[0]) == "Name":
                name = _text(children[0])
                if name not in self.mod.defines:
                    raise NmodlError(f"{self.source.path}: {name} is not DEFINEd")
                return float(self.mod.defines[name])
            return float(_text(node))
        if kind in ("Double", "Float"):
            return float(_text(node))
        if kind == "DoubleUnit":
            return self.number(_children(node)[0])
        if kind == "UnaryExpression":
            op, operand = _children(node)
            value = self.number(operand)
            return -value if _text(op) == "-" else value
        if kind in ("WrappedExpression", "ParenExpression"):
            return self.number(_children(node)[0])
        raise NmodlError(f"{self.source.path}: expected a number, found {kind}")

    def expression(self, node: dict) -> ir.Expr:
        kind = _kind(node)
        children = _children(node)
        if kind in ("WrappedExpression", "ParenExpression"):
            return self.expression(children[0])
        if kind in ("Integer", "Double", "Float"):
            children_ = _children(node)
            if kind == "Integer" and children_ and _kind(children_[0]) == "Name":
                return ir.Num(self.number(node))  # a DEFINE
            return ir.Num(self.number(node), _text(node))
        if kind == "DoubleUnit":
            return self.expression(children[0])
        if kind == "VarName":
            return self.variable(children[0])
        if kind in ("Name", "IndexedName", "PrimeName"):
            return self.variable(node)
        if kind == "BinaryExpression":
            left, op, right = children
            operator = _text(op)
            if operator not in _BINARY:
                raise NmodlError(f"{self.source.path}: unexpected operator {operator!r}")
            return ir.Binary(operator, self.expression(left), self.expression(right))
        if kind == "UnaryExpression":
            op, operand = children
            return ir.Unary(_text(op), self.expression(operand))
        if kind == "FunctionCall":
            name = _text(children[0])
            return ir.Call(name, tuple(self.expression(a) for a in children[1:]))
        if kind == "Boolean":
            return ir.Num(1.0 if _text(node) in ("1", "true") else 0.0)
        if kind == "ReactVarName":  # inside CONSERVE / reactions only
            return self.variable(children[-1])
        raise NmodlError(f"{self.source.path}: unsupported expression {kind}")

    def variable(self, node: dict) -> ir.Var:
        kind = _kind(node)
        children = _children(node)
        if kind == "VarName":
            return self.variable(children[0])
        if kind == "Name":
            return ir.Var(_text(node))
        if kind == "IndexedName":
            return ir.Var(_text(children[0]), self.expression(children[1]))
        if kind == "PrimeName":
            return ir.Var(_text(children[0]))
        raise NmodlError(f"{self.source.path}: expected a variable, found {kind}")

    # ------------------------------------------------------------- statements
    def line(self, pattern: str) -> int:
        found = self.source.line_of(pattern, after=self._cursor)
        return found or self._cursor

    def block_statements(self, node: dict) -> tuple[ir.Statement, ...]:
        """The statements of a ``StatementBlock``."""
        statements: list[ir.Statement] = []
        for child in _children(node):
            statement = self.statement(child)
            if statement is not None:
                statements.append(statement)
        return tuple(statements)

    def statement(self, node: dict) -> ir.Statement | None:
        kind = _kind(node)
        children = _children(node)
        if kind in ("UnitState", "LineComment", "BlockComment", "MutexLock", "MutexUnlock"):
            return None
        if kind == "ExpressionStatement":
            inner = children[0]
            while _kind(inner) in ("WrappedExpression", "ParenExpression"):
                inner = _children(inner)[0]
            inner_kind = _kind(inner)
            if inner_kind == "BinaryExpression" and _text(_children(inner)[1]) == "=":
                target, _, value = _children(inner)
                target_var = self.variable(target)
                return ir.Assign(
                    target_var,
                    self.expression(value),
                    self.line(rf"\b{re.escape(target_var.name)}\b\s*(\[.*\])?\s*="),
                )
            if inner_kind == "DiffEqExpression":
                equation = _children(inner)[0]
                state, _, rhs = _children(equation)
                state_var = self.variable(state)
                return ir.DiffEq(
                    state_var,
                    self.expression(rhs),
                    self.line(rf"\b{re.escape(state_var.name)}\s*'"),
                )
            if inner_kind == "FunctionCall":
                call = self.expression(inner)
                assert isinstance(call, ir.Call)
                return ir.CallStatement(call, self.line(rf"\b{re.escape(call.name)}\s*\("))
            if inner_kind == "SolveBlock":
                return self.solve(inner)
            if inner_kind == "InitialBlock":  # inside NET_RECEIVE: per-connection init
                return ir.Unsupported("INITIAL block inside NET_RECEIVE", self.line(r"\bINITIAL\b"))
            if inner_kind == "ProtectStatement":
                return self.statement({"ExpressionStatement": _children(inner)})
            return ir.Unsupported(inner_kind, self._cursor)
        if kind == "ProtectStatement":
            return self.statement({"ExpressionStatement": children})
        if kind == "LocalListStatement":
            names = [self.local_declaration(local) for local in children]
            return ir.Local(tuple(names), self.line(r"\bLOCAL\b"))
        if kind == "IfStatement":
            return self.if_statement(children)
        if kind == "WhileStatement":
            condition, body = children
            return ir.While(
                self.expression(condition), self.block_statements(body), self.line(r"\bWHILE\b")
            )
        if kind == "FromStatement":
            name = _text(children[0])
            body = children[-1]
            bounds = children[1:-1]
            if len(bounds) == 3 and self.number(bounds[2]) != 1:
                return ir.Unsupported("FROM ... BY (a step other than 1)", self.line(r"\bFROM\b"))
            return ir.For(
                name,
                self.expression(bounds[0]),
                self.expression(bounds[1]),
                self.block_statements(body),
                self.line(r"\bFROM\b"),
            )
        if kind == "TableStatement":
            return self.table(children)
        if kind == "SolveBlock":
            return self.solve(node)
        if kind == "ConductanceHint":
            ion = _text(children[1]) if len(children) > 1 else ""
            return ir.Conductance(_text(children[0]), ion, self.line(r"\bCONDUCTANCE\b"))
        if kind == "ReactionStatement":
            return self.reaction(children)
        if kind == "Conserve":
            terms = self.reactants(children[0])
            return ir.Conserve(terms, self.expression(children[1]), self.line(r"\bCONSERVE\b"))
        if kind == "Compartment":
            parts = children
            index = ""
            if len(parts) >= 3 and _kind(parts[0]) == "Name" and _kind(parts[1]) != "Name":
                index = _text(parts[0])
                parts = parts[1:]
            volume = self.expression(parts[0])
            states = tuple(_text(p) for p in parts[1:])
            return ir.Compartment(index, volume, states, self.line(r"\bCOMPARTMENT\b"))
        if kind == "Verbatim":
            return ir.Unsupported("VERBATIM", self.line(r"\bVERBATIM\b"))
        if kind == "WatchStatement":
            return ir.Unsupported("WATCH", self.line(r"\bWATCH\b"))
        if kind == "LagStatement":
            return ir.Unsupported("LAG", self.line(r"\bLAG\b"))
        if kind == "ForNetcon":
            return ir.Unsupported("FOR_NETCONS", self.line(r"\bFOR_NETCONS\b"))
        if kind == "LonDiffuse":
            return ir.Unsupported(
                "LONGITUDINAL_DIFFUSION", self.line(r"\bLONGITUDINAL_DIFFUSION\b")
            )
        if kind == "StatementBlock":  # a bare { ... } block
            return ir.If(ir.Num(1.0), self.block_statements(node), (), self._cursor)
        return ir.Unsupported(kind, self._cursor)

    def if_statement(self, children: list) -> ir.If:
        line = self.line(r"\bif\b")
        condition = self.expression(children[0])
        then = self.block_statements(children[1])
        orelse: tuple[ir.Statement, ...] = ()
        rest = children[2:]
        # else-if chains nest into the else branch, last first
        tail: tuple[ir.Statement, ...] = ()
        for node in reversed(rest):
            kind = _kind(node)
            parts = _children(node)
            if kind == "ElseStatement":
                tail = self.block_statements(parts[0])
            elif kind == "ElseIfStatement":
                tail = (
                    ir.If(self.expression(parts[0]), self.block_statements(parts[1]), tail, line),
                )
        orelse = tail
        return ir.If(condition, then, orelse, line)

    def solve(self, node: dict) -> ir.Solve:
        children = _children(node)
        block = _text(children[0])
        method = _text(children[1]) if len(children) > 1 else ""
        line = self.line(rf"\bSOLVE\s+{re.escape(block)}\b")
        text = self.source.code_lines[line - 1] if line else ""
        steady = bool(re.search(rf"\bSOLVE\s+{re.escape(block)}\s+STEADYSTATE\b", text))
        return ir.Solve(block, method, steady, line)

    def table(self, children: list) -> ir.Table:
        line = self.line(r"\bTABLE\b")
        # The JSON lists names (table variables, then DEPEND variables) and then the
        # bounds; the split between the two name lists is read from the source.
        names = [_text(c) for c in children if _kind(c) == "Name"]
        bounds = [c for c in children if _kind(c) != "Name"]
        statement_text = " ".join(self.source.code_lines[line - 1 : line + 2]) if line else ""
        match = re.search(r"\bTABLE\b(.*?)\bFROM\b", statement_text)
        depend_count = 0
        if match and "DEPEND" in match.group(1):
            depend_text = match.group(1).split("DEPEND", 1)[1]
            depend_count = len(re.findall(r"[A-Za-z_]\w*", depend_text))
        split = len(names) - depend_count
        low, high, points = bounds[0], bounds[1], bounds[2]
        return ir.Table(
            tuple(names[:split]),
            tuple(names[split:]),
            self.expression(low),
            self.expression(high),
            int(self.number(points)),
            line,
        )

    def reactants(self, node: dict) -> tuple[tuple[int, ir.Var], ...]:
        kind = _kind(node)
        children = _children(node)
        if kind == "BinaryExpression":
            left, _, right = children
            return self.reactants(left) + self.reactants(right)
        if kind == "ReactVarName":
            coefficient = int(self.number(children[0])) if len(children) > 1 else 1
            return ((coefficient, self.variable(children[-1])),)
        if kind in ("WrappedExpression", "ParenExpression"):
            return self.reactants(children[0])
        raise NmodlError(f"{self.source.path}: unexpected reactant {kind}")

    def reaction(self, children: list) -> ir.Reaction:
        line = self.line(r"~")
        left = self.reactants(children[0])
        operator = _text(children[1])
        if operator == "<<":
            return ir.Reaction(left, operator, (), self.expression(children[2]), None, line)
        right = self.reactants(children[2])
        forward = self.expression(children[3])
        backward = self.expression(children[4]) if len(children) > 4 else None
        return ir.Reaction(left, operator, right, forward, backward, line)

    # ------------------------------------------------------------- blocks
    def begin(self, pattern: str) -> int:
        self._cursor = self.source.line_of(pattern) or 0
        return self._cursor


def _declarations(reader: _Reader, node: dict, with_default: bool) -> list[Declaration]:
    found = []
    for child in _children(node):
        kind = _kind(child)
        if kind not in ("ParamAssign", "AssignedDefinition"):
            continue
        parts = _children(child)
        name = _text(parts[0])
        default = None
        units = ""
        size = 0
        numbers = ("Integer", "Double", "Float", "DoubleUnit", "UnaryExpression")
        if kind == "AssignedDefinition":
            # ``name[size]``, ``name FROM a TO b`` or both: the AST lists the size and the
            # two limits as plain numbers, so their count tells them apart.
            values = [part for part in parts[1:] if _kind(part) in numbers]
            if len(values) % 2 == 1:
                size = int(reader.number(values[0]))
            for part in parts[1:]:
                if _kind(part) == "Unit":
                    units = _text(part)
            found.append(Declaration(name, default, units, size))
            continue
        for part in parts[1:]:
            part_kind = _kind(part)
            if part_kind == "Unit":
                units = _text(part)
            elif part_kind == "Limits":
                continue
            elif part_kind in numbers:
                if with_default and default is None:
                    default = reader.number(part)
                else:
                    size = int(reader.number(part))
        found.append(Declaration(name, default, units, size))
    return found


_NEURON_STATEMENTS = {
    "Pointer": "POINTER",
    "BbcorePointer": "BBCOREPOINTER",
    "External": "EXTERNAL",
    "RandomVarList": "RANDOM",
}


def _neuron_block(reader: _Reader, node: dict) -> None:
    mod = reader.mod
    statements = _children(_children(node)[0])
    for statement in statements:
        kind = _kind(statement)
        parts = _children(statement)
        if kind == "Suffix":
            keyword = _text(parts[0])
            mod.name = _text(parts[1])
            mod.kind = {
                "SUFFIX": "density",
                "POINT_PROCESS": "point",
                "ARTIFICIAL_CELL": "artificial",
            }.get(keyword, "density")
        elif kind == "Useion":
            name = _text(parts[0])
            read = tuple(_text(p) for p in parts if _kind(p) == "ReadIonVar")
            write = tuple(_text(p) for p in parts if _kind(p) == "WriteIonVar")
            valence = None
            for p in parts:
                if _kind(p) == "Valence":
                    valence = reader.number(_children(p)[1])
            mod.ions.append(IonUse(name, read, write, valence))
        elif kind == "Nonspecific":
            mod.nonspecific += [_text(p) for p in parts]
        elif kind == "ElectrodeCurrent":
            mod.electrode += [_text(p) for p in parts]
        elif kind == "Range":
            mod.range_names += [_text(p) for p in parts]
        elif kind == "Global":
            mod.global_names += [_text(p) for p in parts]
        elif kind in _NEURON_STATEMENTS:
            keyword = _NEURON_STATEMENTS[kind]
            names = ", ".join(_text(p) for p in parts)
            mod.unsupported.append((keyword, reader.source.line_of(rf"\b{keyword}\b"), names))
        # THREADSAFE, Model (TITLE) and comments change nothing here


def _block(reader: _Reader, kind: str, node: dict) -> ir.Block:
    children = _children(node)
    keyword = {
        "ProcedureBlock": "PROCEDURE",
        "FunctionBlock": "FUNCTION",
        "DerivativeBlock": "DERIVATIVE",
        "KineticBlock": "KINETIC",
        "LinearBlock": "LINEAR",
        "NonLinearBlock": "NONLINEAR",
        "DiscreteBlock": "DISCRETE",
    }[kind]
    name = _text(children[0])
    line = reader.begin(rf"\b{keyword}\s+{re.escape(name)}\b")
    arguments = tuple(_text(c) for c in children[1:] if _kind(c) == "Argument")
    body = next(c for c in children if _kind(c) == "StatementBlock")
    return ir.Block(keyword, name, arguments, reader.block_statements(body), line)


def read_mod(path=None, *, text: str | None = None) -> ModFile:
    """Parse a ``.mod`` file into a :class:`ModFile`.

    Raises
    ------
    NmodlError
        For a syntax error (NMODL's message, with file and line) or a file this
        reader cannot make sense of.
    """
    tree, source = parse(path, text=text)
    mod = ModFile(source)
    reader = _Reader(source, mod)
    program = tree["Program"]
    # DEFINEs, constants and units first: declarations use them.
    for node in program:
        kind = _kind(node)
        if kind == "Define":
            name, value = _children(node)
            mod.defines[_text(name)] = int(reader.number(value))
    for node in program:
        kind = _kind(node)
        children = _children(node)
        if kind == "UnitBlock":
            for unit in children:
                if _kind(unit) != "FactorDef":
                    continue
                parts = _children(unit)
                name = _text(parts[0])
                line = source.line_of(rf"\b{re.escape(name)}\s*=")
                units = [_text(p) for p in parts[1:] if _kind(p) == "Unit"]
                numbers = [p for p in parts[1:] if _kind(p) != "Unit"]
                if numbers:  # NAME = number (unit)
                    mod.constants[name] = reader.number(numbers[0])
                    continue
                value = factor_value(units[0], units[1] if len(units) > 1 else "1")
                if value is None:
                    mod.unsupported.append(
                        ("UNITS factor", line, f"{name} = ({') ('.join(units)})")
                    )
                    continue
                mod.constants[name] = value
        elif kind == "ConstantBlock":
            for statement in children:
                if _kind(statement) != "ConstantStatement":
                    continue
                for var in _children(statement):
                    parts = _children(var)
                    mod.constants[_text(parts[0])] = reader.number(parts[1])
    for node in program:
        kind = _kind(node)
        children = _children(node)
        if kind == "NeuronBlock":
            _neuron_block(reader, node)
        elif kind == "ParamBlock":
            for declaration in _declarations(reader, node, with_default=True):
                mod.parameters[declaration.name] = declaration
        elif kind == "AssignedBlock":
            for declaration in _declarations(reader, node, with_default=False):
                mod.assigned[declaration.name] = declaration
        elif kind == "StateBlock":
            for declaration in _declarations(reader, node, with_default=False):
                mod.states[declaration.name] = declaration
        elif kind == "LocalListStatement":  # LOCAL at file level
            for local in children:
                name, size = reader.local_declaration(local)
                mod.file_locals[name] = size
        elif kind in (
            "ProcedureBlock",
            "FunctionBlock",
            "DerivativeBlock",
            "KineticBlock",
            "LinearBlock",
            "NonLinearBlock",
            "DiscreteBlock",
        ):
            block = _block(reader, kind, node)
            if block.kind in ("LINEAR", "NONLINEAR", "DISCRETE"):
                mod.unsupported.append((f"{block.kind} block", block.line, block.name))
            mod.blocks[block.name] = block
        elif kind in ("InitialBlock", "BreakpointBlock"):
            keyword = "INITIAL" if kind == "InitialBlock" else "BREAKPOINT"
            line = reader.begin(rf"\b{keyword}\b")
            block = ir.Block(keyword, keyword, (), reader.block_statements(children[0]), line)
            if keyword == "INITIAL":
                mod.initial = block
            else:
                mod.breakpoint = block
        elif kind == "NetReceiveBlock":
            line = reader.begin(r"\bNET_RECEIVE\b")
            arguments = tuple(_text(c) for c in children if _kind(c) == "Argument")
            body = next(c for c in children if _kind(c) == "StatementBlock")
            mod.net_receive = ir.Block(
                "NET_RECEIVE", "NET_RECEIVE", arguments, reader.block_statements(body), line
            )
        elif kind in ("BeforeBlock", "AfterBlock"):
            keyword = "BEFORE" if kind == "BeforeBlock" else "AFTER"
            mod.unsupported.append((f"{keyword} block", source.line_of(rf"\b{keyword}\b"), ""))
        elif kind == "Verbatim":
            mod.unsupported.append(("VERBATIM", source.line_of(r"\bVERBATIM\b"), ""))
        elif kind == "FunctionTableBlock":
            mod.unsupported.append(("FUNCTION_TABLE", source.line_of(r"\bFUNCTION_TABLE\b"), ""))
        elif kind in ("ConstructorBlock", "DestructorBlock"):
            keyword = "CONSTRUCTOR" if kind == "ConstructorBlock" else "DESTRUCTOR"
            mod.unsupported.append((f"{keyword} block", source.line_of(rf"\b{keyword}\b"), ""))
        elif kind in ("LongitudinalDiffusionBlock",):
            mod.unsupported.append(("LONGITUDINAL_DIFFUSION", 0, ""))
    if not mod.name:
        raise NmodlError(
            f"{source.path}: no SUFFIX, POINT_PROCESS or ARTIFICIAL_CELL in the NEURON block"
        )
    return mod


_NAME = re.compile(r"\b(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+([A-Za-z_]\w*)")


def mechanism_name(text: str) -> str | None:
    """The SUFFIX, POINT_PROCESS or ARTIFICIAL_CELL name of a ``.mod`` text, found
    without parsing it (comments ignored); None if it declares none."""
    match = _NAME.search("\n".join(Source("", text).code_lines))
    return match.group(1) if match else None
