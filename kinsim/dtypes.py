"""Numeric formats used for weights, activations and the KV cache, and their storage size.

Sizes are bytes per element. Four-bit formats take half a byte; block scales of quantised formats
(per-group scale factors) are not counted, except in the two block-scaled 4-bit formats checkpoints name
as such: ``mxfp4`` (OCP microscaling, gpt-oss's experts: 4-bit elements and one 8-bit scale per 32, 17/32
of a byte) and ``nvfp4`` (NVIDIA's: one fp8 scale per 16, 9/16 of a byte; its per-tensor fp32 scale is
negligible). A GPU computes both at its ``fp4`` rate where it lists one (:data:`COMPUTE_TYPES`), else at
bf16 (a W4A16 kernel that dequantizes the weights).
"""

from __future__ import annotations

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 0.5,
    "int4": 0.5,
    "mxfp4": 0.5 + 1.0 / 32.0,
    "nvfp4": 0.5 + 1.0 / 16.0,
}

#: The tensor-core type a stored format is computed in, where it differs from its own name.
COMPUTE_TYPES: dict[str, str] = {"mxfp4": "fp4", "nvfp4": "fp4"}

#: Weight types served with quantized activations (W8A8, W4A4): a kernel quantizes each such GEMM's input
#: to this type, and checkpoints keep the LM head and the MoE router in bf16.
QUANTIZED_ACTIVATIONS: dict[str, str] = {"fp8": "fp8", "nvfp4": "nvfp4"}

DTYPES: tuple[str, ...] = tuple(BYTES_PER_ELEMENT)


def compute_type(dtype: str) -> str:
    """The rate ``dtype`` is computed at (``mxfp4`` -> ``fp4``; most types are their own)."""
    return COMPUTE_TYPES.get(dtype, dtype)


def bytes_per_element(dtype: str) -> float:
    """Storage bytes of one element of ``dtype`` (``bf16`` -> 2.0)."""
    return BYTES_PER_ELEMENT[dtype]
