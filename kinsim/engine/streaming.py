"""Figures of a run kept as running totals, for runs too large to record (``--records none`` and
``summary``).

* :class:`LogHistogram`: a latency distribution in logarithmic bins, from which percentiles come with a
  relative error of at most :data:`QUANTILE_RELATIVE_ERROR` (each bin spans a factor ``1 + 2e-3``; a
  percentile is read at the geometric centre of its bin, interpolated between neighbouring order
  statistics as NumPy's linear rule does). Count, mean, minimum and maximum are exact.
* :class:`RequestTotals`: what :mod:`kinsim.metrics` needs of the requests (counts, token totals,
  preemptions, reasons, and the TTFT, TPOT, e2e and task e2e distributions), written as each request ends.
  Groups are tracked only while some member is in flight.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from kinsim.engine.sequence import FINISHED, Sequence
from kinsim.workload.request import RequestTable

#: Smallest and largest latency the histogram resolves, seconds; values outside go to its end bins (their
#: percentiles then read as the bound), and min, max and mean stay exact.
HISTOGRAM_LOW_S, HISTOGRAM_HIGH_S = 1e-9, 1e8
#: Ratio between consecutive bin edges.
BIN_RATIO = 1.002
#: Largest relative error of a percentile read from the histogram (half a bin, in log terms).
QUANTILE_RELATIVE_ERROR = math.sqrt(BIN_RATIO) - 1.0


class LogHistogram:
    """Counts of values in logarithmic bins between :data:`HISTOGRAM_LOW_S` and :data:`HISTOGRAM_HIGH_S`."""

    _LOG_LOW = math.log(HISTOGRAM_LOW_S)
    _LOG_RATIO = math.log(BIN_RATIO)
    BINS = int(math.ceil((math.log(HISTOGRAM_HIGH_S) - math.log(HISTOGRAM_LOW_S)) / math.log(BIN_RATIO))) + 1

    def __init__(self) -> None:
        self.counts = np.zeros(self.BINS, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        if value <= HISTOGRAM_LOW_S:
            self.counts[0] += 1
            return
        index = int((math.log(value) - self._LOG_LOW) / self._LOG_RATIO)
        self.counts[min(index, self.BINS - 1)] += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def _order_statistic(self, rank: int, cumulative: np.ndarray) -> float:
        """The ``rank``-th smallest value (0-based), read at its bin's geometric centre."""
        if rank == 0:
            return self.low
        if rank == self.count - 1:
            return self.high
        index = int(np.searchsorted(cumulative, rank, side="right"))
        centre = math.exp(self._LOG_LOW + (index + 0.5) * self._LOG_RATIO)
        return min(max(centre, self.low), self.high)

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0-100), NumPy's linear interpolation between order statistics."""
        if not self.count:
            return None
        cumulative = np.cumsum(self.counts)
        position = p / 100 * (self.count - 1)
        below = int(math.floor(position))
        share = position - below
        value = self._order_statistic(below, cumulative)
        if share > 0:
            value += share * (self._order_statistic(below + 1, cumulative) - value)
        return value


class RequestTotals:
    """Running totals of the requests of ``table`` (see the module docstring); ``warmup`` first requests
    stay out of the latency distributions."""

    def __init__(self, table: RequestTable, warmup: int = 0) -> None:
        self.table = table
        self.warmup = warmup
        self.total = len(table)
        self.completed = 0
        self.generated = 0
        self.delivered = 0  # output tokens of finished requests
        self.preemptions = 0
        self.last_finish_s = 0.0
        self.reasons: Counter[str] = Counter()
        self.ttft, self.tpot, self.e2e, self.task_e2e = LogHistogram(), LogHistogram(), LogHistogram(), LogHistogram()
        self.tasks_completed = 0
        self._groups: dict[int, list] = {}  # group -> [members left, first arrival, last finish, all finished]
        self._group_size = np.bincount(table.group, minlength=table.groups) if len(table) else np.zeros(0, int)

    def __len__(self) -> int:
        return self.total

    def write(self, seq: Sequence) -> None:
        """Count ``seq``, which has ended (or is left over at the end of the run)."""
        self.generated += seq.generated
        self.preemptions += seq.preemptions
        finished = seq.state == FINISHED
        if seq.finish_s is not None:
            self.last_finish_s = max(self.last_finish_s, seq.finish_s)
        if finished:
            self.completed += 1
            self.delivered += seq.generated
            if seq.order >= self.warmup:
                self.ttft.add(seq.first_token_s - seq.arrival_s)
                if seq.request.output_tokens > 1:
                    self.tpot.add((seq.finish_s - seq.first_token_s) / (seq.request.output_tokens - 1))
                self.e2e.add(seq.finish_s - seq.arrival_s)
        else:
            self.reasons[seq.reason or "no reason recorded (a bug in kinsim)"] += 1
        group = int(self.table.group[seq.order])
        state = self._groups.get(group)
        if state is None:
            state = self._groups[group] = [int(self._group_size[group]), seq.arrival_s, -math.inf, True]
        state[0] -= 1
        state[1] = min(state[1], seq.arrival_s)
        if seq.finish_s is not None:
            state[2] = max(state[2], seq.finish_s)
        state[3] = state[3] and finished
        if state[0] == 0:
            del self._groups[group]
            if state[3]:
                self.tasks_completed += 1
                self.task_e2e.add(state[2] - state[1])

    def never_placed(self, count: int) -> None:
        """``count`` requests never reached a replica (a bug): count them as unfinished."""
        if count:
            self.reasons["never reached a replica (a bug in kinsim)"] += count
