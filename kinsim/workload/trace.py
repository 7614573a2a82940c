"""Reading request traces: kinsim's own JSONL or CSV, or a public production trace as published.

The formats live in :mod:`kinsim.workload.formats` (one reader module each, and detection by the first
line); the options of ``requests: {kind: trace}`` (model filter, failed rows, time window, rate scale,
sampling, caps) in :mod:`kinsim.workload.replay`. Every broken rule is a :class:`SpecError` naming the
file, the line and the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kinsim.workload.formats.kinsim_format import COLUMNS_NAMES as COLUMNS
from kinsim.workload.formats.kinsim_format import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from kinsim.workload.replay import replay_trace
from kinsim.workload.request import Request
from kinsim.workload.spec import TraceRequests


def read_trace(path: str | Path, time_scale: float = 1.0, *, format: str = "auto", seed: int = 0,
               **options: Any) -> list[Request]:
    """The requests the trace at ``path`` replays, sorted by arrival (ties in file order).

    ``options`` are the other keys of ``requests: {kind: trace}`` (``model``, ``skip_failed``, ``start``
    and ``duration`` in seconds, ``rate_scale``, ``sample``, ``max_prompt_tokens``, ...); ``seed`` drives
    ``sample``.
    """
    source = TraceRequests(path=str(path), format=format, time_scale=time_scale, **options)
    return replay_trace(source, seed).requests


__all__ = ["COLUMNS", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "read_trace"]
