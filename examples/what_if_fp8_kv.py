"""What-if: store the KV cache in fp8. Half the bytes per token: twice the tokens fit, and each decode step
reads half as much. On aime_bon32 (H100, 128 long samples per replica) the cache is the bottleneck, so
preemptions fall and tasks/s rises. Run: python examples/what_if_fp8_kv.py
"""

from __future__ import annotations

from pathlib import Path

import kinsim

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict[str, float]:
    bf16 = kinsim.load_workload(ROOT / "workloads" / "aime_bon32.yaml")
    fp8 = bf16.with_overrides({"model.kv_dtype": "fp8"})
    hw = ROOT / "hardware" / "h100.yaml"
    base, small = kinsim.simulate(bf16, hw), kinsim.simulate(fp8, hw)
    for label, result in (("bf16 KV", base), ("fp8 KV", small)):
        tokens = result["kv.capacity_blocks"] * result["kv.block_tokens"]
        print(f"{label}: {result['throughput.tasks_per_s']:.4f} tasks/s, {result['requests.preemptions']:,} "
              f"preemptions, KV capacity {tokens:,} tokens per replica")
    return {"tasks_ratio": small["throughput.tasks_per_s"] / base["throughput.tasks_per_s"],
            "preemptions": base["requests.preemptions"], "preemptions_fp8": small["requests.preemptions"],
            "kv_bytes_per_token": (bf16.model.kv_bytes_per_token, fp8.model.kv_bytes_per_token),
            "capacity_tokens": (base["kv.capacity_blocks"], small["kv.capacity_blocks"])}


if __name__ == "__main__":
    main()
