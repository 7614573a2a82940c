"""Wall time and peak memory of the engine on the shipped workloads, fast-forward against exact steps.

Each run is a fresh ``kinsim run`` process, so the wall time includes Python start-up and imports and
the peak memory is the whole process's resident set. For each AIME workload on H100 it prints both
modes, the events each processed, the fast/exact wall-time ratio and the largest relative difference
between the two modes' figures (which must be at most 1e-9). Then the large case: the 100,000-request
Poisson chat workload on eight replicas, fast-forward only.

    python benchmarks/bench_engine.py            # everything (about 4 minutes on 2 cores)
    python benchmarks/bench_engine.py --quick    # fast-forward only, no exact-steps runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hardware" / "h100.yaml"
AIME = ("aime_bon32", "aime_bon32_blocktopk", "aime_longcot")
ENGINE_ONLY = ("wall_time_s", "mode", "engine", "series")

# Runs kinsim in the child and reports its own peak RSS (bytes) on stderr's last line.
CHILD = """
import resource, sys
from kinsim.cli import main
code = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"PEAK {peak}", file=sys.stderr)
sys.exit(code)
"""


def run(workload: str, exact: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        args = ["run", str(ROOT / "workloads" / f"{workload}.yaml"), "--hw", str(HW), "--json", str(out), "--quiet"]
        if exact:
            args.append("--exact-steps")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
        peak = int(done.stderr.strip().splitlines()[-1].split()[1])
        return {"wall_s": wall, "peak_bytes": peak, "result": json.loads(out.read_text())}


def max_relative_difference(a, b) -> float:
    if isinstance(a, dict):
        return max((max_relative_difference(a[k], b[k]) for k in a if k not in ENGINE_ONLY), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) / max(abs(a), abs(b)) if a != b else 0.0
    return 0.0 if a == b else float("inf")


def line(name: str, mode: str, r: dict) -> str:
    res = r["result"]
    return (f"{name:<22} {mode:<13} {r['wall_s']:>8.2f} s {r['peak_bytes'] / 2**20:>8.0f} MiB "
            f"{res['engine']['events']:>10,} {res['engine']['steps']:>10,} {res['sim_time_s']:>11,.1f} s "
            f"{res['throughput']['tasks_per_s']:>9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the exact-steps runs")
    parser.add_argument("--skip-large", action="store_true", help="skip the 100,000-request chat workload")
    args = parser.parse_args()
    print(f"{'workload':<22} {'mode':<13} {'wall':>10} {'peak RSS':>12} {'events':>10} {'steps':>10} "
          f"{'simulated':>13} {'tasks/s':>9}")
    for name in AIME:
        fast = run(name, exact=False)
        print(line(name, "fast-forward", fast), flush=True)
        if not args.quick:
            exact = run(name, exact=True)
            print(line(name, "exact-steps", exact), flush=True)
            diff = max_relative_difference(fast["result"], exact["result"])
            print(f"{'':<22} exact/fast wall-time ratio {exact['wall_s'] / fast['wall_s']:.1f}x, "
                  f"simulation-only ratio {exact['result']['wall_time_s'] / fast['result']['wall_time_s']:.1f}x, "
                  f"largest relative difference of figures {diff:.1e}", flush=True)
    if not args.skip_large:
        chat = run("chat_poisson", exact=False)
        print(line("chat_poisson (100k)", "fast-forward", chat), flush=True)


if __name__ == "__main__":
    main()
