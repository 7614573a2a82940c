"""How fast a decode step is lowered and priced, one step at a time and as a vectorised segment.

Prints wall-clock figures for Qwen3-8B (aime_bon32's model) at batch 128 on H100. The engine's exact
fast-forward prices a whole decode segment in one vectorised call; this shows what that buys.

    python benchmarks/bench_step_pricing.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kinsim import load_hardware, load_workload
from kinsim.cost import make_cost_model, price_step
from kinsim.ops import StepBatch, lower_step

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    hw = load_hardware(ROOT / "hardware" / "h100.yaml")
    workload = load_workload(ROOT / "workloads" / "aime_bon32.yaml")
    cost = make_cost_model("roofline", hw)
    batch, steps = 128, 1000
    start_context = np.arange(batch, dtype=float) * 50 + 1000
    contexts = start_context[None, :] + np.arange(steps, dtype=float)[:, None]

    t0 = time.perf_counter()
    scalar = [price_step(lower_step(workload.model, workload.deployment, workload.attention,
                                    StepBatch(decode_context=row)), cost).time_s for row in contexts[:200]]
    per_step = (time.perf_counter() - t0) / 200

    t0 = time.perf_counter()
    vector = price_step(lower_step(workload.model, workload.deployment, workload.attention,
                                   StepBatch(decode_context=contexts)), cost).time_s
    segment = time.perf_counter() - t0

    assert np.allclose(vector[:200], scalar, rtol=1e-12)
    print(f"one step lowered and priced: {per_step * 1e6:.0f} us wall")
    print(f"segment of {steps} steps, vectorised: {segment * 1e3:.2f} ms wall "
          f"({segment / steps * 1e6:.1f} us per step, {per_step * steps / segment:.0f}x faster)")
    print(f"simulated: first step {vector[0] * 1e3:.2f} ms, last {vector[-1] * 1e3:.2f} ms, "
          f"segment {vector.sum():.2f} s")


if __name__ == "__main__":
    main()
