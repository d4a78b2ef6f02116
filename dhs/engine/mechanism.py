"""A mechanism, described once: what the engine derives everything else from.

A :class:`Mechanism` is the translation of one ``.mod`` file
(:mod:`dhs.engine.nmodl`): its name and kind, its parameters, GLOBALs, states and
stored assigned variables, the ions it reads and writes, its NET_RECEIVE arguments and
its bodies as scalar functions (``initial``, ``current``, ``state``,
``net_receive``). The engine's storage, kernel arguments, export, memory estimate and
order of current summation are all derived from these descriptions; no mechanism is
named anywhere else.

The built-in mechanisms are ``.mod`` files too, read through the same path: NEURON's
own (``share/modfile`` of the ``neuron`` wheel: pas, hh, IClamp, ExpSyn, Exp2Syn) and
the ones in :data:`MOD_FOLDER` (AmpaNmda).
"""

from __future__ import annotations

import functools
import os
import types
from dataclasses import dataclass
from pathlib import Path

from .nmodl.build import load_module
from .nmodl.translate import Translation, source_digest, translate_file

__all__ = ["MOD_FOLDER", "Mechanism", "builtin", "builtin_names", "from_source"]

#: The ``.mod`` files this package ships (mechanisms NEURON does not build in).
MOD_FOLDER = Path(__file__).resolve().parent / "mod"


@dataclass(frozen=True, eq=False)
class Mechanism:
    """One translated ``.mod`` file.

    Attributes
    ----------
    translation : Translation
        Everything the translator found (:mod:`dhs.engine.nmodl.translate`).
    """

    translation: Translation

    @property
    def name(self) -> str:
        """The SUFFIX or POINT_PROCESS name."""
        return self.translation.name

    @property
    def kind(self) -> str:
        """``"density"``, ``"point"`` or ``"artificial"``."""
        return self.translation.kind

    @property
    def is_point_process(self) -> bool:
        return self.kind in ("point", "artificial")

    @property
    def digest(self) -> str:
        return self.translation.digest

    @property
    def source(self) -> str:
        """The ``.mod`` text."""
        return self.translation.source_text

    @property
    def parameters(self) -> tuple[str, ...]:
        """Per-instance parameters (RANGE PARAMETERs; all PARAMETERs of a point process
        that are not GLOBAL)."""
        return tuple(p.name for p in self.translation.parameters)

    @property
    def defaults(self) -> dict[str, float]:
        """Default value of every parameter and GLOBAL."""
        specs = self.translation.parameters + self.translation.globals
        return {spec.name: spec.default for spec in specs}

    @property
    def globals(self) -> tuple[str, ...]:
        """GLOBAL parameters, one value per model (``usetable`` when there is a TABLE)."""
        return tuple(g.name for g in self.translation.globals)

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.translation.states)

    @property
    def assigned(self) -> tuple[str, ...]:
        """The assigned variables the engine stores (read before written in a phase,
        or RANGE and written)."""
        return tuple(a.name for a in self.translation.assigned)

    @property
    def fields(self) -> tuple[str, ...]:
        """Per-instance storage, in order: parameters, states, stored assigned."""
        return self.translation.instance_variables

    @property
    def ions(self):
        """How it uses each ion (:class:`~dhs.engine.nmodl.translate.IonSpec`)."""
        return self.translation.ions

    @property
    def writes_concentration(self) -> tuple[str, ...]:
        """The ions whose concentration it writes (they become per-node state)."""
        return tuple(
            use.ion for use in self.ions if any(use.field_of(n) in ("ci", "co") for n in use.writes)
        )

    @property
    def net_receive_arguments(self) -> tuple[str, ...]:
        """NET_RECEIVE's arguments: ``weight`` and any further NetCon weights."""
        return self.translation.net_receive_arguments

    @property
    def receives_events(self) -> bool:
        return "net_receive" in self.translation.phases

    @property
    def has_current(self) -> bool:
        return "current" in self.translation.phases

    @property
    def electrode_current(self) -> bool:
        return self.translation.electrode_current

    @property
    def phases(self):
        return self.translation.phases

    @functools.cached_property
    def module(self) -> types.ModuleType:
        """The generated Python module (its functions are the CPU build)."""
        return load_module(self.name, self.digest, self.translation.module_source)

    @property
    def module_name(self) -> str:
        return self.module.__name__

    def __repr__(self) -> str:
        return f"Mechanism({self.name!r}, {self.kind}, {len(self.fields)} fields)"


@functools.cache
def _from_text(text: str, path: str) -> Mechanism:
    return Mechanism(translate_file(path or None, text=text))


def from_source(text: str, path: str | os.PathLike = "") -> Mechanism:
    """The mechanism of one ``.mod`` text (translated once per process and text).

    Raises
    ------
    dhs.engine.nmodl.NmodlError
        A syntax error (NMODL's message, with the file and line) or constructs the
        engine does not run (every one, with its file and line).
    """
    return _from_text(text, str(path))


def _builtin_folders() -> list[Path]:
    folders = [MOD_FOLDER]
    try:
        import importlib.util

        spec = importlib.util.find_spec("neuron")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        folders.append(Path(spec.origin).parent / ".data" / "share" / "modfile")
    return folders


@functools.lru_cache(maxsize=1)
def _builtin_files() -> dict[str, Path]:
    from .nmodl.frontend import mechanism_name

    found: dict[str, Path] = {}
    for folder in _builtin_folders():
        for path in sorted(folder.glob("*.mod")):
            name = mechanism_name(path.read_text())
            if name:
                found.setdefault(name, path)
    return found


def builtin_names() -> tuple[str, ...]:
    """Names of the mechanisms :func:`builtin` can load, whether or not they run."""
    return tuple(_builtin_files())


def builtin(name: str) -> Mechanism:
    """A built-in mechanism by name: NEURON's own ``.mod`` files, then this package's.

    Raises
    ------
    ValueError
        No built-in mechanism has that name.
    """
    files = _builtin_files()
    if name not in files:
        raise ValueError(f"no built-in mechanism {name!r}; built in: {sorted(files)}")
    path = files[name]
    return from_source(path.read_text(), path)


def source_key(text: str) -> str:
    """The digest that identifies a ``.mod`` text."""
    return source_digest(text)
