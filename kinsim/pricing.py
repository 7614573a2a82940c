"""Pricing one operator (or one whole step) by name and sizes: what ``kinsim op`` does, from Python.

    >>> from kinsim.pricing import price_op
    >>> result = price_op("gemm", hw, m=256, n=4096, k=4096)
    >>> result["time_s"], result["bound"]

Every kind declares its parameters once (:data:`OP_KINDS`); the CLI builds its flags from them and a
``--shapes`` CSV's columns are the same names. Sizes are checked here, with errors naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kinsim.cost.collectives import collective_terms, collective_time
from kinsim.cost.registry import make_cost_model
from kinsim.cost.step_cost import price_step
from kinsim.dtypes import DTYPES
from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.ops.attention import AttentionDims, PrefillChunk, decode_attention_ops, prefill_attention_op
from kinsim.ops.layers import collective_op, gemm_op
from kinsim.ops.lower import Step, StepBatch, lower_step, query_quantize
from kinsim.ops.sharding import shard_heads
from kinsim.units import parse_quantity
from kinsim.workload.load import load_workload
from kinsim.workload.spec import (
    BlockTopKAttention,
    DenseAttention,
    SlidingWindowAttention,
    TopKAttention,
)

POLICIES = ("dense", "block_topk", "topk", "sliding_window")


@dataclass(frozen=True)
class Param:
    """One parameter of an op kind. ``kind``: ``count`` (whole number >= 1), ``size`` (whole number >= 0),
    ``dtype``, ``bytes`` (a size such as ``16MiB``, or a number of bytes such as ``1e9``), ``choice``, ``path``."""

    name: str
    kind: str
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is None and self.kind != "optional_count"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def convert_param(param: Param, value: Any, path: str, file: str | None = None) -> Any:
    """Convert a CLI, CSV or Python value of ``param``; raise :class:`SpecError` naming ``path``."""
    if param.kind in ("count", "size", "optional_count"):
        if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise SpecError("expected a whole number", path=path, value=value, file=file)
        least = 0 if param.kind == "size" else 1
        if value < least:
            raise SpecError(f"must be at least {least}", path=path, value=value, file=file)
        return int(value)
    if param.kind == "dtype":
        if value not in DTYPES:
            raise SpecError("unknown data type", path=path, value=value, file=file,
                            hint="one of " + ", ".join(DTYPES))
        return value
    if param.kind == "choice":
        if value not in param.choices:
            raise SpecError("must be one of " + ", ".join(param.choices), path=path, value=value, file=file)
        return value
    if param.kind == "bytes":
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            nbytes = float(value)
        else:  # "16MiB", "1e9" (bytes), "1.5e3 KB"
            nbytes = parse_quantity("bytes", value, path=path, file=file, bare=True)
        if nbytes < 0:
            raise SpecError("must not be negative", path=path, value=value, file=file)
        return nbytes
    return value


_HEADS = (
    Param("heads", "count", "query heads"),
    Param("kv_heads", "count", "KV heads"),
    Param("head_dim", "count", "head dimension", 128),
    Param("dtype", "dtype", "data type of the computation", "bf16"),
    Param("kv_dtype", "dtype", "data type of the KV cache (default: --dtype)", ""),
    Param("tp", "count", "tensor-parallel degree splitting the heads", 1),
)
_POLICY = (
    Param("policy", "choice", "attention policy", "dense", POLICIES),
    Param("block", "count", "block_topk: tokens per block", 16),
    Param("topk", "count", "block_topk: blocks selected", 64),
    Param("local_window", "size", "block_topk: recent tokens always read", 0),
    Param("sink", "size", "block_topk, sliding_window: first tokens always read", 0),
    Param("token_budget", "optional_count", "topk: tokens read per step", 0),
    Param("window", "optional_count", "sliding_window: recent tokens read", 0),
)
_COLLECTIVE = (
    Param("bytes", "bytes", "buffer per GPU, e.g. 16MiB"),
    Param("gpus", "count", "GPUs taking part"),
    Param("algorithm", "choice", "collective algorithm", "auto", ("auto", "ring", "tree")),
)


def _policy(p: Mapping[str, Any]):
    name = p["policy"]
    if name == "dense":
        return DenseAttention()
    if name == "block_topk":
        return BlockTopKAttention(block_size=p["block"], top_k=p["topk"], local_window=p["local_window"],
                                  sink_tokens=p["sink"])
    if name == "topk":
        if not p["token_budget"]:
            raise SpecError("required with --policy topk", path="--token-budget")
        return TopKAttention(token_budget=p["token_budget"])
    if not p["window"]:
        raise SpecError("required with --policy sliding_window", path="--window")
    return SlidingWindowAttention(window=p["window"], sink_tokens=p["sink"])


def _dims(p: Mapping[str, Any]) -> AttentionDims:
    shard = shard_heads(p["heads"], p["kv_heads"], p["head_dim"], p["tp"])
    return AttentionDims(shard, kv_dtype=p["kv_dtype"] or p["dtype"], act_dtype=p["dtype"])


def _query_quantize(p: Mapping[str, Any], tokens: int) -> list:
    """The query's quantization kernel before attention over an fp8 KV cache (as in a step,
    :func:`kinsim.ops.lower.query_quantize`), over ``tokens`` query rows."""
    dims = _dims(p)
    return query_quantize(dims.kv_dtype, tokens * dims.shard.q_heads * dims.shard.head_dim)


def _decode_attention(p: Mapping[str, Any], hw: HardwareSpec) -> Step:
    context = np.full(p["batch"], float(p["kv_len"]))
    ops = [*_query_quantize(p, p["batch"]), *decode_attention_ops(_dims(p), _policy(p), context)]
    return Step(tuple(ops), p["batch"], 0)


def _prefill_attention(p: Mapping[str, Any], hw: HardwareSpec) -> Step:
    chunks = [PrefillChunk(p["q_len"], p["kv_len"])] * p["batch"]
    tokens = p["batch"] * p["q_len"]
    return Step((*_query_quantize(p, tokens), prefill_attention_op(_dims(p), _policy(p), chunks)), tokens, 0)


def _gemm(p: Mapping[str, Any], hw: HardwareSpec) -> Step:
    return Step((gemm_op("gemm", p["m"], p["n"], p["k"], weight_dtype=p["dtype"], act_dtype=p["dtype"]),), p["m"], 0)


def _collective(kind: str) -> Callable[[Mapping[str, Any], HardwareSpec], Step]:
    def build(p: Mapping[str, Any], hw: HardwareSpec) -> Step:
        return Step((collective_op(kind, kind, p["bytes"], p["gpus"], algorithm=p["algorithm"]),), 0, 0)

    return build


def _step(p: Mapping[str, Any], hw: HardwareSpec) -> Step:
    workload = load_workload(p["workload"])
    prefill = (PrefillChunk(p["prefill_tokens"], 0),) if p["prefill_tokens"] else ()
    batch = StepBatch(decode_context=np.full(p["batch_size"], float(p["context"])), prefill=prefill)
    return lower_step(workload.model, workload.deployment, workload.attention, batch)


@dataclass(frozen=True)
class OpKind:
    """A kind of thing ``kinsim op`` prices: its parameters and how to lower it into ops."""

    name: str
    help: str
    params: tuple[Param, ...]
    lower: Callable[[Mapping[str, Any], HardwareSpec], Step]

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


OP_KINDS: dict[str, OpKind] = {
    "decode_attention": OpKind(
        "decode_attention", "one decode step of attention for a batch of sequences (one layer)",
        (Param("batch", "count", "sequences"), Param("kv_len", "size", "tokens cached per sequence"),
         *_HEADS, *_POLICY), _decode_attention),
    "prefill_attention": OpKind(
        "prefill_attention", "causal attention of a prompt chunk per sequence (one layer)",
        (Param("batch", "count", "sequences"), Param("q_len", "count", "new tokens per sequence"),
         Param("kv_len", "size", "tokens already cached per sequence", 0), *_HEADS, *_POLICY),
        _prefill_attention),
    "gemm": OpKind(
        "gemm", "a GEMM of an m x k activation by a k x n weight",
        (Param("m", "count", "rows (tokens)"), Param("n", "count", "output features"),
         Param("k", "count", "input features"), Param("dtype", "dtype", "data type", "bf16")), _gemm),
    **{kind: OpKind(kind, f"{kind} over the node's links", _COLLECTIVE, _collective(kind))
       for kind in ("allreduce", "allgather", "reducescatter", "alltoall")},
    "step": OpKind(
        "step", "a whole decode step of a workload's model on one GPU of a replica, by op class",
        (Param("workload", "path", "workload file"), Param("batch_size", "count", "decoding sequences"),
         Param("context", "size", "tokens cached per sequence"),
         Param("prefill_tokens", "size", "prompt tokens prefilled in the same step", 0)), _step),
}


def resolve_params(kind: str, values: Mapping[str, Any], *, file: str | None = None, where: str = "",
                   flag_names: bool = True, hw: HardwareSpec | None = None) -> dict[str, Any]:
    """Validated parameters of ``kind`` from ``values`` (defaults filled in); with ``hw``, also checked
    against the hardware (a collective over more GPUs than it has)."""
    spec = OP_KINDS[kind]
    known = {p.name for p in spec.params}
    for name in values:
        if name not in known:
            raise SpecError(f"unknown parameter for {kind}", path=where + name, file=file,
                            hint="parameters: " + ", ".join(sorted(known)))
    out = {}
    for param in spec.params:
        label = where + (param.flag if flag_names else param.name)
        value = values.get(param.name)
        if value is None or (isinstance(value, str) and value == "" and param.required):
            if param.required:
                raise SpecError("missing required parameter", path=label, file=file, hint=param.help)
            value = param.default
            out[param.name] = value
            continue
        out[param.name] = convert_param(param, value, label, file)
    if hw is not None and out.get("gpus", 0) > hw.total_gpus:
        gpus_label = where + (OP_KINDS[kind].param("gpus").flag if flag_names else "gpus")
        raise SpecError(f"more GPUs than {hw.name} has ({hw.total_gpus})", path=gpus_label, value=out["gpus"],
                        file=file, hint="raise cluster.nodes with --set to add nodes")
    if out.get("kv_dtype") == "":
        out["kv_dtype"] = out["dtype"]
    if "heads" in out:
        def label(name: str) -> str:
            return where + (OP_KINDS[kind].param(name).flag if flag_names else name)

        try:
            shard_heads(out["heads"], out["kv_heads"], out["head_dim"], out["tp"], path=label("tp"),
                        kv_path=label("kv_heads"))
        except SpecError as error:
            raise error.within("", file) from None
    return out


def price_op(kind: str, hw: HardwareSpec, cost_model: str = "roofline", **params: Any) -> dict[str, Any]:
    """Price op ``kind`` with ``params`` on ``hw``. Returns ``time_s``, ``flops``, ``bytes``, ``bound``,
    the per-term times, the op's ``shape`` and, for several ops (a step, block top-k attention), ``ops``
    and ``by_class``."""
    if kind not in OP_KINDS:
        raise SpecError("unknown op kind", value=kind, hint="one of " + ", ".join(OP_KINDS))
    return price_resolved(kind, resolve_params(kind, params, flag_names=False, hw=hw), hw, cost_model)


def price_resolved(kind: str, params: Mapping[str, Any], hw: HardwareSpec, cost_model: str) -> dict[str, Any]:
    """Price ``kind`` with already validated ``params``."""
    step = OP_KINDS[kind].lower(params, hw)
    priced = price_step(step, make_cost_model(cost_model, hw))
    terms = {name: 0.0 for name in ("compute_s", "memory_s", "network_s", "latency_s")}
    ops = []
    for p in priced.priced:
        for name in terms:
            terms[name] += p.op.count * float(getattr(p.cost, name))
        ops.append({"name": p.op.name, "op_class": p.op.op_class, "count": p.op.count,
                    "time_s": float(p.total_s), "flops": float(p.op.count * p.op.flops),
                    "bytes": float(p.op.count * p.op.bytes), "bound": p.cost.bound})
    bound = max(("compute", "memory", "network", "latency"), key=lambda b: terms[f"{b}_s"])
    result: dict[str, Any] = {
        "kind": kind,
        "cost_model": cost_model,
        "hardware": hw.name,
        "time_s": float(priced.time_s),
        "flops": float(priced.total("flops")),
        "bytes": float(priced.total("bytes")),
        "link_bytes": float(sum(_link_bytes(p.op, hw) for p in priced.priced)),
        "bound": bound,
        **terms,
        "params": dict(params),
    }
    if len(ops) == 1:
        result["shape"] = {k: float(v) for k, v in step.ops[0].shape.items()}
    else:
        result["by_class"] = {k: float(v) for k, v in priced.by_class().items()}
        result["ops"] = ops
    return result


def _link_bytes(op, hw: HardwareSpec) -> float:
    """Bytes each GPU sends over its links for all runs of ``op`` (0 for a non-collective)."""
    if op.collective is None or op.collective.gpus < 2:
        return 0.0
    _, _, algorithm = collective_time(op.collective, hw, 1.0, op.collective.algorithm)
    terms = collective_terms(op.collective, hw, "tree" if algorithm == "tree" else "ring")
    return op.count * float(np.sum(terms.link_bytes))
