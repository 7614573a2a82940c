"""Progress output: silent for short jobs, a line every 30 s in logs, a bar on terminals, off on request."""

from __future__ import annotations

import io

import pytest

from kinsim.cli import progress as progress_module
from kinsim.cli.progress import Progress


class Log(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    return now


def test_a_log_gets_a_line_after_10_s_then_every_30_s(clock):
    log = Log(terminal=False)
    bar = Progress("requests", stream=log)
    for elapsed, done in [(5, 10), (10, 20), (25, 30), (39.9, 40), (40, 50), (69, 60), (70, 70)]:
        clock[0] = 1000.0 + elapsed
        bar.update(done, 100, "3.0 s simulated")
    bar.close()
    # 5 s: too early; 10 s: first line; 25 and 39.9 s: within 30 s of it; 40 s: a line; 69 s: no; 70 s: a line
    assert log.getvalue().splitlines() == [
        "kinsim: progress: 20/100 requests, 3.0 s simulated, 10 s elapsed",
        "kinsim: progress: 50/100 requests, 3.0 s simulated, 40 s elapsed",
        "kinsim: progress: 70/100 requests, 3.0 s simulated, 70 s elapsed",
    ]


def test_a_terminal_gets_a_bar_redrawn_in_place_after_one_second(clock):
    tty = Log(terminal=True)
    bar = Progress("points", stream=tty, width=10)
    bar.update(1, 4)  # at 0 s: nothing
    clock[0] += 1.5
    bar.update(2, 4)
    bar.close()
    assert tty.getvalue() == "\r[#####.....] 2/4 points\n"


@pytest.mark.parametrize("terminal", [True, False])
def test_disabled_progress_writes_nothing(clock, terminal):
    stream = Log(terminal)
    bar = Progress("requests", enabled=False, stream=stream)
    for step in range(10):
        clock[0] += 60
        bar.update(step, 10)
    bar.close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize("flags, lines", [([], 1), (["--no-progress"], 0), (["--quiet"], 0)])
def test_kinsim_run_reports_progress_in_a_log_unless_told_not_to(monkeypatch, capsys, flags, lines):
    """With the first line due at once (LOG_AFTER_S = 0), a small run into a log (stderr is not a terminal)
    prints one progress line, at its end, naming requests and simulated seconds; the flags silence it."""
    from kinsim.cli import main

    from .conftest import HARDWARE, ROOT

    monkeypatch.setattr(progress_module, "LOG_AFTER_S", 0.0)
    code = main(["run", str(ROOT / "workloads" / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"),
                 "--set", "requests.problems=1", "--set", "requests.samples=2", *flags])
    assert code == 0
    progress_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kinsim: progress:")]
    assert len(progress_lines) == lines
    if lines:
        line = progress_lines[0]
        assert line.startswith("kinsim: progress: 2/2 requests, ") and " s simulated, " in line
