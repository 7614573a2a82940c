"""The lean engine's segment rows, kept as their parts and expanded into columns a block at a time.

A decode run's figures are its batch's static column (a decode step's ops other than attention,
:meth:`~kinsim.engine.pricer.StepPricer.decode_static`, one list per batch size) times its steps, plus the
decode attention's sums over the steps (:func:`~kinsim.engine.pricer.add_attention`). Writing that row one by
one costs a list of 24 products, the slices and sums of :class:`~kinsim.engine.records.SegmentRecord`'s
fields and a packing of 34 numbers: about a tenth of a chat run's time in the lean engine. :class:`RowBuffer`
keeps the parts instead (a reference to the shared static list and five numbers) and, every
:attr:`RowBuffer.BLOCK_ROWS` rows and at the end, computes the block's columns with the same operations as
arrays (``value * steps``, then ``add_attention``'s additions in its order, then the FLOPs and bytes summed
over the classes from the first to the last), so every figure is the same bits as the row written alone.
A mixed step's row is its column as the pricer gave it.
"""

from __future__ import annotations

import struct

import numpy as np

from kinsim.engine.pricer import ROWS, add_attention
from kinsim.engine.records import SEGMENT_COLUMNS
from kinsim.engine.replica import _BUSY_ROWS, _BYTES_ROWS, _CLASS_ROWS, _FLOPS_ROWS

#: The head of a row: the record's fields before its figures, in :class:`SegmentRecord`'s order.
_HEAD = ("replica", "start_s", "end_s", "steps", "decode_seqs", "prefill_tokens", "tokens_out", "kv_peak_blocks",
         "kv_block_s")
assert SEGMENT_COLUMNS[:len(_HEAD)] == _HEAD
_FLOAT_HEAD = frozenset({"start_s", "end_s", "kv_block_s"})
_HEAD_FIELDS = [(name, np.float64 if name in _FLOAT_HEAD else np.int64) for name in _HEAD]
#: A mixed step packed: its head, then its column.
_STEP_DTYPE = np.dtype(_HEAD_FIELDS + [("column", np.float64, (24,))])
#: A decode run packed: its head, its static column's number, then the layers and the attention's sums.
_RUN_DTYPE = np.dtype(_HEAD_FIELDS + [("static", np.int64), ("layers", np.int64)]
                      + [(name, np.float64) for name in ("seconds", "flops", "nbytes", "compute", "memory")])
_HEAD_CODES = "".join("d" if name in _FLOAT_HEAD else "q" for name in _HEAD)
_pack_step = struct.Struct("=" + _HEAD_CODES + "24d").pack
_pack_run = struct.Struct("=" + _HEAD_CODES + "qq5d").pack
assert struct.calcsize("=" + _HEAD_CODES + "24d") == _STEP_DTYPE.itemsize
assert struct.calcsize("=" + _HEAD_CODES + "qq5d") == _RUN_DTYPE.itemsize
_BUSY_NAMES = ("compute_s", "memory_s", "network_s", "host_link_s", "host_link_bytes")


