"""Wall time of a 200-point sweep of aime_bon32 variants with 1 and 2 local workers, and of its rerun.

The sweep varies HBM bandwidth (20 values) and max_num_seqs (10 values) on H100; each point is a full
aime_bon32 simulation (about 1 s). Each worker count starts from an empty results file.

    python benchmarks/bench_sweep.py            # about 5 minutes on 2 cores
    python benchmarks/bench_sweep.py --points 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from kinsim.sweep.execute import run_sweep
from kinsim.sweep.spec import load_sweep
from kinsim.sweep.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="points (a multiple of 10)")
    args = parser.parse_args()
    bandwidths = [f"{2 + 6 * i / (args.points // 10 - 1 or 1):.3f} TB/s" for i in range(args.points // 10)]
    seqs = [16 * (i + 1) for i in range(10)]
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file = Path(tmp) / "bench.yaml"
        sweep_file.write_text(f"name: bench\nworkload: {ROOT / 'workloads' / 'aime_bon32.yaml'}\n"
                              f"hardware: {ROOT / 'hardware' / 'h100.yaml'}\naxes:\n"
                              f"  hw.gpu.memory.bandwidth: {bandwidths}\n  deployment.max_num_seqs: {seqs}\n")
        sweep = load_sweep(sweep_file)
        print(f"{len(sweep.points())} points of aime_bon32 on H100")
        for workers in (1, 2):
            store = ResultStore(Path(tmp) / f"w{workers}.sqlite")
            started = time.perf_counter()
            report = run_sweep(sweep, store, workers=workers)
            wall = time.perf_counter() - started
            started = time.perf_counter()
            again = run_sweep(sweep, store, workers=workers)
            rerun = time.perf_counter() - started
            store.close()
            print(f"{workers} worker(s): {wall:.1f} s for {report.ran} points ({wall / report.ran:.2f} s each, "
                  f"{report.failed} failed); rerun {rerun:.2f} s, {again.skipped} skipped")


if __name__ == "__main__":
    main()
