"""Output options are checked before any simulation runs, and figures are written atomically with the same
bytes every time (no dates, fixed SVG ids)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kinsim.cli import main

from .conftest import HARDWARE, WORKLOADS

LONGCOT = str(WORKLOADS / "aime_longcot.yaml")
H100, H200 = str(HARDWARE / "h100.yaml"), str(HARDWARE / "h200.yaml")


@pytest.mark.parametrize("args, option, rule", [
    (["compare", LONGCOT, "--hw", H100, "--hw", H200, "--plot", "{tmp}/cmp.txt"], "--plot",
     "a figure's suffix must be one of"),
    (["run", LONGCOT, "--hw", H100, "--plots", "{tmp}/a_file"], "--plots", "exists and is not a directory"),
    (["run", LONGCOT, "--hw", H100, "--json", "{tmp}"], "--json", "is a directory"),
    (["run", LONGCOT, "--hw", H100, "--trace", "{tmp}/no/such/dir/t.json"], "--trace", "directory does not exist"),
])
def test_a_bad_output_option_is_refused_before_anything_runs(tmp_path: Path, capsys, monkeypatch, args, option,
                                                             rule):
    import kinsim.runner

    def must_not_run(*_, **__):
        raise AssertionError("simulated before checking the output options")

    monkeypatch.setattr(kinsim.runner, "simulate", must_not_run)
    (tmp_path / "a_file").write_text("x")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{option}: {rule}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize("suffix", ["svg", "png", "pdf"])
def test_a_figure_has_the_same_bytes_when_written_again(tmp_path: Path, suffix):
    from matplotlib.figure import Figure

    from kinsim.files import save_figure

    def figure() -> Figure:
        fig = Figure()
        ax = fig.subplots()
        ax.plot([0, 1, 2], [2, 0, 1], label="a")
        ax.legend()
        return fig

    first = save_figure(figure(), tmp_path / f"one.{suffix}").read_bytes()
    time.sleep(1.1)  # a creation date in the metadata would now differ
    assert save_figure(figure(), tmp_path / f"two.{suffix}").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"one.{suffix}", f"two.{suffix}"]
