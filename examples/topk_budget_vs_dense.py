"""Block top-k budget against dense attention on aime_bon32 (H100): tasks/s as the kept blocks vary.

A smaller budget reads less KV per step; every budget beats dense, whose steps read every cached token.
(The same sweep from the command line: kinsim sweep examples/sweep_topk_budget.yaml.)
Run: python examples/topk_budget_vs_dense.py
"""

from __future__ import annotations

from pathlib import Path

import kinsim

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (16, 64, 256)


def main() -> dict[str, float]:
    hw = kinsim.load_hardware(ROOT / "hardware" / "h100.yaml")
    sparse = kinsim.load_workload(ROOT / "workloads" / "aime_bon32_blocktopk.yaml")
    tasks = {"dense": kinsim.simulate(ROOT / "workloads" / "aime_bon32.yaml", hw)["throughput.tasks_per_s"]}
    for top_k in BUDGETS:
        tasks[f"top_k={top_k}"] = kinsim.simulate(sparse.with_overrides({"attention.top_k": top_k}),
                                                  hw)["throughput.tasks_per_s"]
    print("  ".join(f"{label}: {value:.4f}" for label, value in tasks.items()) + " tasks/s")
    return tasks


if __name__ == "__main__":
    main()
