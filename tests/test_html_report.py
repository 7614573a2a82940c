"""``kinsim report``: the page renders in real headless Chromium, without console errors, with its plots."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kinsim.cli import main

from .conftest import HARDWARE, WORKLOADS

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _find() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and possible, else the test is skipped."""
    found = _find()
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("Chromium is not installed and cannot be installed here (needs apt-get as root); "
                    "install Debian's chromium package to run this test")
    for command in (["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                    ["sh", "-c", "apt-get update && apt-get install -y --no-install-recommends chromium"]):
        subprocess.run(command, capture_output=True, timeout=1200, check=False)
        if _find():
            return _find()
    pytest.skip("Chromium could not be installed with apt-get (no package source reachable?)")


def test_report_renders_in_headless_chromium_with_its_plots(chromium: str, tmp_path: Path, capsys):
    run_json, page = tmp_path / "run.json", tmp_path / "report.html"
    assert main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"), "--quiet",
                 "--set", "requests.problems=4", "--json", str(run_json)]) == 0
    assert main(["report", str(run_json), "-o", str(page)]) == 0
    text = page.read_text()
    # nothing fetched from a network: no resource addresses (the hardware's cited sources are only text)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text
    done = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'data-plots-rendered="4"' in dom, dom[:500]
    assert "plots rendered" not in dom  # the check is for tests, not text of the page
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    assert "aime_bon32: Qwen3-8B, dense attention, 8 x h100" in dom
    assert "Hardware used" in dom and "Workload used" in dom


def test_report_of_a_file_that_is_not_a_run_is_exit_2(tmp_path: Path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"workload": "x"}')
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "missing key" in err
    assert not (tmp_path / "r.html").exists()
