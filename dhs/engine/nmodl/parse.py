"""Parsing ``.mod`` files with the NMODL framework that ships inside the NEURON wheel.

:func:`parse` returns the file's abstract syntax tree as nested JSON (NMODL's
``to_json``): ``{"NodeType": [children...]}``, leaves ``{"name": text}``. The
bindings' own node objects cannot report source positions in NEURON 9.0.2 (their
token type is not exported to Python), so :class:`Source` finds lines by searching the
text with comments removed.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NmodlError", "Source", "parse"]


class NmodlError(ValueError):
    """A ``.mod`` file that cannot be parsed or translated; the message names the file
    and line."""


@functools.cache
def _nmodl_driver_module():
    """``neuron.nmodl.dsl``, imported with ``NMODLHOME`` pointing at the wheel's data.

    NEURON 9.0.2 sets ``NMODLHOME`` to ``<neuron>/.data/share/nrn``, where the NMODL
    framework does not find its files; ``<neuron>/.data`` is right.
    """
    import importlib.util

    spec = importlib.util.find_spec("neuron")
    if spec is None or spec.origin is None:
        raise NmodlError("the 'neuron' package is needed to read .mod files (pip install neuron)")
    data = Path(spec.origin).resolve().parent / ".data"
    if "NMODLHOME" not in os.environ or not Path(os.environ["NMODLHOME"], "bin").is_dir():
        os.environ["NMODLHOME"] = str(data)
    try:
        from neuron.nmodl import dsl
    except ImportError as error:  # a NEURON without its NMODL bindings
        raise NmodlError(
            f"this NEURON installation has no NMODL bindings (neuron.nmodl): {error}"
        ) from None
    return dsl


_COMMENT = re.compile(r":.*?$|\?.*?$", re.MULTILINE)
_BLOCK_COMMENT = re.compile(r"^\s*COMMENT\b.*?^\s*ENDCOMMENT\b", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Source:
    """A ``.mod`` file's text, for locating constructs in messages."""

    path: str
    text: str

    @functools.cached_property
    def code_lines(self) -> list[str]:
        """The lines with comments blanked out (line numbers unchanged)."""

        def blank(match: re.Match) -> str:
            return re.sub(r"[^\n]", " ", match.group(0))

        text = _BLOCK_COMMENT.sub(blank, self.text)
        return _COMMENT.sub(blank, text).split("\n")

    def lines_of(self, pattern: str, *, after: int = 0) -> list[int]:
        """1-based numbers of the code lines (comments ignored) matching ``pattern``
        (a regular expression), from line ``after`` on."""
        compiled = re.compile(pattern)
        return [
            number
            for number, line in enumerate(self.code_lines, start=1)
            if number >= after and compiled.search(line)
        ]

    def line_of(self, pattern: str, *, after: int = 0) -> int:
        """The first line matching ``pattern`` (0 when none)."""
        found = self.lines_of(pattern, after=after)
        return found[0] if found else 0

    def where(self, line: int) -> str:
        return f"{self.path}:{line}" if line else self.path


def parse(path: str | os.PathLike | None = None, *, text: str | None = None) -> tuple[dict, Source]:
    """The AST of a ``.mod`` file as JSON, and its :class:`Source`.

    Parameters
    ----------
    path : path-like, optional
        The file to read (also used in messages when ``text`` is given).
    text : str, optional
        The file's contents, when it is not read from ``path``.

    Raises
    ------
    NmodlError
        NMODL's own syntax error message, with the file and line.
    """
    if text is None:
        if path is None:
            raise ValueError("parse needs a path or a text")
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise NmodlError(f"cannot read {path}: {error}") from None
    name = str(path) if path is not None else "<string>"
    dsl = _nmodl_driver_module()
    driver = dsl.NmodlDriver()
    try:
        tree = driver.parse_string(text)
    except RuntimeError as error:
        message = str(error).strip()
        location = re.search(r"Location\s*:\s*(\d+)\.(\d+)", message)
        line = f":{location.group(1)}" if location else ""
        raise NmodlError(f"{name}{line}: {message}") from None
    return json.loads(dsl.to_json(tree, compact=True)), Source(name, text)
