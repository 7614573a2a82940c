"""What the engine writes down: plain records that metrics and reports read."""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from kinsim.engine.sequence import Sequence
from kinsim.ops.op import OP_CLASSES


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
        host_link_s, host_link_bytes: busy seconds of a GPU's host link (host to GPU) and the bytes it carried
            for one GPU: KV fetched from host memory (block top-k with offload); 0 otherwise.
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
    host_link_s: float = 0.0
    host_link_bytes: float = 0.0


#: The columns of a :class:`SegmentTable`: the fields of :class:`SegmentRecord`, in their order.
SEGMENT_COLUMNS = tuple(f.name for f in fields(SegmentRecord))
#: Columns of whole numbers (int64); the others are float64.
INT_COLUMNS = frozenset({"replica", "steps", "decode_seqs", "prefill_tokens", "tokens_out", "kv_peak_blocks"})
#: Columns with one value per op class (2-D, ``(rows, len(OP_CLASSES))``, in the order of ``OP_CLASSES``).
CLASS_COLUMNS = frozenset({"class_s", "class_flops", "class_bytes"})

_CLASSES = len(OP_CLASSES)
#: One row as packed bytes (native order, no padding) and as a NumPy record of the same layout.
_ROW = struct.Struct("=" + "".join(f"{_CLASSES}d" if name in CLASS_COLUMNS else "q" if name in INT_COLUMNS
                                   else "d" for name in SEGMENT_COLUMNS))
_ROW_DTYPE = np.dtype([(name, np.float64, (_CLASSES,)) if name in CLASS_COLUMNS
                       else (name, np.int64 if name in INT_COLUMNS else np.float64) for name in SEGMENT_COLUMNS])
assert _ROW.size == _ROW_DTYPE.itemsize
_pack = _ROW.pack


