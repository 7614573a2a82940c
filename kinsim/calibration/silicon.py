"""End-to-end silicon measurements: serving benchmarks of real deployments, replayed as kinsim workloads.

aiconfigurator-core's ``systems/silicon_sample.csv`` holds measured TTFT and TPOT of vLLM, SGLang and
TensorRT-LLM deployments at fixed input and output lengths and a fixed client concurrency. A row kinsim
can express (a model it has a preset for, aggregated serving, no attention data parallelism) becomes a
serving-benchmark workload:

* ``concurrency`` clients in a closed loop, each sending its next request when the previous one ends
  (``vllm bench serve --max-concurrency``, genai-perf's concurrency mode), or, for the backends of
  :data:`ROUND_CLIENTS`, in rounds: the next ``concurrency`` requests when the whole round has ended;
* every prompt ``isl`` tokens and every answer ``osl`` tokens (fixed lengths, ``ignore_eos``);
* ``rounds x concurrency`` requests, the first round a warm-up excluded from the figures
  (``requests.warmup``). With equal lengths the clients stay in step: every round prefills its
  ``concurrency`` prompts together, which is what the measured TTFTs (of the order of a whole round's
  prefill) show; ``requests.stagger_warmup`` would spread them out instead;
* weights in fp8 where the row's GEMMs are quantized (``gemm_quant_mode``), bf16 otherwise; the KV cache
  in bf16 (the rows do not say).

The figures compared are the means of TTFT and TPOT over the measured requests, as the benchmark
clients report them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Model paths of the CSV that kinsim has presets for.
PRESETS = {
    "Qwen/Qwen3-32B": "Qwen3-32B",
    "Qwen/Qwen3-8B": "Qwen3-8B",
    "Qwen/Qwen3-14B": "Qwen3-14B",
    "meta-llama/Llama-3.1-8B-Instruct": "Llama-3.1-8B",
    "meta-llama/Llama-3.1-8B": "Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B": "Llama-3.1-70B",
    "meta-llama/Llama-3.1-70B-Instruct": "Llama-3.1-70B",
}

#: Rounds of ``concurrency`` requests per benchmark, the first of them warm-up.
ROUNDS = 3

#: Backends whose measured rows were taken by a client that sends ``concurrency`` requests and waits for
#: all of them before the next batch (``arrival.rounds``). Chosen per backend on the H100 rows, as the
#: engine overheads are: SGLang's TTFTs match whole-batch rounds (17% MAPE, against 80% for a client that
#: sends one request as each ends); vLLM's and TensorRT-LLM's match the continuous client better.
ROUND_CLIENTS = ("sglang",)


@dataclass(frozen=True)
class SiliconRow:
    """One measured deployment."""

    id: str
    backend: str
    model: str
    weight_dtype: str
    isl: int
    osl: int
    concurrency: int
    tp: int
    ttft_s: float
    tpot_s: float


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def expressible(row: dict[str, Any]) -> tuple[SiliconRow | None, str]:
    """(the row as a :class:`SiliconRow`, "") when kinsim can express it, else (None, why not)."""
    if row.get("mode") != "agg":
        return None, "not aggregated serving"
    model = PRESETS.get(str(row.get("model_path")))
    if model is None:
        return None, "no preset for the model"
    for key in ("attention_dp_size", "pp_size"):
        value = _number(row.get(key))
        if value is not None and value > 1:
            return None, f"{key} > 1"
    quant = str(row.get("gemm_quant_mode"))
    if quant not in ("nan", "None", "fp8"):
        return None, f"GEMM quantization {quant}"
    numbers = {k: _number(row.get(k)) for k in ("isl", "osl", "batch_size", "tp_size", "silicon_ttft_ms",
                                                "silicon_tpot_ms")}
    if any(v is None or v <= 0 for v in numbers.values()):
        return None, "missing figures"
    return SiliconRow(
        id=str(row.get("id")), backend=str(row.get("backend")), model=model,
        weight_dtype="fp8" if quant == "fp8" else "bf16", isl=int(numbers["isl"]), osl=int(numbers["osl"]),
        concurrency=int(numbers["batch_size"]), tp=int(numbers["tp_size"]),
        ttft_s=numbers["silicon_ttft_ms"] * 1e-3, tpot_s=numbers["silicon_tpot_ms"] * 1e-3), ""


def workload_of(row: SiliconRow, engine: str | None = None) -> dict[str, Any]:
    """The serving-benchmark workload of ``row`` (a raw mapping, validated by ``workload_from_dict``)."""
    return {
        "name": row.id[:80] or "silicon",
        "model": {"preset": row.model, "weight_dtype": row.weight_dtype},
        "deployment": {"tensor_parallel": row.tp, "data_parallel": 1, "max_num_seqs": max(256, row.concurrency),
                       "max_num_batched_tokens": 8192, "engine": engine or row.backend},
        "attention": {"policy": "dense"},
        "requests": {"kind": "long_cot", "problems": ROUNDS * row.concurrency, "prompt_tokens": row.isl,
                     "output_tokens": row.osl, "max_output_tokens": row.osl,
                     "arrival": {"process": "closed_loop", "concurrency": row.concurrency,
                                 "rounds": row.backend in ROUND_CLIENTS},
                     "warmup": row.concurrency},
        "seed": 0,
    }
