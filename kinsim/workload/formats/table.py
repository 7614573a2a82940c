"""The columns every trace reader produces: one row per request line of the file, in file order.

Readers of every format return a :class:`TraceTable` of NumPy columns, so that a trace of a million rows
costs a few tens of MB and no Python object per row until the rows that are replayed become
:class:`~kinsim.workload.request.Request` objects (:mod:`kinsim.workload.replay`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class TraceTable:
    """The rows of one trace file, in file order (not yet sorted by time).

    Attributes:
        file: the file the rows came from (for messages).
        format: the format it was read as (``kinsim``, ``azure``, ``burstgpt``, ``mooncake``).
        line: int64, the file line of each row (1-based; a CSV header is line 1).
        time_s: float64, arrival of each row in seconds from the trace's origin: its first request in the
            native formats (whose clocks start at a date or an arbitrary offset), 0 s in kinsim's own
            format (whose ``arrival_s`` already counts from the start of the replay).
        prompt_tokens: int64, prompt length of each row, tokens (0 is possible in native formats).
        output_tokens: int64, generated length of each row, tokens (0 marks a failed request in the
            native formats).
        model: int64 codes into ``models`` (BurstGPT's ``Model`` column), or None.
        models: the model names the codes stand for.
        request_id, group_id: names (kinsim's own format), or None: the row's line number names it.
        score: float64 with NaN where a row has none (kinsim's own format), or None.
        hash_offsets, hash_values: the prefix-block hash ids of row ``i`` are
            ``hash_values[hash_offsets[i]:hash_offsets[i + 1]]`` (int32 or int64); None when the format has
            none.
        acceptance: float64 with NaN where a row has none (kinsim's own format's optional speculative
            acceptance rate), or None.
    """

    file: str
    format: str
    line: np.ndarray
    time_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    model: np.ndarray | None = None
    models: tuple[str, ...] = ()
    request_id: list[str] | None = None
    group_id: list[str] | None = None
    score: np.ndarray | None = None
    hash_offsets: np.ndarray | None = None
    hash_values: np.ndarray | None = None
    acceptance: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.line)

    def hash_ids(self, row: int) -> np.ndarray:
        """The hash ids of ``row`` (empty when the trace has none)."""
        if self.hash_offsets is None or self.hash_values is None:
            return np.zeros(0, dtype=np.int64)
        return self.hash_values[self.hash_offsets[row]:self.hash_offsets[row + 1]]


def shifted_to_first(time: np.ndarray) -> np.ndarray:
    """Seconds from the earliest of ``time`` (seconds, float64, or int64 nanoseconds)."""
    if len(time) == 0:
        return time.astype(np.float64)
    if time.dtype == np.int64:  # nanoseconds since an epoch: subtract in integers, keep every digit
        return (time - time.min()).astype(np.float64) / 1e9
    return time - time.min()


def offsets_of(lengths: list[int] | np.ndarray) -> np.ndarray:
    """Offsets (n + 1, int64) of rows with ``lengths`` elements each, laid end to end."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
    return offsets
