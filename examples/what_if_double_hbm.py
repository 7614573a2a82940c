"""What-if: double the H100's HBM bandwidth. How many more AIME problems per second does Best-of-32 solve?

Decode reads weights and KV cache every step, so the kernels speed up almost in proportion to the
bandwidth, but not the fixed costs: each kernel's floor, the work items' own bandwidth limit (Little's
law), and the serving engine's host time per step and per sequence. The run speeds up about 1.6x; the
KV capacity (and so the preemptions) is unchanged. Run: python examples/what_if_double_hbm.py
"""

from __future__ import annotations

from pathlib import Path

import kinsim

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict[str, float]:
    h100 = kinsim.load_hardware(ROOT / "hardware" / "h100.yaml")
    doubled = h100.with_overrides({"gpu.memory.bandwidth": "6.7 TB/s"})
    workload = ROOT / "workloads" / "aime_bon32.yaml"
    base, fast = kinsim.simulate(workload, h100), kinsim.simulate(workload, doubled)
    ratio = fast["throughput.tasks_per_s"] / base["throughput.tasks_per_s"]
    print(f"aime_bon32 on 8 x H100: {base['throughput.tasks_per_s']:.4f} tasks/s at 3.35 TB/s, "
          f"{fast['throughput.tasks_per_s']:.4f} at 6.7 TB/s ({ratio:.2f}x)")
    return {"ratio": ratio, "preemptions": base["requests.preemptions"],
            "preemptions_doubled": fast["requests.preemptions"]}


if __name__ == "__main__":
    main()