class SegmentTable:
    """The recorded segments as columns: what :class:`SegmentRecord` holds, 8 bytes per number.

    One row per recorded step or segment, in the order they ended; the columns are the fields of
    :class:`SegmentRecord`, with its units: seconds of simulated time (``start_s``, ``end_s``, ``compute_s``,
    ``memory_s``, ``network_s``, ``class_s``), FLOPs (``flops``, ``class_flops``), HBM bytes (``hbm_bytes``,
    ``class_bytes``) and block-seconds (``kv_block_s``), per GPU of the replica. ``replica``, ``steps``,
    ``decode_seqs``, ``prefill_tokens``, ``tokens_out`` and ``kv_peak_blocks`` are int64; every other column
    is float64. ``class_s``, ``class_flops`` and ``class_bytes`` are 2-D, one column per op class in the order
    of :data:`kinsim.ops.op.OP_CLASSES` (``column("class_s")[:, OP_CLASSES.index("attention")]``).

    :meth:`append` packs a row into 272 bytes (``struct``: 34 numbers, which also checks their types and
    count) and buffers at most :attr:`BLOCK_ROWS` rows; then the buffer moves into one NumPy array per
    column (a block), and :meth:`column` joins the blocks into one. So a row costs 272 bytes and the buffer
    about a megabyte at most. Indexing and iteration give :class:`SegmentRecord` rows built on the fly
    (Python ints and floats, a tuple per class), for tests and small consumers; metrics and reports read
    :meth:`column`.
    """

    #: Rows buffered (as packed bytes) before they move into NumPy blocks.
    BLOCK_ROWS = 4096

    __slots__ = ("_buffer", "_blocks", "_block_starts", "_flushed")

    def __init__(self) -> None:
        self._buffer: list[bytes] = []
        self._blocks: dict[str, list[np.ndarray]] = {name: [] for name in SEGMENT_COLUMNS}
        self._block_starts: list[int] = []  # first row of each block
        self._flushed = 0  # rows in the blocks

    def append(self, replica, start_s, end_s, steps, decode_seqs, prefill_tokens, tokens_out, kv_peak_blocks,
               kv_block_s, class_s, class_flops, class_bytes, flops, hbm_bytes, compute_s, memory_s,
               network_s, host_link_s=0.0, host_link_bytes=0.0) -> None:
        """Add one row: the fields of :class:`SegmentRecord` in its order, positionally (``class_*`` are
        sequences in the order of ``OP_CLASSES``). Called once per segment by the engine. A value of the
        wrong type (a float where a count goes) or a wrong number of class values raises ``struct.error``."""
        buffer = self._buffer
        buffer.append(_pack(replica, start_s, end_s, steps, decode_seqs, prefill_tokens, tokens_out, kv_peak_blocks,
                            kv_block_s, *class_s, *class_flops, *class_bytes, flops, hbm_bytes, compute_s, memory_s,
                            network_s, host_link_s, host_link_bytes))
        if len(buffer) >= self.BLOCK_ROWS:
            self._flush()

    def append_columns(self, columns: dict[str, np.ndarray]) -> None:
        """Add rows given as columns (every name of :data:`SEGMENT_COLUMNS`, shaped as :meth:`column` gives
        them) after those added so far: one block (the lean engine's rows, :mod:`kinsim.engine.row_buffer`)."""
        self._flush()
        rows = len(columns["replica"])
        if not rows:
            return
        for name in SEGMENT_COLUMNS:
            self._blocks[name].append(np.ascontiguousarray(columns[name], dtype=_ROW_DTYPE[name].base))
        self._block_starts.append(self._flushed)
        self._flushed += rows

    def __len__(self) -> int:
        return self._flushed + len(self._buffer)

    def __repr__(self) -> str:
        return f"SegmentTable({len(self)} rows)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SegmentTable):
            return NotImplemented
        return len(self) == len(other) and all(np.array_equal(self.column(n), other.column(n))
                                               for n in SEGMENT_COLUMNS)

    __hash__ = None  # mutable, like the list it replaces

    def column(self, name: str) -> np.ndarray:
        """Column ``name`` (a field of :class:`SegmentRecord`) over all rows, as a read-only array: 1-D, or
        ``(rows, len(OP_CLASSES))`` for ``class_s``, ``class_flops`` and ``class_bytes``. It stays valid (and
        unchanged) when rows are appended later."""
        if name not in self._blocks:
            raise KeyError(f"no segment column {name!r}; the columns are {', '.join(SEGMENT_COLUMNS)}")
        self._flush()
        blocks = self._blocks[name]
        if not blocks:
            data = np.zeros(0, dtype=_ROW_DTYPE)[name]
        elif len(blocks) == 1:
            data = blocks[0]
        else:  # join every column's blocks at once, so that all keep the same block boundaries
            for parts in self._blocks.values():
                parts[:] = [np.concatenate(parts)]
            self._block_starts = [0]
            data = blocks[0]
        view = data.view()
        view.flags.writeable = False
        return view

    def __getitem__(self, index: int | slice) -> SegmentRecord | list[SegmentRecord]:
        """Row ``index`` (negative counts from the end) as a :class:`SegmentRecord`; a slice gives a list."""
        n = len(self)
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(n))]
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"segment {index} of {n}")
        if i >= self._flushed:
            return _unpack(self._buffer[i - self._flushed])
        b = bisect_right(self._block_starts, i) - 1
        j = i - self._block_starts[b]
        return SegmentRecord(*(_python(self._blocks[name][b][j]) for name in SEGMENT_COLUMNS))

    def __iter__(self) -> Iterator[SegmentRecord]:
        """Every row as a :class:`SegmentRecord`, in order (the rows there were when iteration began)."""
        blocks = [[self._blocks[name][b] for name in SEGMENT_COLUMNS] for b in range(len(self._block_starts))]
        buffer = list(self._buffer)
        for arrays in blocks:
            lists = [a.tolist() if a.ndim == 1 else list(map(tuple, a.tolist())) for a in arrays]
            for values in zip(*lists):
                yield SegmentRecord(*values)
        for row in buffer:
            yield _unpack(row)

    def columns(self) -> dict[str, np.ndarray]:
        """Every column by name (:meth:`column`)."""
        return {name: self.column(name) for name in SEGMENT_COLUMNS}

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray]) -> SegmentTable:
        """A table of the rows given as columns (every name of :data:`SEGMENT_COLUMNS`, as :meth:`column`
        gives them), in their order."""
        table = cls()
        rows = len(columns["replica"])
        if rows:
            for name in SEGMENT_COLUMNS:
                table._blocks[name].append(np.ascontiguousarray(columns[name], dtype=_ROW_DTYPE[name].base))
            table._block_starts.append(0)
            table._flushed = rows
        return table

    @classmethod
    def in_end_order(cls, tables: list[SegmentTable], consume: bool = False) -> SegmentTable:
        """The rows of ``tables`` in one table, in the order they ended, rows that ended at the same instant
        in replica order: the canonical order of a run's segments, whether its replicas ran in one process
        or in several (:mod:`kinsim.engine.parallel`). One replica's segments end one after the other, so
        ``(end_s, replica)`` orders every row. A single table already in that order is returned as it is.
        With ``consume``, each column of ``tables`` is dropped once the result has it (``tables`` are left
        empty), so that the join holds about one column beyond the rows themselves."""
        tables = [table for table in tables if len(table)]
        if not tables:
            return cls()

        def joined(name: str) -> np.ndarray:
            return tables[0].column(name) if len(tables) == 1 else np.concatenate([t.column(name) for t in tables])

        order = np.lexsort((joined("replica"), joined("end_s")))
        if len(tables) == 1 and np.array_equal(order, np.arange(len(order))):
            return tables[0]
        # a column at a time: one column's copy beyond the tables and the result at any moment
        columns = {}
        for name in SEGMENT_COLUMNS:
            columns[name] = joined(name)[order]
            if consume:
                for table in tables:
                    table._blocks[name] = []
        if consume:
            for table in tables:
                table._block_starts, table._flushed = [], 0
        return cls.from_columns(columns)

    def _flush(self) -> None:
        """Move the buffered rows into a new block of arrays, one per column."""
        if not self._buffer:
            return
        rows = np.frombuffer(b"".join(self._buffer), dtype=_ROW_DTYPE)
        for name in SEGMENT_COLUMNS:
            self._blocks[name].append(rows[name].copy())  # contiguous; class columns (rows, classes)
        self._block_starts.append(self._flushed)
        self._flushed += len(rows)
        self._buffer = []


