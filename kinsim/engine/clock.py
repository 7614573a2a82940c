"""The engine's clock: whole nanoseconds.

SimPy's time is a float; the engine counts it in nanoseconds (``TICKS_PER_S``) and rounds every step's
duration to a whole number of them. Sums of whole numbers below 2**53 (104 days of simulated time) are
exact in floating point whatever their order, so a segment's step boundaries computed at once
(fast-forward) and one step at a time (``exact_steps``) are the same numbers to the last bit, and events
that tie in one mode tie in the other. Rounding moves a step by at most 0.5 ns, far below any cost model's
accuracy. Records and metrics are in seconds.

The clock is exact up to :data:`MAX_TICKS` (2**53 ns, :data:`MAX_RUN_S` = 9,007,199.25 s, about 104 days):
past it, float64 no longer holds every whole nanosecond, step boundaries round, and an arrival at 1e20 s
would be served "at once" (TTFT 0). Arrival times beyond half of it (:data:`kinsim.limits.MAX_TIME_S`, so
that the run after the last arrival is exact too) are refused where they are read or drawn
(:mod:`kinsim.workload.replay`, :mod:`kinsim.workload.generate`), and a simulation whose clock would pass
:data:`MAX_TICKS` stops with an error (:meth:`kinsim.engine.simulation.Simulation.run`).
"""

from __future__ import annotations

import numpy as np

#: Clock ticks per second.
TICKS_PER_S = 1e9

#: The last tick up to which float64 holds every whole tick: 2**53 ns.
MAX_TICKS = float(2**53)

#: :data:`MAX_TICKS` in seconds (about 104 days): the longest run kinsim simulates.
MAX_RUN_S = MAX_TICKS / TICKS_PER_S

#: How :data:`MAX_RUN_S` reads in messages.
MAX_RUN_WORDS = "2^53 ns (9,007,199 s, about 104 days), the range in which the engine's clock is exact"


def to_ticks(seconds):
    """Durations in seconds (float or array, all positive) to whole ticks (as floats), at least one tick."""
    return np.maximum(np.rint(np.asarray(seconds, dtype=float) * TICKS_PER_S), 1.0)


def to_tick(seconds: float) -> float:
    """A time in seconds (zero or more) to the nearest whole tick."""
    return float(round(seconds * TICKS_PER_S))


def to_seconds(ticks: float) -> float:
    return ticks / TICKS_PER_S
