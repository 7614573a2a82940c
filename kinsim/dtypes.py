"""Numeric formats used for weights, activations and the KV cache, and their storage size.

Sizes are bytes per element. Four-bit formats take half a byte; block scales of quantised formats
(per-group scale factors) are not counted.
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
}

DTYPES: tuple[str, ...] = tuple(BYTES_PER_ELEMENT)


def bytes_per_element(dtype: str) -> float:
    """Storage bytes of one element of ``dtype`` (``bf16`` -> 2.0)."""
    return BYTES_PER_ELEMENT[dtype]
