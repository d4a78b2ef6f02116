#!/usr/bin/env python3
"""Set up a virtual environment from the project's own files, then run a task.

    python3 tasks.py demo    # the main job: NEURON's pyramidal cell, native vs DHS
    python3 tasks.py test    # lint and the test suite (what CI runs)
    python3 tasks.py bench   # the benchmarks (write data/benchmarks/*.json)

Needs only Python 3.10+ with venv; everything else comes from setup.cfg.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ENV = ROOT / ".venv"
BIN = ENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def setup() -> None:
    """Create .venv and install the package with its test extras when they changed."""
    digest = hashlib.sha256(
        b"".join((ROOT / name).read_bytes() for name in ("setup.cfg", "pyproject.toml"))
    ).hexdigest()
    stamp = ENV / ".installed"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"setting up {ENV} ...", flush=True)
    venv.create(ENV, with_pip=True, clear=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test]")
    stamp.write_text(digest)


def run(*command) -> None:
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True)


TASKS = {
    "demo": lambda: run(BIN / "dhs-bench", "swap-demo"),
    "test": lambda: (run(BIN / "ruff", "check", "."), run(PYTHON, "-m", "pytest", "-ra")),
    "bench": lambda: (
        run(BIN / "dhs-bench", "solve"),
        run(BIN / "dhs-bench", "bridge"),
        run(BIN / "dhs-bench", "engine"),
    ),
}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        return 2
    setup()
    try:
        TASKS[sys.argv[1]]()
    except subprocess.CalledProcessError as error:
        return error.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
