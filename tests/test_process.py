"""The kinsim process and its children: a closed pipe, SIGTERM and SIGKILL of a sweep, a missing extra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kinsim.cli import EXIT_PIPE_CLOSED, EXIT_TERMINATED, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["info", "Qwen3-8B"], ["info", "workloads/aime_bon32.yaml"],
                                  ["info", "hardware/h100.yaml", "--json"], ["--help"]])
def test_a_reader_that_went_away_ends_the_command_quietly(argv):
    """``kinsim info X | head -1``: the reader closes the pipe before kinsim writes; kinsim ends with the
    shell's code for SIGPIPE (141) and writes nothing to stderr (no traceback, no 'internal error')."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "kinsim", *argv], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode in (EXIT_PIPE_CLOSED, 0)  # argparse's --help exits 0 through SystemExit
    if argv != ["--help"]:
        assert done.returncode == EXIT_PIPE_CLOSED


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _slow_sweep(tmp_path: Path) -> Path:
    """A sweep of four points of several seconds each (aime_bon32 with ten times its problems, at several
    bandwidths; the shipped workload alone takes under half a second since the engine got faster)."""
    sweep = tmp_path / "slow.yaml"
    sweep.write_text(
        f"name: slow\nworkload: {ROOT / 'workloads/aime_bon32.yaml'}\nhardware: {ROOT / 'hardware/h100.yaml'}\n"
        "overrides: {requests.problems: 300}\n"
        'axes:\n  hw.gpu.memory.bandwidth: ["2 TB/s", "3 TB/s", "4 TB/s", "5 TB/s"]\n')
    return sweep


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process trees from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_sweep_workers_end_with_their_parent(tmp_path: Path, signum):
    """Terminating or killing ``kinsim sweep --workers 2`` while its workers simulate leaves no worker
    running; SIGTERM also ends with code 143, one line on stderr and no temporary files."""
    sweep = _slow_sweep(tmp_path)
    parent = subprocess.Popen([sys.executable, "-m", "kinsim", "sweep", str(sweep), "--workers", "2",
                               "--db", str(tmp_path / "r.sqlite"), "--csv", str(tmp_path / "r.csv")],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.2)
        workers = _children(parent.pid)
    assert len(workers) >= 2, "the sweep never started its two workers"
    time.sleep(1.0)  # the workers are now inside a simulation
    assert parent.poll() is None, "the sweep ended before it could be signalled"
    parent.send_signal(signum)
    _, stderr = parent.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
    assert not (tmp_path / "r.csv").exists()
    if signum == signal.SIGTERM:
        assert parent.returncode == EXIT_TERMINATED
        assert stderr.strip().splitlines() == ["kinsim: terminated"]
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_a_dask_scheduler_without_dask_is_bad_input_before_any_point(tmp_path: Path, capsys, monkeypatch):
    """``--scheduler`` when Dask's ``distributed`` is not installed: exit 2, one line with the extra to
    install, and no point simulated or stored."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes ``import distributed`` fail
    sweep = _slow_sweep(tmp_path)
    code = main(["sweep", str(sweep), "--scheduler", "tcp://127.0.0.1:1", "--db", str(tmp_path / "r.sqlite")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "--scheduler" in err[0] and "kinsim[distributed]" in err[0]
    assert not (tmp_path / "r.sqlite").exists()


def test_two_sweeps_on_one_results_file_share_the_points(tmp_path: Path):
    """Two ``kinsim sweep`` processes started together on one results file: every point is simulated once in
    all (each claims a point before simulating it and waits for the points the other claimed), and both end
    with every point's figures."""
    sweep = tmp_path / "shared.yaml"
    sweep.write_text(
        f"name: shared\nworkload: {ROOT / 'workloads/aime_bon32.yaml'}\nhardware: {ROOT / 'hardware/h100.yaml'}\n"
        "overrides: {requests.problems: 48}\n"  # about half a second a point: both start before all are done
        'axes:\n  hw.gpu.memory.bandwidth: ["2 TB/s", "3 TB/s", "4 TB/s", "5 TB/s"]\n')
    db = tmp_path / "shared.sqlite"
    sweeps = [subprocess.Popen([sys.executable, "-m", "kinsim", "sweep", str(sweep), "--db", str(db), "--csv",
                                str(tmp_path / f"{name}.csv")], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outputs = [p.communicate(timeout=180) for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], outputs
    simulated = []
    for stdout, _ in outputs:
        last = stdout.strip().splitlines()[-1]  # "shared: 4 points, R simulated now, S from shared.sqlite, ..."
        counts = [part.strip() for part in last.split(":", 1)[1].split(",")]
        assert counts[0] == "4 points"
        ran, skipped = int(counts[1].split()[0]), int(counts[2].split()[0])
        assert ran + skipped == 4
        simulated.append(ran)
    assert sum(simulated) == 4
    assert min(simulated) >= 1  # they did run side by side (else the test would prove nothing)
    import pandas as pd

    tables = [pd.read_csv(tmp_path / f"{name}.csv") for name in ("a", "b")]
    assert all(list(t["status"]) == ["ok"] * 4 for t in tables)
    assert list(tables[0]["throughput.tasks_per_s"]) == list(tables[1]["throughput.tasks_per_s"])
