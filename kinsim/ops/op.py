"""The operator: what one kernel of a forward step does, in FLOPs and bytes, with no notion of time.

Quantities may be floats or NumPy arrays. Arrays carry one value per decode step of a segment in which
only the context lengths change, so that a whole segment is priced in one vectorised evaluation (the
engine's exact fast-forward). Token counts, and so every non-attention op, are the same for each step of
such a segment and stay scalars.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Number = float | np.ndarray

#: Classes that time is reported by.
OP_CLASSES = ("attention", "selection", "linear", "moe", "communication", "other")

#: Kernel kinds; each has its own efficiencies in a cost model.
KERNELS = ("gemm", "attention_decode", "attention_prefill", "attention_sparse", "selection", "elementwise",
           "collective", "moe")

COLLECTIVES = ("allreduce", "allgather", "reducescatter", "alltoall")


@dataclass(frozen=True)
class Collective:
    """A collective over ``gpus`` GPUs.

    ``bytes`` is the buffer each GPU holds: the reduced buffer for all-reduce, the gathered output for
    all-gather, the input for reduce-scatter, and all it sends and keeps for all-to-all. ``algorithm`` is
    ``ring``, ``tree`` (all-reduce only) or ``auto`` (the faster, chosen by the cost model).
    ``implementation`` (all-reduce only) is ``nccl``, ``custom`` (the serving engine's own) or ``auto``
    (as vLLM chooses); it matters where a calibration profile has terms for it.
    """

    kind: str
    bytes: Number
    gpus: int
    algorithm: str = "auto"
    implementation: str = "auto"

    def __post_init__(self) -> None:
        if self.kind not in COLLECTIVES:
            raise ValueError(f"unknown collective {self.kind!r}")


@dataclass(frozen=True)
class Op:
    """One kernel of a forward step, on one GPU.

    Attributes:
        name: what it computes (``qkv_proj``, ``attention_decode``, ``allreduce_mlp``).
        op_class: one of :data:`OP_CLASSES`, for time breakdowns.
        kernel: one of :data:`KERNELS`, for efficiencies.
        dtype: data type whose peak rate bounds its FLOPs.
        flops: floating-point operations (a multiply-add is 2).
        bytes_read: bytes read from HBM.
        bytes_written: bytes written to HBM.
        count: how many times it runs per step (the number of layers for per-layer ops).
        collective: for communication ops, the collective it performs over the links.
        shape: sizes that define it, for reports (``{"m": 64, "n": 6144, "k": 4096}``).
    """

    name: str
    op_class: str
    kernel: str
    dtype: str
    flops: Number = 0.0
    bytes_read: Number = 0.0
    bytes_written: Number = 0.0
    count: int = 1
    collective: Collective | None = None
    shape: dict[str, Number] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op_class not in OP_CLASSES:
            raise ValueError(f"unknown op class {self.op_class!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}")

    @property
    def bytes(self) -> Number:
        """HBM bytes moved, read plus written."""
        return self.bytes_read + self.bytes_written

    @property
    def arithmetic_intensity(self) -> Number:
        """FLOPs per HBM byte."""
        return self.flops / np.maximum(self.bytes, 1.0)
