"""The engine's clock: whole nanoseconds.

SimPy's time is a float; the engine counts it in nanoseconds (``TICKS_PER_S``) and rounds every step's
duration to a whole number of them. Sums of whole numbers below 2**53 (104 days of simulated time) are
exact in floating point whatever their order, so a segment's step boundaries computed at once
(fast-forward) and one step at a time (``exact_steps``) are the same numbers to the last bit, and events
that tie in one mode tie in the other. Rounding moves a step by at most 0.5 ns, far below any cost model's
accuracy. Records and metrics are in seconds.
"""

from __future__ import annotations

import numpy as np

#: Clock ticks per second.
TICKS_PER_S = 1e9


def to_ticks(seconds):
    """Durations in seconds (float or array, all positive) to whole ticks (as floats), at least one tick."""
    return np.maximum(np.rint(np.asarray(seconds, dtype=float) * TICKS_PER_S), 1.0)


def to_tick(seconds: float) -> float:
    """A time in seconds (zero or more) to the nearest whole tick."""
    return float(round(seconds * TICKS_PER_S))


def to_seconds(ticks: float) -> float:
    return ticks / TICKS_PER_S
