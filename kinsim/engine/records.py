"""What the engine writes down: plain records that metrics and reports read."""

from __future__ import annotations

import struct
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
    count) and buffers at most :attr:`BLOCK_ROWS` rows; then the buffer moves into the columns, one NumPy
    array per column with room to spare. A full column grows in place by an eighth (``ndarray.resize``, a
    ``realloc``: a large array is its own memory mapping, which the kernel extends without copying), so a
    table never holds its rows twice. Keeping blocks and joining them when read, as this table first did,
    held every row twice at that moment, and the freed blocks stayed in the process (small allocations
    between them): 10^6 chat requests peaked at 1,680 MiB, of which 700 MiB came in the last two seconds.
    A row costs 272 bytes, plus at most an eighth for the room to spare (given back when a column is
    read), plus the buffer (about a megabyte at most). Indexing and iteration give :class:`SegmentRecord`
    rows built on the fly (Python ints and floats, a tuple per class), for tests and small consumers;
    metrics and reports read :meth:`column`.
    """

    #: Rows buffered (as packed bytes) before they move into the columns; also a column's first size.
    BLOCK_ROWS = 4096

    __slots__ = ("_buffer", "_columns", "_rows", "_lent")

    def __init__(self) -> None:
        self._buffer: list[bytes] = []
        self._columns: dict[str, np.ndarray] = {}  # by name, each with at least ``_rows`` rows; none yet
        self._rows = 0  # rows in the columns (the buffer's come after them)
        self._lent = False  # a view of the columns was given out: they must not move or change

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
        them) after those added so far (the lean engine's rows, :mod:`kinsim.engine.row_buffer`)."""
        self._flush()
        self._write(columns, len(columns["replica"]))

    def __len__(self) -> int:
        return self._rows + len(self._buffer)

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
        if name not in _ROW_DTYPE.names:
            raise KeyError(f"no segment column {name!r}; the columns are {', '.join(SEGMENT_COLUMNS)}")
        self._flush()
        if not self._columns:
            view = np.zeros(0, dtype=_ROW_DTYPE)[name]
        else:
            if not self._lent:  # the last chance to give back the room to spare: views fix the columns
                self._resize(self._rows)
                self._lent = True
            view = self._columns[name][:self._rows]
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
        if i >= self._rows:
            return _unpack(self._buffer[i - self._rows])
        return SegmentRecord(*(_python(self._columns[name][i]) for name in SEGMENT_COLUMNS))

    def __iter__(self) -> Iterator[SegmentRecord]:
        """Every row as a :class:`SegmentRecord`, in order (the rows there were when iteration began)."""
        rows, buffer = self._rows, list(self._buffer)
        if rows:  # views of the columns, so they must stay where they are (rows added later copy them)
            self._lent = True
            arrays = [self._columns[name][:rows] for name in SEGMENT_COLUMNS]
            for start in range(0, rows, self.BLOCK_ROWS):  # a block's rows as Python objects at a time
                lists = [a.tolist() if a.ndim == 1 else list(map(tuple, a.tolist()))
                         for a in (array[start:start + self.BLOCK_ROWS] for array in arrays)]
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
        gives them), in their order. Arrays of the right type are taken as they are, not copied."""
        table = cls()
        rows = len(columns["replica"])
        if rows:
            table._columns = {name: np.ascontiguousarray(columns[name], dtype=_ROW_DTYPE[name].base)
                              for name in SEGMENT_COLUMNS}
            table._rows = rows
            table._lent = True  # arrays from outside: never resized in place
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

        if len(tables) == 1:  # already in order (as a run in one process writes it): as it is, without a sort
            ends, replica = tables[0].column("end_s"), tables[0].column("replica")
            if ((ends[1:] > ends[:-1]) | ((ends[1:] == ends[:-1]) & (replica[1:] >= replica[:-1]))).all():
                return tables[0]

        def joined(name: str) -> np.ndarray:
            return tables[0].column(name) if len(tables) == 1 else np.concatenate([t.column(name) for t in tables])

        order = np.lexsort((joined("replica"), joined("end_s")))
        # where each row goes; then a column at a time, each table's rows put in their places (no joined copy
        # of the column), so that at any moment the join holds one column beyond the tables and the result.
        # A table whose rows keep their order in the result (one already in end order, as every process's is)
        # goes in by a mask of its places: twice as fast as by their indices, four times for the class columns.
        place = np.empty_like(order)
        place[order] = np.arange(len(order))
        starts = np.cumsum([0] + [len(table) for table in tables])
        places = []
        for start, end in zip(starts, starts[1:]):
            rows = place[start:end]
            if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():
                places.append(rows)
            else:
                mask = np.zeros(len(order), dtype=bool)
                mask[rows] = True
                places.append(mask)
        del order, place
        columns = {}
        for name in SEGMENT_COLUMNS:
            column = columns[name] = np.empty((starts[-1],) + _ROW_DTYPE[name].shape, dtype=_ROW_DTYPE[name].base)
            for table, where in zip(tables, places):
                column[where] = table.column(name)
                if consume:
                    del table._columns[name]
        if consume:
            for table in tables:
                table._columns, table._rows, table._lent = {}, 0, False
        return cls.from_columns(columns)

    def _flush(self) -> None:
        """Move the buffered rows into the columns."""
        if not self._buffer:
            return
        rows = np.frombuffer(b"".join(self._buffer), dtype=_ROW_DTYPE)
        self._buffer = []
        self._write({name: rows[name] for name in SEGMENT_COLUMNS}, len(rows))

    def _write(self, columns: dict[str, np.ndarray], rows: int) -> None:
        """Put ``rows`` rows given as columns after the rows in the columns."""
        if not rows:
            return
        end = self._rows + rows
        if not self._columns:
            self._columns = {name: np.empty((max(end, self.BLOCK_ROWS),) + _ROW_DTYPE[name].shape,
                                            dtype=_ROW_DTYPE[name].base) for name in SEGMENT_COLUMNS}
        capacity = len(self._columns["replica"])
        if end > capacity:
            self._resize(max(end, capacity + capacity // 8))
        for name in SEGMENT_COLUMNS:
            self._columns[name][self._rows:end] = columns[name]
        self._rows = end

    def _resize(self, capacity: int) -> None:
        """Give every column room for ``capacity`` rows (at least the rows it holds): in place while no view
        of it was given out (``realloc``; new room is zeros), else as a copy, which leaves the views as they
        were."""
        for name in SEGMENT_COLUMNS:
            old = self._columns[name]
            if len(old) == capacity and not self._lent:
                continue
            if not self._lent and old.flags.owndata:
                old.resize((capacity,) + old.shape[1:], refcheck=False)
            else:
                new = np.empty((capacity,) + old.shape[1:], dtype=old.dtype)
                new[:self._rows] = old[:self._rows]
                self._columns[name] = new
        if self._lent:
            self._lent = False  # the new arrays are this table's own


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
