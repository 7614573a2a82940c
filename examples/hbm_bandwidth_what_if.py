"""What-if: double the H100's HBM bandwidth. How much faster is one decode step of Qwen3-8B?

At long context and a large batch a decode step is dominated by reading the KV cache, so it speeds up
almost in proportion to bandwidth (1.9x); at batch 1 and short context the weights dominate, also
memory-bound, but the kernels' fixed costs, which do not shrink, hold it to about 1.6x.
Run:  python examples/hbm_bandwidth_what_if.py
"""

from __future__ import annotations

from pathlib import Path

import kinsim
from kinsim.pricing import price_op

ROOT = Path(__file__).resolve().parents[1]


def step_times(hw: kinsim.HardwareSpec) -> dict[tuple[int, int], float]:
    """Decode step time in seconds for (batch, context) pairs of aime_bon32's model on one GPU."""
    workload = str(ROOT / "workloads" / "aime_bon32.yaml")
    return {(batch, context): price_op("step", hw, workload=workload, batch_size=batch, context=context)["time_s"]
            for batch, context in [(1, 1000), (64, 16384)]}


def main() -> dict[tuple[int, int], float]:
    h100 = kinsim.load_hardware(ROOT / "hardware" / "h100.yaml")
    doubled = kinsim.with_overrides(h100, {"gpu.memory.bandwidth": "6.7 TB/s"})
    base, fast = step_times(h100), step_times(doubled)
    speedups = {}
    for key in base:
        speedups[key] = base[key] / fast[key]
        print(f"batch {key[0]:>3}, context {key[1]:>6}: {base[key] * 1e3:7.2f} ms -> {fast[key] * 1e3:7.2f} ms "
              f"({speedups[key]:.2f}x)")
    return speedups


if __name__ == "__main__":
    main()
