"""kinsim's KV-cache capacity per GPU against what real vLLM servers logged at startup (H100 80GB).

Each row is one public startup log: the model, its tensor parallelism and ``--gpu-memory-utilization``, the
server's defaults otherwise (1,024 sequences, 8,192 batched tokens on an H100), and the log's "Available KV
cache memory" (GiB per GPU). kinsim's figure is ``kv_layout``'s capacity for the same deployment
(:mod:`kinsim.engine.memory_budget`), its blocks' bytes per GPU. Prints each row and the MAPE per vLLM
version; ``docs/engine.md`` ("KV cache") reports the figures.

    python benchmarks/bench_kv_capacity.py

Sources (numbers as printed in the logs):
* vLLM 0.19: llm-d-planner's sweep on H100 80GB, https://github.com/jgchn/llm-d-planner (accuracy/results/
  v0.19.0, results_raw.csv and logs/), ``--gpu-memory-utilization 0.95``.
* vLLM 0.11: llm-d's memory study, https://github.com/llm-d/llm-d-benchmark (config_explorer/
  empirical-vllm-memory-results.md), ``vllm/vllm-openai:v0.11.0``, utilization 0.9 (gpt-oss-120b's row adds up
  at 0.95 only, and is read so).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kinsim.engine.kv import kv_layout  # noqa: E402
from kinsim.hardware.load import load_hardware  # noqa: E402
from kinsim.workload.load import workload_from_raw  # noqa: E402

GIB = 2**30

#: (vLLM version, model preset, weight dtype, tensor parallel, utilization, logged KV GiB per GPU, what it is)
LOGS = [
    ("0.19", "Llama-3.1-8B", "bf16", 1, 0.95, 58.11, "Llama-3.1-8B-Instruct"),
    ("0.19", "Llama-3.1-8B", "fp8", 1, 0.95, 64.61, "Llama-3.1-8B-Instruct, --quantization fp8"),
    ("0.19", "Llama-3.1-8B", "bf16", 2, 0.95, 63.76, "Llama-3.1-8B-Instruct"),
    ("0.19", "Llama-3.1-8B", "bf16", 4, 0.95, 67.44, "Llama-3.1-8B-Instruct"),
    ("0.19", "Qwen3-8B", "bf16", 1, 0.95, 57.50, "Qwen/Qwen3-8B"),
    ("0.19", "Qwen3-30B-A3B", "bf16", 1, 0.95, 15.41, "Qwen/Qwen3-30B-A3B"),
    ("0.19", "Llama-3.1-70B", "fp8", 2, 0.95, 37.28, "RedHatAI/Llama-3.3-70B-Instruct-fp8-dynamic"),
    ("0.19", "Llama-3.1-70B", "fp8", 4, 0.95, 54.09, "RedHatAI/Llama-3.3-70B-Instruct-fp8-dynamic"),
    ("0.11", "gpt-oss-20b", "bf16", 1, 0.90, 50.28, "openai/gpt-oss-20b (MXFP4 experts)"),
    ("0.11", "gpt-oss-120b", "bf16", 1, 0.95, 3.33, "openai/gpt-oss-120b (MXFP4 experts)"),
    ("0.11", "Llama-3.1-70B", "fp8", 2, 0.90, 32.0, "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"),
    ("0.11", "Llama-3.1-8B", "bf16", 1, 0.90, 51.38, "meta-llama/Llama-3.1-8B-Instruct"),
    ("0.11", "Qwen3-0.6B", "bf16", 1, 0.90, 64.45, "Qwen/Qwen3-0.6B"),
    ("0.11", "Qwen3-32B", "bf16", 1, 0.90, 4.45, "Qwen/Qwen3-32B"),
    ("0.11", "Qwen3-32B", "bf16", 2, 0.90, 34.49, "Qwen/Qwen3-32B"),
]


def kinsim_kv_gib(preset: str, weights: str, tp: int, utilization: float, hw) -> float:
    """kinsim's KV cache per GPU for the deployment of a log (vLLM's serve defaults on an H100), GiB."""
    raw = {"name": "kv", "model": {"preset": preset, "weight_dtype": weights},
           "deployment": {"tensor_parallel": tp, "gpu_memory_fraction": utilization, "max_num_seqs": 1024,
                          "max_num_batched_tokens": 8192, "engine": "vllm"},
           "requests": {"kind": "long_cot", "problems": 1, "prompt_tokens": 10, "output_tokens": 2,
                        "max_output_tokens": 4}}
    w = workload_from_raw(raw, ROOT)
    return kv_layout(w.model, w.deployment, w.attention, hw).capacity_bytes / tp / GIB


def main() -> None:
    hw = load_hardware(ROOT / "hardware" / "h100.yaml")
    errors: dict[str, list[float]] = {}
    print(f"{'vLLM':5} {'model':45} {'TP':>2} {'util':>4}  {'logged':>7} {'kinsim':>7}  error")
    for version, preset, weights, tp, utilization, logged, what in LOGS:
        kv = kinsim_kv_gib(preset, weights, tp, utilization, hw)
        error = kv / logged - 1
        errors.setdefault(version, []).append(error)
        print(f"{version:5} {what:45} {tp:>2} {utilization:>4}  {logged:7.2f} {kv:7.2f}  {error:+.1%}")
    for version, values in errors.items():
        mape = sum(abs(e) for e in values) / len(values)
        print(f"vLLM {version}: KV capacity MAPE {mape:.1%} over {len(values)} logs "
              f"(from {min(values):+.1%} to {max(values):+.1%})")


if __name__ == "__main__":
    main()
