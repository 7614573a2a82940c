"""How tensor parallelism splits attention heads and MLP widths over the GPUs of a replica."""

from __future__ import annotations

from dataclasses import dataclass

from kinsim.errors import SpecError


@dataclass(frozen=True)
class HeadShard:
    """Attention heads held by one GPU under tensor parallelism ``tp``.

    Query heads are split evenly. KV heads are split evenly when ``tp`` divides them; when ``tp`` is a
    multiple of the KV heads, each KV head is replicated on ``tp / kv_heads`` GPUs (as vLLM does), so
    each GPU holds one.
    """

    q_heads: int
    kv_heads: int
    head_dim: int
    tp: int


def shard_heads(q_heads: int, kv_heads: int, head_dim: int, tp: int, *, path: str = "tensor_parallel",
                kv_path: str = "kv_heads") -> HeadShard:
    """Split the heads over ``tp`` GPUs, or raise :class:`SpecError` naming ``path`` (the TP degree) or
    ``kv_path`` (the KV heads)."""
    for label, value in (("heads", q_heads), (kv_path, kv_heads), ("head_dim", head_dim), (path, tp)):
        if value < 1:
            raise SpecError("must be at least 1", path=label, value=value)
    if q_heads % kv_heads:
        raise SpecError(f"must divide the query heads ({q_heads})", path=kv_path, value=kv_heads)
    if q_heads % tp:
        raise SpecError(f"must divide the query heads ({q_heads})", path=path, value=tp)
    if kv_heads % tp and tp % kv_heads:
        raise SpecError(f"must divide the KV heads ({kv_heads}) or be a multiple of them", path=path,
                        value=tp)
    return HeadShard(q_heads // tp, max(kv_heads // tp, 1), head_dim, tp)
