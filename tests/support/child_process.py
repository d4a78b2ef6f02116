"""Run Python code in a child process that imports this checkout.

NEURON keeps its state per process (and can crash it), so tests that need a fresh
NEURON, or that could take the interpreter down, run their code here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from paths import ROOT, SUPPORT

__all__ = ["last_json_line", "run_python"]


def run_python(code: str, *, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """``python -c code`` with this checkout and ``tests/support`` importable.

    Returns the finished process (text ``stdout`` and ``stderr``); never raises for a
    non-zero exit status, so the test can show what the child printed.
    """
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(SUPPORT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json_line(process: subprocess.CompletedProcess):
    """The JSON object on the child's last line of output, after checking it exited with 0."""
    assert process.returncode == 0, (process.returncode, process.stderr[-3000:])
    return json.loads(process.stdout.strip().splitlines()[-1])
