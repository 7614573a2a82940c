"""Numeric formats used for weights, activations and the KV cache, and their storage size.

Sizes are bytes per element. Four-bit formats take half a byte; block scales of quantised formats
(per-group scale factors) are not counted, except in ``mxfp4``, the OCP microscaling format that
checkpoints name as such (gpt-oss's experts): 4-bit elements and one 8-bit scale per 32, 17/32 of a byte.
A GPU computes ``mxfp4`` at its ``fp4`` rate where it lists one (:data:`COMPUTE_TYPES`).
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
}

#: The tensor-core type a stored format is computed in, where it differs from its own name.
COMPUTE_TYPES: dict[str, str] = {"mxfp4": "fp4"}

DTYPES: tuple[str, ...] = tuple(BYTES_PER_ELEMENT)


def compute_type(dtype: str) -> str:
    """The rate ``dtype`` is computed at (``mxfp4`` -> ``fp4``; most types are their own)."""
    return COMPUTE_TYPES.get(dtype, dtype)


def bytes_per_element(dtype: str) -> float:
    """Storage bytes of one element of ``dtype`` (``bf16`` -> 2.0)."""
    return BYTES_PER_ELEMENT[dtype]
