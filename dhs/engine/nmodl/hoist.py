"""Step-invariant values of a mechanism, computed once after INITIAL.

A subexpression of the step phases (``current``, ``state``) whose every input is fixed
for a whole run (a parameter no step phase writes, a GLOBAL, ``dt``, ``celsius``, the
node's geometry) and that calls a built-in or divides gives the same double at every
step. It is computed once, at the end of INITIAL (after INITIAL's own writes, such as
exp2syn's ``tau1`` clamp), into a per-instance variable, and the step reads it: the
same operations on the same operands, so the same bits. ``DESIGN.md`` (Hoisting).
"""

from __future__ import annotations

from dataclasses import replace

from . import ir

__all__ = ["Hoisted", "hoist"]

PREFIX = "hoisted_"


class Hoisted:
    """The invariant subexpressions found so far, each with its variable name."""

    def __init__(self, invariant: set[str], pure_calls: set[str], taken: set[str]) -> None:
        self.invariant = invariant
        self.pure_calls = pure_calls
        self.taken = taken
        self.names: dict[ir.Expr, str] = {}

    def _is_invariant(self, node: ir.Expr) -> bool:
        for part in ir.walk_expressions(node):
            if isinstance(part, ir.Var):
                if part.index is not None or part.name not in self.invariant:
                    return False
            elif isinstance(part, ir.Call):
                if part.name not in self.pure_calls:
                    return False
        return True

    @staticmethod
    def _is_costly(node: ir.Expr) -> bool:
        # a load of the stored value must cost less than recomputing it
        return any(
            isinstance(part, ir.Call) or (isinstance(part, ir.Binary) and part.op in "/^")
            for part in ir.walk_expressions(node)
        )

    def _name(self, node: ir.Expr) -> str:
        if node not in self.names:
            number = len(self.names)
            name = f"{PREFIX}{number}"
            while name in self.taken:
                number += 1
                name = f"{PREFIX}{number}"
            self.taken.add(name)
            self.names[node] = name
        return self.names[node]

    def expression(self, node: ir.Expr) -> ir.Expr:
        if isinstance(node, (ir.Num, ir.Var)):
            return node
        if self._is_invariant(node) and self._is_costly(node):
            return ir.Var(self._name(node))
        if isinstance(node, ir.Unary):
            return replace(node, operand=self.expression(node.operand))
        if isinstance(node, ir.Binary):
            if node.op in ("&&", "||"):
                return node  # short-circuit operands stay where they are
            return replace(node, left=self.expression(node.left), right=self.expression(node.right))
        if isinstance(node, ir.Call):
            return replace(node, args=tuple(self.expression(a) for a in node.args))
        return node

    def statements(self, body) -> tuple[ir.Statement, ...]:
        return tuple(self.statement(statement) for statement in body)

    def statement(self, node: ir.Statement) -> ir.Statement:
        if isinstance(node, ir.Assign):
            return replace(node, value=self.expression(node.value))
        if isinstance(node, ir.If):
            return replace(
                node,
                condition=self.expression(node.condition),
                then=self.statements(node.then),
                orelse=self.statements(node.orelse),
            )
        if isinstance(node, ir.While):
            return replace(
                node, condition=self.expression(node.condition), body=self.statements(node.body)
            )
        return node  # calls of PROCEDUREs, solver systems, tables: unchanged

    def assignments(self) -> tuple[ir.Assign, ...]:
        """``name = expression`` of every hoisted value, in the order found."""
        return tuple(ir.Assign(ir.Var(name), node) for node, name in self.names.items())


def local_names(body) -> set[str]:
    """Every name a body declares LOCAL (those shadow the mechanism's variables)."""
    found: set[str] = set()
    for statement in ir.walk_statements(body):
        if isinstance(statement, ir.Local):
            found |= {name for name, _ in statement.names}
        found |= set(getattr(statement, "local_names", ()))
    return found


def hoist(
    bodies: dict[str, tuple[ir.Statement, ...]],
    invariant: set[str],
    pure_calls: set[str],
    taken: set[str],
) -> tuple[dict[str, tuple[ir.Statement, ...]], Hoisted]:
    """Replace the invariant, costly subexpressions of ``bodies`` (phase -> statements)
    by variables.

    Parameters
    ----------
    bodies : dict
        The step phases' statements.
    invariant : set of str
        Names fixed for a run that no step phase writes.
    pure_calls : set of str
        Functions without effects whose value depends on their arguments only.
    taken : set of str
        Names in use; the new variables avoid them.

    Returns
    -------
    dict, Hoisted
        The rewritten bodies, and the hoisted values (:meth:`Hoisted.assignments` go at
        the end of INITIAL).
    """
    shadowed = set().union(*(local_names(body) for body in bodies.values()))
    hoisted = Hoisted(invariant - shadowed, pure_calls, set(taken))
    rewritten = {phase: hoisted.statements(body) for phase, body in bodies.items()}
    return rewritten, hoisted
