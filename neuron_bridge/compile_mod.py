"""Compile and load the NMODL mechanisms that ship with neuron_bridge (``mod/``).

:func:`load_mod_mechanisms` runs ``nrnivmodl`` on ``dhs/engine/mod`` once, into a
cache folder named after a hash of the ``.mod`` files and the NEURON version
(``<repo>/.nrn_build/<hash>/``, or ``$DHS_NRN_BUILD/<hash>/``), and loads the library
with ``neuron.load_mechanisms``. Calling it again (in the same process or a later one)
neither recompiles nor reloads.

Loading new mechanisms gives them NEURON internal type numbers after all the built-in
ones (:func:`mechanism_type`): pas 4, IClamp 7, ExpSyn 9, Exp2Syn 10 and hh 17 keep
their numbers, and AmpaNmda comes after hh, which is the order in which NEURON adds the
mechanisms' currents and in which :mod:`dhs.engine` adds them too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dhs.engine.mechanism import MOD_FOLDER

__all__ = [
    "MOD_DIR",
    "build_dir",
    "compile_mod_mechanisms",
    "find_nrnivmodl",
    "load_mod_mechanisms",
    "mechanism_type",
]

MOD_DIR = MOD_FOLDER  # the .mod files dhs.engine ships (AmpaNmda)
_DEFAULT_BUILD_ROOT = Path(__file__).resolve().parent.parent / ".nrn_build"
_LIBRARIES = ("x86_64/.libs/libnrnmech.so", "x86_64/libnrnmech.so",
              "aarch64/.libs/libnrnmech.so", "aarch64/libnrnmech.so",
              "arm64/.libs/libnrnmech.so", "arm64/libnrnmech.so")  # fmt: skip
_loaded: dict[Path, Path] = {}  # mod dir -> build folder loaded in this process


def find_nrnivmodl() -> str | None:
    """The ``nrnivmodl`` next to this Python (a virtual environment's), else on PATH."""
    beside = Path(sys.executable).parent / "nrnivmodl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nrnivmodl")


def _mod_files(mod_dir: Path) -> list[Path]:
    files = sorted(mod_dir.glob("*.mod"))
    if not files:
        raise FileNotFoundError(f"no .mod files in {mod_dir}")
    return files


def build_dir(mod_dir: str | os.PathLike = MOD_DIR) -> Path:
    """The cache folder for ``mod_dir``: keyed by the ``.mod`` files and NEURON's version."""
    import neuron

    mod_dir = Path(mod_dir).resolve()
    digest = hashlib.sha256(str(neuron.__version__).encode())
    for path in _mod_files(mod_dir):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    root = Path(os.environ.get("DHS_NRN_BUILD", _DEFAULT_BUILD_ROOT))
    return root / digest.hexdigest()[:16]


def _library(folder: Path) -> Path | None:
    for name in _LIBRARIES:
        if (folder / name).is_file():
            return folder / name
    return None


def compile_mod_mechanisms(mod_dir: str | os.PathLike = MOD_DIR) -> Path:
    """Compile ``mod_dir`` with ``nrnivmodl`` unless already cached; return the folder.

    The build happens in a temporary folder that is renamed into place, so concurrent
    callers never see a half-built library. Raises ``RuntimeError`` when ``nrnivmodl``
    is missing or fails (its output is in the message).
    """
    mod_dir = Path(mod_dir).resolve()
    target = build_dir(mod_dir)
    if _library(target) is not None:
        return target
    nrnivmodl = find_nrnivmodl()
    if nrnivmodl is None:
        raise RuntimeError("nrnivmodl not found (next to this Python or on PATH)")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    try:
        for path in _mod_files(mod_dir):
            shutil.copy2(path, scratch / path.name)
        done = subprocess.run(
            [nrnivmodl, "."], cwd=scratch, capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or _library(scratch) is None:
            raise RuntimeError(
                f"nrnivmodl failed (exit {done.returncode}) on {mod_dir}:\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        try:
            scratch.rename(target)
        except OSError:  # another process finished first
            if _library(target) is None:
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _mechanism_names() -> set[str]:
    from neuron import h

    names = set()
    for kind in (0, 1):
        types = h.MechanismType(kind)
        name = h.ref("")
        for i in range(int(types.count())):
            types.select(i)
            types.selected(name)
            names.add(name[0])
    return names


def mechanism_type(name: str) -> int:
    """NEURON's internal type number of a mechanism (``MechanismType.internal_type``)."""
    from neuron import h

    for kind in (0, 1):
        types = h.MechanismType(kind)
        found = h.ref("")
        for i in range(int(types.count())):
            types.select(i)
            types.selected(found)
            if found[0] == name:
                return int(types.internal_type())
    raise ValueError(f"NEURON has no mechanism named {name!r}")


def load_mod_mechanisms(mod_dir: str | os.PathLike = MOD_DIR) -> Path:
    """Compile (once, cached) and load ``mod_dir``'s mechanisms into this NEURON.

    Idempotent: a second call, or a call after the mechanisms were loaded some other
    way (a NEURON started from a folder with their build), does nothing.

    Returns
    -------
    Path
        The build folder.
    """
    import neuron

    mod_dir = Path(mod_dir).resolve()
    if mod_dir in _loaded:
        return _loaded[mod_dir]
    target = compile_mod_mechanisms(mod_dir)
    names = {_suffix(path) for path in _mod_files(mod_dir)}
    if None in names or not names <= _mechanism_names():
        if not neuron.load_mechanisms(str(target), warn_if_already_loaded=False):
            raise RuntimeError(f"NEURON could not load the mechanisms built in {target}")
    _loaded[mod_dir] = target
    return target


def _suffix(path: Path) -> str | None:
    """The POINT_PROCESS or SUFFIX name a ``.mod`` file declares."""
    text = path.read_text()
    while "COMMENT" in text and "ENDCOMMENT" in text:
        start = text.index("COMMENT")
        end = text.index("ENDCOMMENT", start) + len("ENDCOMMENT")
        text = text[:start] + text[end:]
    words = text.split()
    for keyword in ("POINT_PROCESS", "SUFFIX", "ARTIFICIAL_CELL"):
        if keyword in words:
            index = words.index(keyword)
            if index + 1 < len(words):
                return words[index + 1]
    return None
