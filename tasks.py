#!/usr/bin/env python3
"""Set up a virtual environment from the project's own files, then run a task.

    python3 tasks.py demo             # the main job: the batched engine against NEURON
    python3 tasks.py test             # lint and the test suite (what CI runs)
    python3 tasks.py bench            # the benchmarks (write data/benchmarks/*.json)
    python3 tasks.py gpu OUTDIR       # the GPU check, on a machine with an NVIDIA GPU
    python3 tasks.py gpu --dry-run OUTDIR   # the GPU check's parts on a CPU

Needs only Python 3.10+ with venv; everything else comes from setup.cfg. The GPU check
alone uses the Python that runs this file (a GPU machine may have no network), with
the wheels in .whl/ installed into a temporary folder (benchmarks/gpu_check.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ENV = ROOT / ".venv"
BIN = ENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
WHEELS = ROOT / ".whl"


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


def run(*command, env=None) -> None:
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True, env=env)


def gpu(arguments: list[str]) -> None:
    """The GPU check. With --dry-run or --prepare it runs in .venv like the other
    tasks; otherwise in this Python, plus the wheels of .whl/ (no network needed)."""
    if "--dry-run" in arguments or "--prepare" in arguments:
        setup()
        run(PYTHON, "-m", "benchmarks.gpu_check", *arguments)
        return
    environment = dict(os.environ)
    paths = [str(ROOT)]
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    if wheels:
        target = Path(tempfile.gettempdir()) / "dhs-gpu-site"
        run(sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
            "--no-compile", "--upgrade", "--target", target, *wheels)  # fmt: skip
        paths.append(str(target))
    environment["PYTHONPATH"] = os.pathsep.join([*paths, environment.get("PYTHONPATH", "")])
    run(sys.executable, "-m", "benchmarks.gpu_check", *arguments, env=environment)


TASKS = {
    "demo": lambda arguments: run(BIN / "dhs-bench", "demo", *arguments),
    "test": lambda arguments: (
        run(BIN / "ruff", "check", "."),
        run(PYTHON, "-m", "pytest", "-ra", *arguments),
    ),
    "bench": lambda arguments: (
        run(BIN / "dhs-bench", "solve"),
        run(BIN / "dhs-bench", "bridge"),
        run(BIN / "dhs-bench", "engine"),
    ),
    "gpu": gpu,
}
#: Tasks that set up .venv before they run (the GPU check decides for itself).
NEEDS_SETUP = {"demo", "test", "bench"}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        return 2
    task, arguments = sys.argv[1], sys.argv[2:]
    if task == "gpu" and not [a for a in arguments if not a.startswith("-")]:
        print("usage: python3 tasks.py gpu [--dry-run | --prepare] OUTDIR")
        return 2
    if task in NEEDS_SETUP:
        setup()
    try:
        TASKS[task](arguments)
    except subprocess.CalledProcessError as error:
        return error.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
