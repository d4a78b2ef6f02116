"""The solvers that are not bit-exact: ``euler``, ``derivimplicit`` and KINETIC ``sparse``.

A SOLVEd block becomes one :class:`OdeSystem` statement: the block's statements, with
each ``s' = f`` (or the reactions of a KINETIC block) turned into assignments of a local
``dd<k>_`` (the right side of state ``k``), plus what the method needs (compartment
sizes, CONSERVE rows). :func:`emit_system` prints it as straight-line code over the
state count, which is known here, so the generated function allocates nothing and
compiles under ``numba.njit`` and ``cuda.jit(device=True)`` alike:

* ``euler``: every right side at the old states, then ``s = s + dt*ds`` for each state,
  as scopmath's ``euler_thread``.
* ``derivimplicit`` and ``sparse``: implicit Euler ``c*(s - s_old) = dt*f(s)`` (``c`` the
  COMPARTMENT size, 1 for a DERIVATIVE block; a CONSERVE row ``sum a*s = total`` in
  place of one state's row, chosen as nocmodl chooses it), solved by Newton with a
  forward-difference Jacobian and an unrolled Gaussian elimination with partial
  pivoting. See ``DESIGN.md`` ("Solvers that are not bit-exact") for the stopping rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ir
from .parse import NmodlError

__all__ = ["OdeSystem", "derivative_system", "emit_system", "kinetic_system"]

#: Newton stops when every update is below this fraction of its state ...
RELATIVE_TOLERANCE = 1e-12
#: ... or once the updates stop shrinking, provided their sum is within NEURON's own
#: criterion (``sparse_thread.hpp``: sum of |update| <= 1e-6).
NEURON_TOLERANCE = 1e-6
MAX_ITERATIONS = 50
#: ms: the step of NEURON's STEADYSTATE sparse (``_ss_sparse_thread``).
STEADY_DT = "1e9"


@dataclass(frozen=True)
class OdeSystem(ir.Statement):
    """A SOLVEd DERIVATIVE or KINETIC block, ready to print.

    ``derivatives[k]`` is the right side of ``states[k]`` (a KINETIC block's: its flux
    sum, so ``capacities[k] * ds/dt = derivatives[k]``). ``conserved`` holds
    ``(row, terms, total)`` for each CONSERVE: the state ``row``'s equation is replaced
    by ``sum(coefficient * state) = total``.
    """

    method: str
    block: str
    states: tuple[str, ...]
    body: tuple[ir.Statement, ...]
    derivatives: tuple[ir.Expr, ...]
    capacities: tuple[ir.Expr | None, ...]
    conserved: tuple[tuple[int, tuple[tuple[int, str], ...], ir.Expr], ...]
    local_names: tuple[str, ...]
    line: int = 0
    #: STEADYSTATE: NEURON's ``_ss_sparse_thread`` (implicit Euler steps of dt = 1e9).
    steady: bool = False
    #: No product of states in a reaction (nocmodl's ``linmat``).
    linear: bool = True

    def expressions(self) -> list[ir.Expr]:
        """Expressions read outside the body (for the effects analysis)."""
        found = list(self.derivatives) + [c for c in self.capacities if c is not None]
        return found + [total for _, _, total in self.conserved]


def _derivative_local(k: int) -> str:
    return f"dd{k}_"


def derivative_system(method: str, block: ir.Block, statements, is_state, where) -> OdeSystem:
    """The system of a DERIVATIVE block (its statements already unrolled)."""
    states: list[str] = []
    body: list[ir.Statement] = []
    for statement in statements:
        for inner in ir.walk_statements([statement]):
            if isinstance(inner, ir.DiffEq) and inner is not statement:
                raise NmodlError(
                    f"{where(inner.line)}: a derivative inside if/while is not supported"
                )
        if isinstance(statement, ir.DiffEq):
            name = statement.state.name
            if not is_state(name):
                raise NmodlError(
                    f"{where(statement.line)}: {name}' of a variable that is not a STATE"
                )
            if name in states:
                raise NmodlError(f"{where(statement.line)}: {name}' is given twice")
            states.append(name)
            target = ir.Var(_derivative_local(states.index(name)))
            body.append(ir.Assign(target, statement.rhs, statement.line))
        else:
            body.append(statement)
    locals_ = tuple(_derivative_local(k) for k in range(len(states)))
    return OdeSystem(
        method,
        block.name,
        tuple(states),
        tuple(body),
        tuple(ir.Var(n) for n in locals_),
        (None,) * len(states),
        (),
        locals_,
        block.line,
    )


def _product(
    rate: ir.Expr,
    terms,
) -> ir.Expr:
    value = rate
    for count, variable in terms:
        for _ in range(count):
            value = ir.Binary("*", value, variable)
    return value


def kinetic_system(block: ir.Block, statements, is_state, where) -> OdeSystem:
    """The system of a KINETIC block (its statements already unrolled), following
    nocmodl's ``kinetic.cpp``: reactants that are not STATEs are constants, each
    reaction sets ``f_flux`` and ``b_flux``, and CONSERVE takes the row of its last
    scalar state not yet taken."""
    states: list[str] = []

    def note(variable: ir.Var) -> None:
        if is_state(variable.name) and variable.name not in states:
            states.append(variable.name)

    conserves: list[ir.Conserve] = []
    capacities: dict[str, ir.Expr] = {}
    for statement in statements:
        if isinstance(statement, ir.Reaction):
            for _, variable in statement.left + statement.right:
                note(variable)
        elif isinstance(statement, ir.Conserve):
            conserves.append(statement)
            for _, variable in statement.terms:
                note(variable)
        elif isinstance(statement, ir.Compartment):
            for name in statement.states:
                capacities[name] = statement.volume
        for inner in ir.walk_statements([statement])[1:]:
            if isinstance(inner, (ir.Reaction, ir.Conserve, ir.Compartment)):
                raise NmodlError(
                    f"{where(inner.line)}: a reaction, CONSERVE or COMPARTMENT inside "
                    "if/while is not supported"
                )
    if not states:
        raise NmodlError(f"{where(block.line)}: KINETIC {block.name} has no reactions")
    index = {name: k for k, name in enumerate(states)}
    conserved_rows: dict[int, tuple[tuple[tuple[int, str], ...], ir.Expr]] = {}
    for conserve in reversed(conserves):  # nocmodl's conslist is built by prepending
        row = None
        for _, variable in reversed(conserve.terms):
            k = index.get(variable.name)
            if k is not None and k not in conserved_rows:
                row = k
                break
        if row is None:
            raise NmodlError(f"{where(conserve.line)}: cannot place this CONSERVE's equation")
        terms = tuple((c, v.name) for c, v in conserve.terms if v.name in index)
        conserved_rows[row] = (terms, conserve.total)
    body: list[ir.Statement] = []
    f_flux, b_flux = ir.Var("f_flux"), ir.Var("b_flux")
    for statement in statements:
        if isinstance(statement, (ir.Conserve, ir.Compartment)):
            continue
        if not isinstance(statement, ir.Reaction):
            body.append(statement)
            continue
        line = statement.line
        if statement.operator == "<<":
            ((count, variable),) = statement.left
            if count != 1 or variable.name not in index:
                raise NmodlError(f"{where(line)}: a flux (<<) must act on one STATE")
            k = index[variable.name]
            if k in conserved_rows:
                raise NmodlError(f"{where(line)}: {variable.name} is conserved and has a flux")
            body.append(ir.Assign(f_flux, ir.Num(0.0), line))
            body.append(ir.Assign(b_flux, statement.forward, line))
            term = ir.Var(_derivative_local(k))
            body.append(ir.Assign(term, ir.Binary("+", term, b_flux), line))
            continue
        backward = statement.backward if statement.backward is not None else ir.Num(0.0)
        body.append(ir.Assign(f_flux, _product(statement.forward, statement.left), line))
        body.append(ir.Assign(b_flux, _product(backward, statement.right), line))
        net = ir.Binary("-", f_flux, b_flux)
        for sign, side in (("-", statement.left), ("+", statement.right)):
            for count, variable in side:
                k = index.get(variable.name)
                if k is None or k in conserved_rows:
                    continue
                amount = net if count == 1 else ir.Binary("*", ir.Num(float(count)), net)
                term = ir.Var(_derivative_local(k))
                body.append(ir.Assign(term, ir.Binary(sign, term, amount), line))
    locals_ = tuple(_derivative_local(k) for k in range(len(states)))
    return OdeSystem(
        "sparse",
        block.name,
        tuple(states),
        tuple(body),
        tuple(ir.Var(n) for n in locals_),
        tuple(capacities.get(name) for name in states),
        tuple((row, terms, total) for row, (terms, total) in sorted(conserved_rows.items())),
        (*locals_, "f_flux", "b_flux"),
        block.line,
        linear=all(
            sum(c for c, v in side if v.name in index) <= 1
            for r in statements
            if isinstance(r, ir.Reaction)
            for side in (r.left, r.right)
        ),
    )


def emit_system(printer, system: OdeSystem) -> None:
    """Print ``system`` with ``printer`` (translate's ``_Printer``)."""
    printer.local_names |= set(system.local_names)
    n = len(system.states)
    state = [printer.name(s) for s in system.states]

    def evaluate() -> None:
        for name in system.local_names:
            printer.emit(f"l_{name} = 0.0")
        printer.statements(system.body)

    if system.method == "euler":
        evaluate()
        derivatives = [printer.expression(d) for d in system.derivatives]
        for k in range(n):
            printer.emit(f"{state[k]} = {state[k]} + x_dt * ({derivatives[k]})")
        return
    if not system.steady:
        _emit_newton(printer, system, "x_dt", evaluate)
    elif system.linear:
        _emit_newton(printer, system, STEADY_DT, evaluate)
    else:
        # _ss_sparse_thread: up to 7 steps; a state below -1e-6 is set to 0 and the
        # steps go on; once none is, one more step and done
        state = [printer.name(s) for s in system.states]
        printer.emit("n_settled = False")
        printer.emit("for n_steady in range(7):")
        saved = printer.indent
        printer.indent = saved + "    "
        _emit_newton(printer, system, STEADY_DT, evaluate)
        printer.emit("n_settled = True")
        for k in range(len(state)):
            printer.emit(f"if {state[k]} < -1e-06:")
            printer.emit(f"    {state[k]} = 0.0")
            printer.emit("    n_settled = False")
        printer.emit("if n_settled:")
        printer.indent = saved + "        "
        _emit_newton(printer, system, STEADY_DT, evaluate)
        printer.emit("break")
        printer.indent = saved
        printer.emit("if not n_settled:")
        for k in range(len(state)):
            printer.emit(f"    {state[k]} = math.nan")
    # the block's other assignments at the final states
    evaluate()


def _emit_newton(printer, system: OdeSystem, dt: str, evaluate) -> None:
    """One implicit Euler step of ``dt`` (a name or number) by Newton."""
    n = len(system.states)
    state = [printer.name(s) for s in system.states]
    conserved = {row: (terms, total) for row, terms, total in system.conserved}

    def residuals(prefix: str) -> None:
        """F_k of the current states into ``{prefix}{k}``."""
        evaluate()
        for k in range(n):
            if k in conserved:
                terms, total = conserved[k]
                parts = [
                    f"{float(c)!r} * {printer.name(name)}" if c != 1 else printer.name(name)
                    for c, name in terms
                ]
                printer.emit(f"{prefix}{k} = ({' + '.join(parts)}) - ({printer.expression(total)})")
                continue
            capacity = system.capacities[k]
            change = f"({state[k]} - n_old{k})"
            if capacity is not None:
                change = f"({printer.expression(capacity)}) * {change}"
            derivative = printer.expression(system.derivatives[k])
            printer.emit(f"{prefix}{k} = {change} - {dt} * ({derivative})")

    for k in range(n):
        printer.emit(f"n_old{k} = {state[k]}")
    printer.emit("n_previous = math.inf")
    printer.emit("n_error = math.inf")
    printer.emit(f"for n_iteration in range({MAX_ITERATIONS}):")
    saved_indent = printer.indent
    printer.indent = saved_indent + "    "
    residuals("n_f")
    printer.emit("n_scale = 0.0")
    for k in range(n):
        printer.emit(f"n_scale = max(n_scale, abs({state[k]}))")
    for j in range(n):
        printer.emit(f"n_step = 1e-7 * abs({state[j]}) + 1e-9 * n_scale + 1e-12")
        printer.emit(f"n_save = {state[j]}")
        printer.emit(f"{state[j]} = n_save + n_step")
        printer.emit(f"n_step = {state[j]} - n_save")  # the step actually taken
        residuals("n_p")
        for k in range(n):
            printer.emit(f"n_a{k}_{j} = (n_p{k} - n_f{k}) / n_step")
        printer.emit(f"{state[j]} = n_save")
    for k in range(n):
        printer.emit(f"n_b{k} = -n_f{k}")
    # Gaussian elimination with partial pivoting, unrolled
    for k in range(n):
        for i in range(k + 1, n):
            printer.emit(f"if abs(n_a{i}_{k}) > abs(n_a{k}_{k}):")
            for j in range(k, n):
                printer.emit(f"    n_a{k}_{j}, n_a{i}_{j} = n_a{i}_{j}, n_a{k}_{j}")
            printer.emit(f"    n_b{k}, n_b{i} = n_b{i}, n_b{k}")
        for i in range(k + 1, n):
            printer.emit(f"n_m = n_a{i}_{k} / n_a{k}_{k}")
            for j in range(k + 1, n):
                printer.emit(f"n_a{i}_{j} = n_a{i}_{j} - n_m * n_a{k}_{j}")
            printer.emit(f"n_b{i} = n_b{i} - n_m * n_b{k}")
    for k in reversed(range(n)):
        sum_ = "".join(f" - n_a{k}_{j} * n_d{j}" for j in range(k + 1, n))
        printer.emit(f"n_d{k} = (n_b{k}{sum_}) / n_a{k}_{k}")
    printer.emit("n_error = 0.0")
    printer.emit("n_relative = True")
    for k in range(n):
        printer.emit(f"{state[k]} = {state[k]} + n_d{k}")
        printer.emit(f"n_error += abs(n_d{k})")
        printer.emit(f"if abs(n_d{k}) > {RELATIVE_TOLERANCE!r} * abs({state[k]}):")
        printer.emit("    n_relative = False")
    printer.emit(
        f"if n_error <= {NEURON_TOLERANCE!r} and (n_relative or n_error >= 0.5 * n_previous):"
    )
    printer.emit("    break")
    printer.emit("n_previous = n_error")
    printer.indent = saved_indent
    # not converged even to NEURON's tolerance: NaN, never a silently wrong number
    printer.emit(f"if not (n_error <= {NEURON_TOLERANCE!r}):")
    for k in range(n):
        printer.emit(f"    {state[k]} = math.nan")