def _python(value: np.ndarray | np.generic) -> int | float | tuple[float, ...]:
    """A value of a column as a row view holds it: a Python int or float, a tuple for a class column."""
    return tuple(value.tolist()) if value.ndim else value.item()


def _unpack(packed: bytes) -> SegmentRecord:
    """A buffered row as a :class:`SegmentRecord`."""
    values = _ROW.unpack(packed)
    out, at = [], 0
    for name in SEGMENT_COLUMNS:
        if name in CLASS_COLUMNS:
            out.append(values[at:at + _CLASSES])
            at += _CLASSES
        else:
            out.append(values[at])
            at += 1
    return SegmentRecord(*out)


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
        segments: steps or segments of every replica, in the order they ended (those that ended at one
            instant in replica order, :meth:`SegmentTable.in_end_order`): a :class:`SegmentTable`
            (columns; its rows read as :class:`SegmentRecord`).
        events: SimPy events processed.
        ops: op-level records of steps overlapping the simulation's ``op_window`` (empty without one).
        replica_gpus, replica_links: each replica's GPU names and the directed links between them.
        memory: counters of the KV memory hierarchy summed over the replicas (prefix cache, host tier),
            by name (see :meth:`kinsim.engine.scheduler.Scheduler.memory_counters`), and with speculative
            decoding the replicas' ``spec_*`` counters (:attr:`kinsim.engine.replica.Replica.spec_stats`).
        replica_roles: each replica's role: ``both``, or ``prefill`` and ``decode`` when disaggregated.
        disaggregation: the KV handoff's figures (:class:`kinsim.engine.disagg.TransferStats`), or None.
        jobs: processes the replicas ran in (:mod:`kinsim.engine.parallel`).
    """

    sequences: list[Sequence] = field(default_factory=list)
    segments: SegmentTable = field(default_factory=SegmentTable)
    events: int = 0
    ops: list[OpRecord] = field(default_factory=list)
    replica_gpus: list[list[str]] = field(default_factory=list)
    replica_links: list[list[str]] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)
    replica_roles: list[str] = field(default_factory=list)
    disaggregation: dict | None = None
    jobs: int = 1
