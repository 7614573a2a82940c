"""Segment figures kept as running totals instead of rows (``--records summary`` and ``none``).

:class:`SegmentTotals` takes the engine's segments as :class:`~kinsim.engine.records.SegmentTable` does
(the same :meth:`~SegmentTotals.append`) and keeps what the metrics need of them: sums per op class,
FLOPs, bytes, link time, busy time per replica, KV peak and block-seconds, counts, and the plot series.
The series (output tokens and KV block-seconds over time) are spread over :data:`FINE_BINS` bins whose
width doubles whenever the run outgrows them, and rebinned onto the report's bins at the end, treating
each fine bin as uniform. So memory stays constant however long the run, every total is exact (up to the
order of floating-point sums: within 1e-12 relative of the full records), and only the series are
approximate: a report bin's value can differ from the full records' by what the fine bins at its edges
misplace (at most two fine bins' worth, a few percent of one report bin's width).
"""

from __future__ import annotations

import numpy as np

from kinsim.ops.op import OP_CLASSES

#: Bins of the plot series' fine grid.
FINE_BINS = 4096
#: Width of a fine bin at the start, seconds (it doubles as the run grows).
FIRST_BIN_WIDTH_S = 1e-3


class SegmentTotals:
    """Running totals of the segments of a run on ``replicas`` replicas (see the module docstring)."""

    def __init__(self, replicas: int) -> None:
        classes = len(OP_CLASSES)
        self.rows = 0
        self.steps = 0
        self.prefill_tokens = 0
        self.tokens_out = 0
        self.class_s = [0.0] * classes
        self.class_flops = [0.0] * classes
        self.class_bytes = [0.0] * classes
        self.flops = 0.0
        self.hbm_bytes = 0.0
        self.network_s = 0.0
        self.host_link_s = 0.0
        self.host_link_bytes = 0.0
        self.busy_s = [0.0] * replicas
        self.kv_peak_by_replica = [0] * replicas
        self.kv_block_s_by_replica = [0.0] * replicas
        self.kv_peak_blocks = 0
        self.kv_block_s = 0.0
        self.last_end_s = 0.0
        self.bin_width_s = FIRST_BIN_WIDTH_S
        self._tokens = np.zeros(FINE_BINS)
        self._block_s = np.zeros(FINE_BINS)

    def __len__(self) -> int:
        return self.rows

    def append(self, replica, start_s, end_s, steps, decode_seqs, prefill_tokens, tokens_out, kv_peak_blocks,
               kv_block_s, class_s, class_flops, class_bytes, flops, hbm_bytes, compute_s, memory_s,
               network_s, host_link_s=0.0, host_link_bytes=0.0) -> None:
        """Count one segment (the arguments of :meth:`kinsim.engine.records.SegmentTable.append`)."""
        self.rows += 1
        self.steps += steps
        self.prefill_tokens += prefill_tokens
        self.tokens_out += tokens_out
        for i in range(len(class_s)):
            self.class_s[i] += class_s[i]
            self.class_flops[i] += class_flops[i]
            self.class_bytes[i] += class_bytes[i]
        self.flops += flops
        self.hbm_bytes += hbm_bytes
        self.network_s += network_s
        self.host_link_s += host_link_s
        self.host_link_bytes += host_link_bytes
        self.busy_s[replica] += end_s - start_s
        if kv_peak_blocks > self.kv_peak_blocks:
            self.kv_peak_blocks = kv_peak_blocks
        self.kv_block_s += kv_block_s
        if kv_peak_blocks > self.kv_peak_by_replica[replica]:
            self.kv_peak_by_replica[replica] = kv_peak_blocks
        self.kv_block_s_by_replica[replica] += kv_block_s
        if end_s > self.last_end_s:
            self.last_end_s = end_s
        self._spread(start_s, end_s, tokens_out, kv_block_s)

    def append_columns(self, columns: dict[str, np.ndarray]) -> None:
        """Count rows given as columns (:meth:`kinsim.engine.records.SegmentTable.append_columns`): the same bits
        as :meth:`append` row by row in their order, as arrays. Every running sum adds its terms one at a time
        from the left (``np.cumsum``, which NumPy computes in order, over the total so far and the terms),
        integers and extremes are order-free, and the bins take their shares in row order
        (:meth:`_spread_rows`)."""
        rows = len(columns["replica"])
        if not rows:
            return
        self.rows += rows
        self.steps += int(columns["steps"].sum())
        self.prefill_tokens += int(columns["prefill_tokens"].sum())
        self.tokens_out += int(columns["tokens_out"].sum())
        for name in ("class_s", "class_flops", "class_bytes"):
            totals = getattr(self, name)
            setattr(self, name, _running(np.array(totals), columns[name]).tolist())
        for name in ("flops", "hbm_bytes", "network_s", "host_link_s", "host_link_bytes", "kv_block_s"):
            setattr(self, name, float(_running(getattr(self, name), columns[name])))
        replica, start_s, end_s = columns["replica"], columns["start_s"], columns["end_s"]
        peaks, block_s = columns["kv_peak_blocks"], columns["kv_block_s"]
        busy = end_s - start_s
        for r in np.unique(replica).tolist():
            mine = replica == r
            self.busy_s[r] = float(_running(self.busy_s[r], busy[mine]))
            self.kv_block_s_by_replica[r] = float(_running(self.kv_block_s_by_replica[r], block_s[mine]))
            self.kv_peak_by_replica[r] = max(self.kv_peak_by_replica[r], int(peaks[mine].max()))
        self.kv_peak_blocks = max(self.kv_peak_blocks, int(peaks.max()))
        self.last_end_s = max(self.last_end_s, float(end_s.max()))
        self._spread_rows(start_s, end_s, columns["tokens_out"], block_s)

    def _spread_rows(self, start_s: np.ndarray, end_s: np.ndarray, tokens: np.ndarray, block_s: np.ndarray) -> None:
        """:meth:`_spread` of each row in order, as arrays: the rows up to the first that outgrows the grid, then
        the grid grows, and so on. Each row's shares are :meth:`_spread`'s operations; ``np.add.at`` adds them
        to the bins in row order."""
        at = 0
        rows = len(start_s)
        tokens = tokens.astype(float)
        while at < rows:
            outgrown = np.flatnonzero(end_s[at:] >= FINE_BINS * self.bin_width_s)
            stop = at + int(outgrown[0]) if len(outgrown) else rows
            if stop == at:
                self._spread(float(start_s[at]), float(end_s[at]), float(tokens[at]), float(block_s[at]))
                at += 1
                continue
            width = self.bin_width_s
            start, end = start_s[at:stop], end_s[at:stop]
            first = (start / width).astype(np.int64)
            last = (end / width).astype(np.int64)
            whole = (first == last) | (end <= start)  # one bin takes the row's whole values
            counts = np.where(whole, 1, last - first + 1)
            row = np.repeat(np.arange(stop - at), counts)
            bins = np.repeat(first, counts) + (np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts))
            token_values, block_values = tokens[at:stop][row], block_s[at:stop][row]
            spread = ~whole[row]
            if spread.any():
                b, s, e = bins[spread], start[row[spread]], end[row[spread]]
                overlap = np.clip(np.minimum(e, (b + 1) * width) - np.maximum(s, b * width), 0.0, None)
                share = overlap / (e - s)
                token_values[spread] *= share
                block_values[spread] *= share
            np.add.at(self._tokens, bins, token_values)
            np.add.at(self._block_s, bins, block_values)
            at = stop

    def _spread(self, start_s: float, end_s: float, tokens: float, block_s: float) -> None:
        """Add a segment's tokens and block-seconds to the fine bins, evenly over its duration."""
        while end_s >= FINE_BINS * self.bin_width_s:  # the run outgrew the grid: merge pairs of bins
            self._tokens = np.concatenate((self._tokens.reshape(-1, 2).sum(axis=1), np.zeros(FINE_BINS // 2)))
            self._block_s = np.concatenate((self._block_s.reshape(-1, 2).sum(axis=1), np.zeros(FINE_BINS // 2)))
            self.bin_width_s *= 2
        width = self.bin_width_s
        first, last = int(start_s / width), int(end_s / width)
        if first == last or end_s <= start_s:
            self._tokens[first] += tokens
            self._block_s[first] += block_s
            return
        edges = np.arange(first, last + 2) * width
        overlap = np.clip(np.minimum(end_s, edges[1:]) - np.maximum(start_s, edges[:-1]), 0.0, None)
        share = overlap / (end_s - start_s)
        self._tokens[first:last + 1] += tokens * share
        self._block_s[first:last + 1] += block_s * share

    def series(self, makespan: float, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bin edges, output tokens per bin, block-seconds per bin) on ``bins`` equal bins of
        ``[0, makespan]``, rebinned from the fine grid (each fine bin taken as uniform)."""
        edges = np.linspace(0.0, makespan, bins + 1)
        fine_edges = np.arange(FINE_BINS + 1) * self.bin_width_s
        per_bin = []
        for values in (self._tokens, self._block_s):
            cumulative = np.concatenate(([0.0], np.cumsum(values)))
            at_edges = np.interp(edges, fine_edges, cumulative)
            at_edges[-1] = cumulative[-1]  # the fine bin holding the makespan ends inside the last report bin
            per_bin.append(np.diff(at_edges))
        return edges, per_bin[0], per_bin[1]


def _running(total, terms: np.ndarray):
    """``total`` plus each of ``terms`` (along the first axis) one at a time from the left: what a loop of
    ``+=`` gives, to the bit."""
    return np.cumsum(np.concatenate((np.asarray(total, dtype=float)[None], terms)), axis=0)[-1]
