"""Factories for the GPU tests: support scripts run under the CUDA simulator.

The simulator must be chosen before Numba is first imported, so a simulated check runs
as a script in a child process with ``NUMBA_ENABLE_CUDASIM=1`` and reports one JSON
line (``tests/support/cudasim_check.py`` for the solver,
``tests/support/engine_cuda_check.py`` for the engine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from paths import ROOT, SUPPORT


@pytest.fixture(scope="module")
def run_simulated() -> Callable[[str, float], dict]:
    """``run_simulated(script, timeout_s)``: run ``tests/support/<script>`` under the CUDA
    simulator; its last JSON line, with ``returncode`` and ``wall_seconds`` added. A
    script that crashes or prints no JSON fails the test."""

    def run(script: str, timeout_s: float) -> dict:
        environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        environment["PYTHONPATH"] = os.pathsep.join(
            path for path in (str(ROOT), str(SUPPORT), environment.get("PYTHONPATH")) if path
        )
        start = time.perf_counter()
        try:
            completed = subprocess.run(
                [sys.executable, str(SUPPORT / script)],
                env=environment,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"{script} ran past {timeout_s} s under the simulator: {error.stderr}")
        lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
        if completed.returncode not in (0, 1) or not lines:
            pytest.fail(
                f"{script} exited with {completed.returncode}:\n"
                f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
            )
        summary = json.loads(lines[-1])
        summary["returncode"] = completed.returncode
        summary["wall_seconds"] = time.perf_counter() - start
        return summary

    return run
