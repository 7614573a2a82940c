"""The mutation fuzzer (``tests/fuzz.py``) over every input kind: no traceback, one line, nothing left behind.

It runs in a child process with its address space capped (4 GiB), so that a memory blow-up is an error in
the child rather than a swap storm on the machine, and with a fixed seed, so that a failure here is the
same failure on every machine. ``KINSIM_FUZZ_CASES`` and ``KINSIM_FUZZ_SEED`` change the campaign (a longer
one: ``python -m tests.fuzz --cases 5000 --seed 7``).
"""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT

CASES = int(os.environ.get("KINSIM_FUZZ_CASES", "150"))
SEED = int(os.environ.get("KINSIM_FUZZ_SEED", "2026"))


def test_no_mutated_input_gives_a_traceback_a_hang_a_partial_output_or_garbage():
    done = subprocess.run([sys.executable, "-m", "tests.fuzz", "--cases", str(CASES), "--seed", str(SEED)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert summary.startswith(f"{CASES} cases,") and ", 0 failing," in summary, summary
    # the campaign exercised every exit a mutated input may give: success, refusal (and a failed check)
    assert "exit codes {0: " in summary and " 2: " in summary, summary
