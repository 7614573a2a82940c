"""B200 against H200 on long chains of thought (aime_longcot: 30 problems, one long sample each, Qwen3-8B).

With 30 sequences over 8 GPUs the batches are tiny, so each step is bound by reading weights and KV:
per-token latency follows HBM bandwidth (8 TB/s against 4.8 TB/s), less the fixed costs that do not shrink
with it (each kernel's floor, the serving engine's host time per step): the B200 is about 1.3x faster, not
1.67x. Both GPUs use the H100's calibration profile, transferred. Run: python examples/b200_vs_h200_longcot.py
"""

from __future__ import annotations

from pathlib import Path

import kinsim

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict[str, float]:
    workload = ROOT / "workloads" / "aime_longcot.yaml"
    results = {name: kinsim.simulate(workload, ROOT / "hardware" / f"{name}.yaml") for name in ("h200", "b200")}
    for name, result in results.items():
        print(f"{name}: TPOT p50 {result['latency.request.tpot.p50'] * 1e3:.2f} ms, "
              f"task e2e p99 {result['latency.task.e2e.p99']:.1f} s, {result['throughput.tasks_per_s']:.4f} tasks/s")
    h200, b200 = results["h200"], results["b200"]
    return {"tpot_ratio": b200["latency.request.tpot.p50"] / h200["latency.request.tpot.p50"],
            "bandwidth_ratio": b200.hardware.gpu.memory.bandwidth / h200.hardware.gpu.memory.bandwidth,
            "tasks_ratio": b200["throughput.tasks_per_s"] / h200["throughput.tasks_per_s"]}


if __name__ == "__main__":
    main()
