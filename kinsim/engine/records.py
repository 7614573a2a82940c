"""What the engine writes down: plain records that metrics and reports read."""

from __future__ import annotations

from dataclasses import dataclass, field

from kinsim.engine.sequence import Sequence


@dataclass(slots=True)
class SegmentRecord:
    """Consecutive steps of one replica with a fixed batch (one step when ``steps`` is 1).

    Times are seconds of simulated time; per-GPU figures are those of one GPU of the replica (the
    GPUs of a tensor-parallel group run the same operators in lock-step).

    Attributes:
        replica: replica index.
        start_s, end_s: when the first step started and the last ended.
        steps: steps in the segment.
        decode_seqs: decoding sequences in each step.
        prefill_tokens: prompt tokens computed (mixed steps only).
        tokens_out: tokens generated (one per decoding sequence per step, plus one per completed prefill).
        kv_peak_blocks: most KV blocks allocated during the segment.
        kv_block_s: integral of allocated blocks over the segment's time, block-seconds.
        class_s, class_flops, class_bytes: seconds, FLOPs and HBM bytes per op class, in the order of
            :data:`kinsim.ops.op.OP_CLASSES`, per GPU.
        flops, hbm_bytes: totals over the classes.
        compute_s, memory_s, network_s: busy seconds per GPU of its compute, HBM and links.
    """

    replica: int
    start_s: float
    end_s: float
    steps: int
    decode_seqs: int
    prefill_tokens: int
    tokens_out: int
    kv_peak_blocks: int
    kv_block_s: float
    class_s: tuple[float, ...]
    class_flops: tuple[float, ...]
    class_bytes: tuple[float, ...]
    flops: float
    hbm_bytes: float
    compute_s: float
    memory_s: float
    network_s: float


@dataclass(slots=True)
class OpRecord:
    """One kind of kernel in one step of a replica, recorded only inside a requested time window: it starts
    at ``start_s`` and runs ``count`` times back to back for ``duration_s`` in all (per GPU)."""

    replica: int
    start_s: float
    duration_s: float
    name: str
    op_class: str
    count: int


@dataclass
class Records:
    """Everything one simulation recorded.

    Attributes:
        sequences: every request's lifecycle, in generation order.
        segments: steps or segments of every replica, in the order they ended.
        events: SimPy events processed.
        ops: op-level records of steps overlapping the simulation's ``op_window`` (empty without one).
        replica_gpus, replica_links: each replica's GPU names and the directed links between them.
    """

    sequences: list[Sequence] = field(default_factory=list)
    segments: list[SegmentRecord] = field(default_factory=list)
    events: int = 0
    ops: list[OpRecord] = field(default_factory=list)
    replica_gpus: list[list[str]] = field(default_factory=list)
    replica_links: list[list[str]] = field(default_factory=list)
