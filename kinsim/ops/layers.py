"""Builders of the non-attention operators: GEMMs, elementwise kernels and collectives.

A GEMM ``(m x k) @ (k x n)`` does ``2 m n k`` FLOPs and moves its weights (``n k`` elements in the
weight type), its input (``m k`` activations) and its output (``m n`` activations). An elementwise
kernel moves what it reads and writes and does a few FLOPs per element (``flops_per_element``), far
below any GPU's ridge point, so its FLOPs only matter for completeness.
"""

from __future__ import annotations

from kinsim.dtypes import bytes_per_element
from kinsim.ops.op import Collective, Number, Op


def gemm_op(name: str, m: Number, n: float, k: float, *, weight_dtype: str, act_dtype: str = "bf16",
            op_class: str = "linear", count: int = 1, weight_rows: Number | None = None) -> Op:
    """A GEMM of ``m`` tokens by an ``n x k`` weight. ``weight_rows`` overrides how many of the ``n``
    output rows' weights are read (MoE: only the experts that receive tokens)."""
    wb, ab = bytes_per_element(weight_dtype), bytes_per_element(act_dtype)
    rows = n if weight_rows is None else weight_rows
    return Op(
        name=name, op_class=op_class, kernel="gemm", dtype=weight_dtype,
        flops=2.0 * m * n * k,
        bytes_read=rows * k * wb + m * k * ab,
        bytes_written=m * n * ab,
        count=count,
        shape={"m": m, "n": n, "k": k},
    )


def elementwise_op(name: str, elements_read: Number, elements_written: Number, *, act_dtype: str = "bf16",
                   extra_bytes_read: Number = 0.0, flops_per_element: float = 4.0, op_class: str = "other",
                   count: int = 1) -> Op:
    """A streaming kernel over activations (norm, RoPE, activation function, residual add)."""
    ab = bytes_per_element(act_dtype)
    return Op(
        name=name, op_class=op_class, kernel="elementwise", dtype="fp32",
        flops=flops_per_element * elements_read,
        bytes_read=elements_read * ab + extra_bytes_read,
        bytes_written=elements_written * ab,
        count=count,
        shape={"elements": elements_read},
    )


def moe_experts_op(name: str, tokens: Number, routed: Number, experts: Number, width: float, hidden: float, *,
                   pairs: Number, weight_dtype: str, act_dtype: str = "bf16", count: int = 1) -> Op:
    """The routed experts of an MoE layer on one GPU, as serving engines run them fused (vLLM's
    ``fused_experts``): ``routed`` token-expert pairs through ``experts`` experts (those that receive a
    token), each a gated MLP of ``width`` (this GPU's share of the expert width) over ``hidden``.
    ``pairs``: the token-expert pairs of the whole layer (``tokens x top-k``), which the kernels sort and
    scan on every GPU, its own or not (expert parallelism divides ``routed``, not ``pairs``).

    FLOPs: the two grouped GEMMs, ``2 x routed x 2 width x hidden`` and ``2 x routed x width x hidden``.
    Bytes: the touched experts' weights (``3 x width x hidden`` each), the inputs gathered per pair, the
    gate/up output written and read by the activation, its output written and read by the second GEMM,
    that GEMM's output written and read by the sum over a token's experts, and the ``tokens`` outputs."""
    wb, ab = bytes_per_element(weight_dtype), bytes_per_element(act_dtype)
    return Op(
        name=name, op_class="moe", kernel="moe", dtype=weight_dtype,
        flops=6.0 * routed * width * hidden,
        bytes_read=experts * 3.0 * width * hidden * wb + routed * (2.0 * hidden + 3.0 * width) * ab,
        bytes_written=routed * (hidden + 3.0 * width) * ab + tokens * hidden * ab,
        count=count,
        shape={"tokens": tokens, "m": routed, "n": width, "k": hidden, "experts": experts, "pairs": pairs},
    )


def quantize_op(name: str, elements: Number, *, op_class: str = "other", count: int = 1,
                dtype: str = "fp8") -> Op:
    """Quantizing ``elements`` bf16 activations to ``dtype`` for a GEMM of that input type (fp8: a scale per
    tensor or per token; nvfp4: a scale per 16, written with the elements): a streaming kernel reading 2
    bytes and writing ``bytes_per_element(dtype)`` per element, which serving engines launch before each
    such GEMM whose input is not already quantized."""
    return Op(
        name=name, op_class=op_class, kernel="elementwise", dtype="fp32",
        flops=2.0 * elements,
        bytes_read=elements * bytes_per_element("bf16"),
        bytes_written=elements * bytes_per_element(dtype),
        count=count,
        shape={"elements": elements},
    )


def collective_op(name: str, kind: str, nbytes: Number, gpus: int, *, op_class: str = "communication",
                  count: int = 1, algorithm: str = "auto", implementation: str = "auto") -> Op:
    """A collective of ``nbytes`` per GPU over ``gpus`` GPUs (see :class:`~kinsim.ops.op.Collective`)."""
    return Op(
        name=name, op_class=op_class, kernel="collective", dtype="bf16",
        collective=Collective(kind, nbytes, gpus, algorithm, implementation), count=count,
        shape={"bytes": nbytes, "gpus": gpus},
    )
