"""Wall time of the simulated cost of a frontier: 6 Qwen3 models x dense and block top-k x N = 1, 2, 4, ..., 32 on
30 problems x 32 samples (72 simulations), on 1 and 2 local workers, and of its rerun from the results file.

The lengths are synthetic (the issue's benchmark size, not a measured set): prompts uniform on 100-200 tokens,
outputs log-normal with median 8,000 tokens and sigma 0.6, capped at 32,768, drawn with seed 0; the task at N
takes each problem's first N samples. Block top-k: blocks of 16 tokens, top 64, a local window of 64 and 16
sink tokens.

On a 2-core machine (shared with other jobs) on H100: 22.0 s on one worker, 16.4 s on two, rerun 0.2 s; the
simulations take 22 CPU-seconds in all, 0.85-1.5 s for each N = 32 task.

    python benchmarks/bench_frontier_simulate.py                  # H100, 1 and 2 workers
    python benchmarks/bench_frontier_simulate.py --hw hardware/b200.yaml --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from kinsim.frontier.simulate import SimTask, simulate_costs

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B")
ATTENTION = {"dense": {"policy": "dense"},
             "block_topk": {"policy": "block_topk", "block_size": 16, "top_k": 64, "local_window": 64,
                            "sink_tokens": 16}}
SAMPLES = (1, 2, 4, 8, 16, 32)


def tasks(problems: int = 30, samples: int = 32, seed: int = 0) -> list[SimTask]:
    """Every (model, attention, N) task of the benchmark, in that order."""
    rng = np.random.default_rng(seed)
    prompts = tuple(int(x) for x in rng.integers(100, 201, problems))
    outputs = np.minimum(np.rint(rng.lognormal(np.log(8000), 0.6, (problems, samples))), 32768).astype(int)
    return [SimTask(model, attention, prompts, tuple(tuple(int(x) for x in row[:n]) for row in outputs))
            for model in MODELS for attention in ATTENTION.values() for n in SAMPLES if n <= samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", default=str(ROOT / "hardware" / "h100.yaml"))
    parser.add_argument("--workers", type=int, action="append", help="worker counts to time (default 1 and 2)")
    args = parser.parse_args()
    todo = tasks()
    print(f"{len(todo)} simulations on {Path(args.hw).stem}")
    for workers in args.workers or (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp) / "frontier.sqlite"
            started = time.perf_counter()
            costs = simulate_costs(todo, args.hw, workers=workers, store=store)
            wall = time.perf_counter() - started
            started = time.perf_counter()
            again = simulate_costs(todo, args.hw, workers=workers, store=store)
            rerun = time.perf_counter() - started
        assert again == costs
        print(f"{workers} worker(s): {wall:.1f} s ({wall / len(todo):.2f} s a simulation); rerun {rerun:.2f} s")
    deployments = {task.model: cost.deployment for task, cost in zip(todo, costs)}
    print("deployments: " + ", ".join(f"{model} {tp}" for model, tp in deployments.items()))
    for task, cost in zip(todo, costs):
        if len(task.outputs[0]) == 32:
            print(f"  {task.model:11} {task.attention['policy']:10} N=32: {cost.gpu_s:9.2f} GPU-s, "
                  f"{cost.joules / 1e3:8.1f} kJ per problem")


if __name__ == "__main__":
    main()
