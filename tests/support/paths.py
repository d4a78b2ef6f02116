"""Where the test suite finds the repository's files."""

from __future__ import annotations

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
TESTS = SUPPORT.parent
ROOT = TESTS.parent
DATA = ROOT / "data"
MORPHOLOGIES = DATA / "morphologies"
