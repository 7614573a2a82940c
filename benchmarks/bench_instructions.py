"""The engine's cost in instructions: a before/after measure that does not depend on the machine's mood.

Wall time on a shared 2-core machine varies by up to 3x within minutes, which hides changes of 10-20%.
This script runs fixed simulations under valgrind's callgrind (``valgrind --tool=callgrind``), which counts
the instructions the process executes: the same code and inputs give the same count to within a few
hundredths of a percent. Each case is a fresh Python process; the instructions of importing kinsim and
loading its files (measured once, with no simulation) are subtracted, so the figure is the simulation's.
Under callgrind a process runs about 50x slower: a case takes 3-6 minutes.

Cases (small enough for callgrind, large enough that the engine's steady state dominates):

* ``bon32``: ``workloads/aime_bon32.yaml`` on H100 (960 requests, the README's main job);
* ``chat``: ``workloads/chat_poisson.yaml`` with 2,000 requests on 8 H100 replicas;
* ``chat64``: the same 2,000 requests at 40 requests/s on 64 replicas (small batches: split decode
  attention, least-loaded placement over 64 replicas).

``--source DIR`` measures the kinsim of another checkout too, side by side (one process per core), and
prints the change. Needs valgrind (``apt-get install valgrind``); without it the script says so and exits 2.

    python benchmarks/bench_instructions.py                           # all cases, this checkout
    python benchmarks/bench_instructions.py --cases bon32 --source ../base
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "bon32": ("workloads/aime_bon32.yaml", {}),
    "chat": ("workloads/chat_poisson.yaml", {"requests.problems": 2000}),
    "chat64": ("workloads/chat_poisson.yaml", {"requests.problems": 2000, "deployment.data_parallel": 64,
                                               "hw.cluster.nodes": 8}),
}

# The child: import and load everything a run needs; simulate only when given a case.
CHILD = """
import json, sys
from kinsim.runner import simulate
from kinsim.workload.load import load_workload
from kinsim.hardware.load import load_hardware
import kinsim.engine.simulation, kinsim.metrics
workload, overrides = sys.argv[1], json.loads(sys.argv[2])
load_workload(workload); load_hardware("hardware/h100.yaml")
if sys.argv[3] == "run":
    simulate(workload, "hardware/h100.yaml", overrides=overrides)
"""


def instructions(source: Path, workload: str, overrides: dict, run: bool) -> int:
    """Instructions the child executes with ``source`` first on its path (callgrind's ``I refs``)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        # one BLAS thread (idle worker threads spin, and their instructions vary from run to run) and the
        # same hashes every run
        env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", CHILD, workload,
             json.dumps(overrides), "run" if run else "load"],
            cwd=source, env=env, capture_output=True, text=True)
        found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"bench_instructions: the child failed under valgrind ({source}):\n{done.stderr[-2000:]}")
        return int(found.group(1).replace(",", ""))


def simulation_instructions(source: Path, case: str, baseline: int) -> int:
    workload, overrides = CASES[case]
    return instructions(source, workload, overrides, True) - baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--source", type=Path, help="another checkout to measure side by side")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("bench_instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    sources = [ROOT] + ([args.source.resolve()] if args.source else [])
    for source in sources:
        if not (source / "kinsim").is_dir():
            print(f"bench_instructions: {source}: no kinsim package there", file=sys.stderr)
            return 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        base = dict(zip(sources, pool.map(lambda s: instructions(s, "workloads/aime_bon32.yaml", {}, False),
                                          sources)))
        print("import and load: " + ", ".join(f"{s.name}: {base[s] / 1e9:.3f} G" for s in sources), flush=True)
        print(f"{'case':<8} " + " ".join(f"{s.name:>14}" for s in sources) + ("   change" if args.source else ""))
        for case in args.cases:
            counts = list(pool.map(simulation_instructions, sources, [case] * len(sources),
                                   [base[s] for s in sources]))
            line = f"{case:<8} " + " ".join(f"{c / 1e9:>12.3f} G" for c in counts)
            if args.source:
                line += f"   {counts[0] / counts[1] - 1:+.1%} (this checkout against {args.source})"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
