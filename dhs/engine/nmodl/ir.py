"""The small intermediate form the NMODL translator works on.

Expressions and statements of a ``.mod`` file's blocks, as plain frozen dataclasses.
Every binary operation keeps its operands as NMODL wrote them (parentheses only
group), so printing the tree evaluates exactly the operations, in the order, that
nocmodl's C++ performs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Assign",
    "Binary",
    "Call",
    "CallStatement",
    "Compartment",
    "Conductance",
    "Conserve",
    "DiffEq",
    "Expr",
    "For",
    "If",
    "Local",
    "Num",
    "Reaction",
    "Solve",
    "Statement",
    "Table",
    "Unary",
    "Unsupported",
    "Var",
    "While",
    "walk_expressions",
    "walk_statements",
]


# ----------------------------------------------------------------------------- expressions
class Expr:
    """Base class of expressions."""


@dataclass(frozen=True)
class Num(Expr):
    """A number literal: ``value`` is the double the C compiler makes of it, ``text``
    the literal as written (nocmodl's cnexp rules look at it; empty for numbers the
    translator makes)."""

    value: float
    text: str = ""


@dataclass(frozen=True)
class Var(Expr):
    """A variable, or one element ``name[index]`` of an array variable."""

    name: str
    index: Expr | None = None


@dataclass(frozen=True)
class Unary(Expr):
    """``-x`` or ``!x``."""

    op: str
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    """``left op right`` with op one of ``+ - * / ^ < > <= >= == != && ||``."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Call(Expr):
    """A call of a FUNCTION of the file or of a built-in (``exp``, ``log``, ...)."""

    name: str
    args: tuple[Expr, ...]


# ----------------------------------------------------------------------------- statements
class Statement:
    """Base class of statements; ``line`` is the 1-based line in the .mod file (0 if
    unknown)."""


@dataclass(frozen=True)
class Assign(Statement):
    target: Var
    value: Expr
    line: int = 0


@dataclass(frozen=True)
class CallStatement(Statement):
    """A PROCEDURE (or FUNCTION) called for its side effects."""

    call: Call
    line: int = 0


@dataclass(frozen=True)
class If(Statement):
    condition: Expr
    then: tuple[Statement, ...]
    orelse: tuple[Statement, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class While(Statement):
    condition: Expr
    body: tuple[Statement, ...]
    line: int = 0


@dataclass(frozen=True)
class For(Statement):
    """``FROM var = start TO stop { body }`` (inclusive, step 1)."""

    variable: str
    start: Expr
    stop: Expr
    body: tuple[Statement, ...]
    line: int = 0


@dataclass(frozen=True)
class Local(Statement):
    """``LOCAL a, b[3]``: names and their array sizes (0 for a scalar)."""

    names: tuple[tuple[str, int], ...]
    line: int = 0


@dataclass(frozen=True)
class DiffEq(Statement):
    """``state' = rhs`` in a DERIVATIVE block."""

    state: Var
    rhs: Expr
    line: int = 0


@dataclass(frozen=True)
class Reaction(Statement):
    """``~ a + 2 b <-> c (kf, kb)``, ``~ a << (flux)`` or ``~ a -> b (kf)``.

    ``left`` and ``right`` hold ``(stoichiometry, state)`` pairs. For ``<<`` the
    flux is ``forward`` and ``right`` is empty.
    """

    left: tuple[tuple[int, Var], ...]
    operator: str
    right: tuple[tuple[int, Var], ...]
    forward: Expr
    backward: Expr | None
    line: int = 0


@dataclass(frozen=True)
class Conserve(Statement):
    """``CONSERVE a + b = total``."""

    terms: tuple[tuple[int, Var], ...]
    total: Expr
    line: int = 0


@dataclass(frozen=True)
class Compartment(Statement):
    """``COMPARTMENT volume {states}`` (``index`` names the loop variable of the
    indexed form ``COMPARTMENT i, volume[i] {ca}``; empty otherwise)."""

    index: str
    volume: Expr
    states: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Solve(Statement):
    """``SOLVE block METHOD method`` or ``SOLVE block STEADYSTATE method``."""

    block: str
    method: str
    steadystate: bool = False
    line: int = 0


@dataclass(frozen=True)
class Table(Statement):
    """``TABLE vars DEPEND deps FROM low TO high WITH points``."""

    variables: tuple[str, ...]
    depend: tuple[str, ...]
    low: Expr
    high: Expr
    points: int
    line: int = 0


@dataclass(frozen=True)
class Conductance(Statement):
    """``CONDUCTANCE g USEION ion`` (``ion`` empty for a non-specific current)."""

    variable: str
    ion: str
    line: int = 0


@dataclass(frozen=True)
class Unsupported(Statement):
    """A construct the engine cannot run, kept so the checks can report it."""

    construct: str
    line: int = 0
    detail: str = ""


# ----------------------------------------------------------------------------- walking
def walk_statements(statements) -> list[Statement]:
    """Every statement of a body, nested ones included, in order."""
    found: list[Statement] = []
    for statement in statements:
        found.append(statement)
        if isinstance(statement, If):
            found += walk_statements(statement.then) + walk_statements(statement.orelse)
        elif isinstance(statement, (While, For)):
            found += walk_statements(statement.body)
    return found


def _children(expression: Expr) -> tuple[Expr, ...]:
    if isinstance(expression, Var):
        return (expression.index,) if expression.index is not None else ()
    if isinstance(expression, Unary):
        return (expression.operand,)
    if isinstance(expression, Binary):
        return (expression.left, expression.right)
    if isinstance(expression, Call):
        return expression.args
    return ()


def walk_expressions(node) -> list[Expr]:
    """Every expression in an expression or statement (nested ones included)."""
    roots: list[Expr] = []
    if isinstance(node, Expr):
        roots = [node]
    elif isinstance(node, Assign):
        roots = [node.target, node.value]
    elif isinstance(node, CallStatement):
        roots = [node.call]
    elif isinstance(node, (If, While)):
        roots = [node.condition]
    elif isinstance(node, For):
        roots = [node.start, node.stop]
    elif isinstance(node, DiffEq):
        roots = [node.state, node.rhs]
    elif isinstance(node, Reaction):
        roots = [v for _, v in node.left + node.right] + [node.forward]
        roots += [node.backward] if node.backward is not None else []
    elif isinstance(node, Conserve):
        roots = [v for _, v in node.terms] + [node.total]
    elif isinstance(node, Compartment):
        roots = [node.volume]
    elif isinstance(node, Table):
        roots = [node.low, node.high]
    found: list[Expr] = []
    stack = list(reversed(roots))
    while stack:
        expression = stack.pop()
        found.append(expression)
        stack.extend(reversed(_children(expression)))
    return found


@dataclass
class Block:
    """A named block of the file: PROCEDURE, FUNCTION, DERIVATIVE, KINETIC, INITIAL,
    BREAKPOINT or NET_RECEIVE."""

    kind: str
    name: str
    arguments: tuple[str, ...]
    body: tuple[Statement, ...]
    line: int = 0
    locals: dict[str, int] = field(default_factory=dict)