class RowBuffer:
    """Segment rows of the lean engine, written to ``sink`` (a :class:`~kinsim.engine.records.SegmentTable` or
    :class:`~kinsim.engine.segment_totals.SegmentTotals`: its ``append_columns``) in the order they were added.

    Rows are packed as they come (``struct``: the head's nine numbers, then a mixed step's column, or a decode
    run's static column's number and its attention sums), so that a block costs one conversion per kind."""

    #: Rows kept before they are expanded and written.
    BLOCK_ROWS = 4096

    __slots__ = ("sink", "_steps", "_runs", "_kinds", "_statics", "_static_ids", "_static_array")

    def __init__(self, sink) -> None:
        self.sink = sink
        self._steps: list[bytes] = []  # mixed steps: head and column
        self._runs: list[bytes] = []  # decode runs: head, static column's number, layers and attention sums
        self._kinds = bytearray()  # per row in order: 0 a mixed step, 1 a decode run
        self._statics: list[list[float]] = []  # the static columns by number
        self._static_ids: dict[int, int] = {}  # a static column's number by its id
        self._static_array = np.zeros((0, len(ROWS)))  # the static columns as rows, those numbered so far

    def static(self, column: list[float]) -> int:
        """The number of ``column`` (a decode step's figures other than attention, kept by the caller for the
        whole run, never changed) for :meth:`run`."""
        number = self._static_ids.get(id(column))
        if number is None:
            number = self._static_ids[id(column)] = len(self._statics)
            self._statics.append(column)
        return number

    def step(self, replica: int, start_s: float, end_s: float, decode_seqs: int, prefill_tokens: int,
             tokens_out: int, kv_peak_blocks: int, kv_block_s: float, column: list[float]) -> None:
        """A mixed step (one step) and its figures (a column in the order of :data:`~kinsim.engine.pricer.ROWS`)."""
        self._steps.append(_pack_step(replica, start_s, end_s, 1, decode_seqs, prefill_tokens, tokens_out,
                                      kv_peak_blocks, kv_block_s, *column))
        self._kinds.append(0)
        if len(self._kinds) >= self.BLOCK_ROWS:
            self.flush()

    def run(self, replica: int, start_s: float, end_s: float, steps: int, decode_seqs: int, tokens_out: int,
            kv_peak_blocks: int, kv_block_s: float, static: int, layers: int, seconds: float, flops: float,
            nbytes: float, compute: float, memory: float) -> None:
        """A decode run of ``steps`` steps: static column number ``static`` (:meth:`static`) times the steps plus
        the decode attention's sums over them: ``seconds`` of all ``layers`` layers, and the FLOPs, HBM bytes,
        compute and memory seconds of one layer (:func:`~kinsim.engine.pricer.add_attention`'s terms)."""
        self._runs.append(_pack_run(replica, start_s, end_s, steps, decode_seqs, 0, tokens_out, kv_peak_blocks,
                                    kv_block_s, static, layers, seconds, flops, nbytes, compute, memory))
        self._kinds.append(1)
        if len(self._kinds) >= self.BLOCK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Expand the kept rows into columns and write them."""
        if not self._kinds:
            return
        kinds = np.frombuffer(bytes(self._kinds), dtype=np.uint8)
        steps = np.frombuffer(b"".join(self._steps), dtype=_STEP_DTYPE)
        runs = np.frombuffer(b"".join(self._runs), dtype=_RUN_DTYPE)
        self._steps, self._runs, self._kinds = [], [], bytearray()
        at_runs = np.flatnonzero(kinds)
        at_steps = np.flatnonzero(kinds == 0)
        out = {}
        for name in _HEAD:
            column = np.empty(len(kinds), dtype=_STEP_DTYPE[name])
            column[at_steps] = steps[name]
            column[at_runs] = runs[name]
            out[name] = column
        matrix = np.empty((len(kinds), len(ROWS)))
        matrix[at_steps] = steps["column"]
        if len(runs):
            if len(self._static_array) < len(self._statics):  # (converted once each)
                self._static_array = np.concatenate(
                    (self._static_array, np.array(self._statics[len(self._static_array):]).reshape(-1, len(ROWS))))
            part = self._static_array[runs["static"]] * runs["steps"][:, None]
            add_attention(part.T, runs["layers"], runs["seconds"], runs["flops"], runs["nbytes"], runs["compute"],
                          runs["memory"])
            matrix[at_runs] = part
        out["class_s"] = matrix[:, _CLASS_ROWS]
        out["class_flops"] = class_flops = matrix[:, _FLOPS_ROWS]
        out["class_bytes"] = class_bytes = matrix[:, _BYTES_ROWS]
        out["flops"] = _sum_in_order(class_flops)
        out["hbm_bytes"] = _sum_in_order(class_bytes)
        for name, values in zip(_BUSY_NAMES, matrix[:, _BUSY_ROWS].T):
            out[name] = values
        self.sink.append_columns(out)


def _sum_in_order(classes: np.ndarray) -> np.ndarray:
    """Each row's sum from the first class to the last, as Python's ``sum`` of the row adds it (NumPy's own sum
    may pair the terms differently)."""
    total = classes[:, 0].copy()
    for j in range(1, classes.shape[1]):
        total += classes[:, j]
    return total


assert len(ROWS) == 24 and ROWS[_BUSY_ROWS] == _BUSY_NAMES
