"""The single-cell swap demo (``dhs-bench swap-demo``), run for real on a short simulation."""

from __future__ import annotations

import os

import pytest

from benchmarks.cli import main


def test_demo_prints_the_table_and_saves_the_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the figure goes to ./output/
    assert main(["swap-demo", "--tstop", "15"]) == 0
    printed = capsys.readouterr().out
    assert "5,551 nodes" in printed
    for solver in ("NEURON", "dhs serial", "dhs cpu", "dhs cpu fp32"):
        assert solver in printed
    assert "spike times identical in every fp64 run: True" in printed
    assert "DHS steps with k=32: 999 (lower bound 999" in printed
    figure = tmp_path / "output" / "pyramid_dhs.png"
    assert figure.is_file() and os.path.getsize(figure) > 10_000


@pytest.mark.parametrize("argv", [[], ["nonsense"]])
def test_unknown_commands_are_refused(argv):
    with pytest.raises(SystemExit):
        main(argv)
