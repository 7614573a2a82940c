"""How the engine scales: wall time, peak memory and events per request against the number of requests.

Cases (each a fresh ``kinsim run`` process; wall time is the whole process, peak memory its maximum
resident set, as ``CLARIFICATIONS.md`` asks):

* ``chat``: ``workloads/chat_poisson.yaml`` with 10^4, 10^5 and 10^6 requests, on 8 replicas at its
  40 requests/s, and on 64 replicas (``hw.cluster.nodes=8``, ``deployment.data_parallel=64``) at 320
  requests/s, so that each replica sees the same load;
* ``bon``: ``workloads/aime_bon32.yaml`` (Best-of-32) with 10^4 and 10^5 requests on 64 replicas;
* ``huge``: the chat workload with 10^7 requests on 8 replicas with ``--records summary``.

For each series it fits the growth exponent of wall time in the number of requests (least squares on
log-log, over 10^4 to 10^6). Wall times depend on the machine, and this machine's speed varies from run to
run: the script first times a fixed pure-Python loop (``python_loop_s``) and a fixed loop of the object work
the engine does (``object_loop_s``: tuples on a heap, dictionary entries, floats in lists, attributes), so
that figures from different runs or machines can be put on one scale. The first alone is not enough: on
2026-12-06 a host with the same ``python_loop_s`` (0.33 s) as the day before ran the same engine 1.4-1.9x
slower (docs/engine.md). ``--source DIR`` runs the kinsim of another checkout (for a
before/after comparison on the same machine).

    python benchmarks/bench_scale.py                     # chat 10^4, 10^5 on 8 and 64 replicas, bon 10^4
    python benchmarks/bench_scale.py --sizes 4 5 6       # up to 10^6 (about 20-40 min per 10^6 case on 2 cores)
    python benchmarks/bench_scale.py --cases huge        # 10^7 requests, --records summary (hours)
    python benchmarks/bench_scale.py --cases bon64 --jobs 2   # Best-of-32's replicas in two processes
    python benchmarks/bench_scale.py --cases chat8 --sizes 6 --jobs 2   # chat's, meeting at every arrival
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hardware" / "h100.yaml"

# Runs kinsim in the child and reports its own peak RSS and that of the largest worker process it forked
# (--jobs; bytes) on stderr's last line.
CHILD = """
import resource, sys
from kinsim.cli import main
code = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(f"PEAK {peak} {workers}", file=sys.stderr)
sys.exit(code)
"""


def python_loop_s() -> float:
    """Seconds for a fixed pure-Python loop of 10^7 additions: this machine's speed right now."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


class _Counter:
    """An object with two attributes, read and written as the engine's replicas and sequences are."""

    def __init__(self) -> None:
        self.steps, self.seconds = 0, 0.0


def object_loop_s() -> float:
    """Seconds for a fixed loop of 10^6 rounds of the object work a simulation does (a tuple pushed on and
    popped off a heap, a dictionary entry set, read and dropped, a float appended to a list, two attributes
    updated): this machine's speed at the engine's kind of work right now."""
    started = time.perf_counter()
    heap, table, floats, counter = [], {}, [], _Counter()
    for i in range(1_000_000):
        heapq.heappush(heap, (i * 0.5 % 97.0, i))
        table[i] = [i, 0.25 * i]
        floats.append(table.get(i)[1] + counter.seconds)
        counter.steps += 1
        counter.seconds += 1e-3
        if len(heap) > 64:
            heapq.heappop(heap)
            del table[i - 64]
    return time.perf_counter() - started


def case_args(case: str, requests: int) -> tuple[str, list[str]]:
    if case == "chat8":
        return "chat_poisson", [f"requests.problems={requests}"]
    if case == "chat64":
        return "chat_poisson", [f"requests.problems={requests}", "deployment.data_parallel=64",
                                "hw.cluster.nodes=8", "requests.arrival.rate=320 /s"]
    if case == "bon64":
        return "aime_bon32", [f"requests.problems={requests // 32}", "deployment.data_parallel=64",
                              "hw.cluster.nodes=8"]
    if case == "huge":
        return "chat_poisson", [f"requests.problems={requests}"]
    raise ValueError(case)


def run(case: str, requests: int, source: Path | None, records: str | None, jobs: int = 1) -> dict:
    workload, sets = case_args(case, requests)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        args = ["run", str(ROOT / "workloads" / f"{workload}.yaml"), "--hw", str(HW), "--json", str(out), "--quiet"]
        for item in sets:
            args += ["--set", item]
        if records:
            args += ["--records", records]
        if jobs > 1:
            args += ["--jobs", str(jobs)]
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = str(source)
        started = time.perf_counter()
        # from a scratch directory: with "-c" the current directory comes first on the import path
        done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, cwd=tmp)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{case} {requests}: kinsim failed:\n{done.stderr}")
        _, peak, workers = done.stderr.strip().splitlines()[-1].split()
        result = json.loads(out.read_text())
    return {"case": case, "requests": requests, "wall_s": wall, "peak_bytes": int(peak),
            "worker_peak_bytes": int(workers), "jobs": result["engine"].get("jobs", 1),
            "simulation_s": result["wall_time_s"], "events": result["engine"]["events"],
            "segments": result["engine"]["segments"], "steps": result["engine"]["steps"],
            "completed": result["requests"]["completed"], "sim_time_s": result["sim_time_s"]}


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(wall) on log(requests)."""
    if len(points) < 2:
        return None
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["chat8", "chat64", "bon64"],
                        choices=["chat8", "chat64", "bon64", "huge"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[4, 5],
                        help="powers of ten of the request counts (chat: 4-6; bon: 4-5; huge: 7)")
    parser.add_argument("--source", type=Path, help="run the kinsim package of this checkout instead")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--jobs", type=int, default=1,
                        help="kinsim run --jobs: processes for the replicas (bon64: apart, all sent at once; chat: "
                             "meeting at every arrival); the peak RSS column is then the main process's, the "
                             "largest other's beside it")
    args = parser.parse_args()
    loop, objects = python_loop_s(), object_loop_s()
    print(f"python_loop_s {loop:.2f} (10^7 additions), object_loop_s {objects:.2f} (10^6 rounds of heap, dict, "
          f"list and attribute work); smaller is a faster machine")
    print(f"{'case':<8} {'requests':>10} {'wall':>9} {'sim':>9} {'peak RSS':>10} {'B/request':>10} "
          f"{'events/req':>10} {'segments':>10} {'steps':>11}", flush=True)
    rows = []
    for case in args.cases:
        sizes = [7] if case == "huge" else [s for s in args.sizes if not (case == "bon64" and s > 5)]
        points = []
        for power in sizes:
            n = 10 ** power
            row = run(case, n, args.source, "summary" if case == "huge" else None, args.jobs)
            row["python_loop_s"], row["object_loop_s"] = loop, objects
            rows.append(row)
            points.append((n, row["wall_s"]))
            workers = (f"  jobs {row['jobs']}, worker peak {row['worker_peak_bytes'] / 2**20:.0f}Mi"
                       if row["jobs"] > 1 else "")
            print(f"{case:<8} {n:>10,} {row['wall_s']:>8.1f}s {row['simulation_s']:>8.1f}s "
                  f"{row['peak_bytes'] / 2**20:>8.0f}Mi {row['peak_bytes'] / n:>10.0f} "
                  f"{row['events'] / n:>10.2f} {row['segments']:>10,} {row['steps']:>11,}{workers}", flush=True)
        slope = exponent(points)
        if slope is not None:
            print(f"{case:<8} growth exponent of wall time in requests: {slope:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"python_loop_s": loop, "object_loop_s": objects, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
