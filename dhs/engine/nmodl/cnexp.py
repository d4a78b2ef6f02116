"""nocmodl's ``cnexp`` method, reproduced on the IR.

nocmodl (``src/nocmodl/diffeq.ypp`` and ``deriv.cpp`` of NEURON) splits the right-hand
side of ``s' = f`` into four expressions by fixed textual rules — the expression, its
derivative by ``s``, and ``a``, ``b`` of ``f = a*s + b`` — where a term that is the
literal ``0.0`` is dropped rather than added. It then writes::

    s = s + (1. - exp(dt*(de)))*(- ( b ) / ( a ) - s)      (de != 0)
    s = s - dt*(- ( b ) )                                   (de == 0)

:func:`cnexp_update` builds that update from the same rules, so the generated code
performs nocmodl's floating-point operations in nocmodl's order. ``None`` plays the
part of nocmodl's ``"0.0"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Assign, Binary, Call, Expr, Num, Unary, Var

__all__ = ["NotLinear", "cnexp_update", "is_literal_zero"]


class NotLinear(Exception):
    """nocmodl's ``d_invalid``: the derivative by the state cannot be formed by the rules
    (the state divides, or is inside a call), so nocmodl falls back to derivimplicit."""


class _Invalid:
    """nocmodl's ``eq_invalid``: not of the form ``a*s + b`` (a product of two terms in
    the state); nocmodl's cnexp then drops ``-b/a`` and writes
    ``s = s + (1. - exp(dt*(de)))*( - s)``."""

    def __init__(self) -> None:
        self.equation = False


@dataclass(frozen=True)
class _Parts:
    expr: Expr
    de: Expr | None
    a: Expr | None
    b: Expr | None


def is_literal_zero(expression: Expr) -> bool:
    """Whether nocmodl prints the literal as ``0.0`` (``0`` and ``0.0`` are; ``.0`` and
    ``0.00`` are not)."""
    if not isinstance(expression, Num):
        return False
    text = expression.text or repr(expression.value)
    if text.isdigit():  # an integer literal gets ".0" appended
        text = text + ".0"
    return text == "0.0"


def _zero(part: Expr | None) -> bool:
    return part is None or is_literal_zero(part)


def _mentions(expression: Expr, state: str) -> bool:
    if isinstance(expression, Var):
        return expression.name == state or (
            expression.index is not None and _mentions(expression.index, state)
        )
    if isinstance(expression, Unary):
        return _mentions(expression.operand, state)
    if isinstance(expression, Binary):
        return _mentions(expression.left, state) or _mentions(expression.right, state)
    if isinstance(expression, Call):
        return any(_mentions(argument, state) for argument in expression.args)
    return False


def _split(expression: Expr, state: str, invalid: _Invalid) -> _Parts:
    if isinstance(expression, Var) and expression.name == state:
        return _Parts(expression, Num(1.0, "1.0"), Num(1.0, "1.0"), None)
    if isinstance(expression, (Num, Var)):
        if isinstance(expression, Var) and _mentions(expression, state):
            raise NotLinear(state)
        return _Parts(expression, None, None, None if is_literal_zero(expression) else expression)
    if isinstance(expression, (Call,)) or (isinstance(expression, Binary) and expression.op == "^"):
        if _mentions(expression, state):
            raise NotLinear(state)
        return _Parts(expression, None, None, expression)
    if isinstance(expression, Unary):
        if expression.op != "-":
            raise NotLinear(state)
        inner = _split(expression.operand, state, invalid)

        def neg(part):
            return None if _zero(part) else Unary("-", part)

        return _Parts(Unary("-", inner.expr), neg(inner.de), neg(inner.a), neg(inner.b))
    if not isinstance(expression, Binary):
        raise NotLinear(state)
    left = _split(expression.left, state, invalid)
    right = _split(expression.right, state, invalid)
    op = expression.op
    combined = Binary(op, left.expr, right.expr)
    if op in ("+", "-"):

        def combine(x, y):
            if not _zero(x) and not _zero(y):
                return Binary(op, x, y)
            if not _zero(x):
                return x
            if not _zero(y):
                return y if op == "+" else Unary("-", y)
            return None

        return _Parts(
            combined, combine(left.de, right.de), combine(left.a, right.a), combine(left.b, right.b)
        )
    if op == "*":
        if not _zero(left.de) and not _zero(right.de):
            de = Binary("+", Binary("*", left.de, right.expr), Binary("*", left.expr, right.de))
        elif not _zero(left.de):
            de = Binary("*", left.de, right.expr)
        elif not _zero(right.de):
            de = Binary("*", left.expr, right.de)
        else:
            de = None
        a = None
        if not _zero(left.a) and not _zero(right.a):
            invalid.equation = True
        elif not _zero(left.a):
            if not _zero(right.b):
                a = Binary("*", left.a, right.b)
        elif not _zero(right.a) and not _zero(left.b):
            a = Binary("*", left.b, right.a)
        b = Binary("*", left.b, right.b) if not _zero(left.b) and not _zero(right.b) else None
        return _Parts(combined, de, a, b)
    if op == "/":
        if not _zero(right.de):
            raise NotLinear(state)
        if not _zero(right.a):
            invalid.equation = True
        de = Binary("/", left.de, right.expr) if not _zero(left.de) else None
        a = Binary("/", left.a, right.expr) if not _zero(left.a) else None
        b = Binary("/", left.b, right.expr) if not _zero(left.b) else None
        return _Parts(combined, de, a, b)
    raise NotLinear(state)  # comparisons and logic are not linear expressions


def cnexp_update(state: Var, rhs: Expr, line: int = 0) -> Assign:
    """The assignment nocmodl's cnexp writes for ``state' = rhs``.

    Raises
    ------
    NotLinear
        When ``rhs`` is not linear in the state (nocmodl then falls back to
        derivimplicit).
    """
    invalid = _Invalid()
    parts = _split(rhs, state.name, invalid)
    if parts.de is not None and _zero(parts.de):
        parts = _Parts(parts.expr, None, parts.a, parts.b)
    b = parts.b if not _zero(parts.b) else Num(0.0, "0.0")
    if parts.de is None:
        # s = s - dt*(- ( b ) )
        return Assign(state, Binary("-", state, Binary("*", Var("dt"), Unary("-", b))), line)
    decay = Binary("-", Num(1.0, "1."), Call("exp", (Binary("*", Var("dt"), parts.de),)))
    if invalid.equation:
        # s = s + (1. - exp(dt*(de)))*( - s)
        return Assign(state, Binary("+", state, Binary("*", decay, Unary("-", state))), line)
    if _zero(parts.a):
        raise NotLinear(state.name)
    steady = Binary("/", Unary("-", b), parts.a)  # - ( b ) / ( a )
    return Assign(state, Binary("+", state, Binary("*", decay, Binary("-", steady, state))), line)
