"""Multi-head latent attention kernels of aiconfigurator-core's tables, priced by kinsim and never fitted.

The MLA tables (``<system>/mla/<framework>/<version>/generation_mla_perf.parquet`` and
``context_mla_perf.parquet``; SGLang's and TensorRT-LLM's) time the attention kernel of DeepSeek-V3 alone:
``num_heads`` query heads on one GPU, ``batch_size`` sequences, the KV cache in ``kv_cache_dtype``;
generation rows attend with one new token over ``step`` cached tokens, context rows over ``isl`` new
tokens with none cached; ``latency`` in milliseconds. kinsim prices each row as the ops of a DeepSeek-V3
layer with that many heads (:func:`~kinsim.ops.attention.model_attention_dims`: decode over the 576-wide
latent, prefill as multi-head attention of 192 and 128 dimensions) with the profile's decode and prefill
curves, which were fitted to grouped-query kernels only, so every row is held out. vLLM's MLA tables
time whole modules (projections included), not the kernel, and are not scored here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kinsim.calibration.aiconfigurator import KV_DTYPES, TableChoice, table_versions
from kinsim.ops.attention import PrefillChunk, decode_attention_ops, model_attention_dims, prefill_attention_op
from kinsim.ops.lower import query_quantize
from kinsim.workload.spec import DenseAttention

#: The kernel tables scored: (framework folder, table, phase).
MLA_TABLES = (("sglang", "generation_mla_perf", "decode"), ("sglang", "context_mla_perf", "prefill"),
              ("trtllm", "generation_mla_perf", "decode"), ("trtllm", "context_mla_perf", "prefill"))

COLUMNS = ("num_heads", "batch_size", "kv_cache_dtype", "latency")


@dataclass(frozen=True)
class MLATableScore:
    """One table's rows against kinsim: ``frame`` has the table's columns plus ``measured_s``,
    ``predicted_s`` and ``error`` ((predicted - measured) / measured)."""

    path: Path
    phase: str
    frame: object

    @property
    def mape(self) -> float:
        return float(np.mean(np.abs(self.frame["error"])))


def mla_row_ops(model, phase: str, heads: int, batch: int, kv_dtype: str, tokens: int) -> list:
    """The ops of one table row: ``heads`` query heads on one GPU of ``model`` (an MLA model), ``batch``
    sequences; decode over ``tokens`` cached tokens each, or prefill of ``tokens`` new tokens each. A decode
    row with an fp8 cache includes the query's quantization (in the latent space), as the grouped-query rows
    and the engine's steps do."""
    model = replace(model, attention_heads=heads, kv_heads=heads, kv_dtype=kv_dtype)
    dims = model_attention_dims(model, 1)
    if phase == "prefill":
        return [prefill_attention_op(dims, DenseAttention(), [PrefillChunk(tokens)] * batch)]
    quantize = query_quantize(kv_dtype, batch * heads * model.mla.latent_width)
    return quantize + decode_attention_ops(dims, DenseAttention(), np.full(batch, float(tokens)))


def score_table(path: Path, phase: str, model, cost_model) -> MLATableScore:
    """Every row of the table at ``path`` priced by ``cost_model`` (rows of unknown KV types skipped)."""
    import pandas as pd

    frame = pd.read_parquet(path)
    missing = [c for c in (*COLUMNS, "step" if phase == "decode" else "isl") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    frame = frame[frame["kv_cache_dtype"].isin(list(KV_DTYPES))].copy()
    predicted = []
    for row in frame.itertuples(index=False):
        tokens = int(row.step) if phase == "decode" else int(row.isl)
        ops = mla_row_ops(model, phase, int(row.num_heads), int(row.batch_size), KV_DTYPES[row.kv_cache_dtype],
                          tokens)
        predicted.append(sum(float(cost_model.op_cost(op).time_s) * op.count for op in ops))
    frame["measured_s"] = frame["latency"].astype(float) * 1e-3
    frame["predicted_s"] = predicted
    frame["error"] = frame["predicted_s"] / frame["measured_s"] - 1.0
    return MLATableScore(path, phase, frame)


def score_system(data: Path, system: str, cost_model, model=None) -> list[MLATableScore]:
    """The newest version of each of :data:`MLA_TABLES` that ``system`` has, scored (DeepSeek-V3's MLA
    unless ``model`` is given)."""
    if model is None:
        from kinsim.model import load_model

        model = load_model("DeepSeek-V3")
    scores = []
    for framework, table, phase in MLA_TABLES:
        paths = table_versions(data, system, TableChoice("mla", framework, table), None)
        if paths:
            scores.append(score_table(paths[0], phase, model, cost_model))
    return scores
