"""Trace file formats: kinsim's own and the public production traces as published (Azure, BurstGPT,
Mooncake). One reader module per format, each returning a :class:`TraceTable`; :func:`read_table`
detects the format by the file's first line unless told."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kinsim.errors import SpecError
from kinsim.reading import checked_file
from kinsim.workload.formats import azure, burstgpt, kinsim_format, mooncake
from kinsim.workload.formats.detect import detect_format
from kinsim.workload.formats.table import TraceTable

#: Readers by format name.
READERS: dict[str, Callable[[str | Path], TraceTable]] = {
    kinsim_format.NAME: kinsim_format.read,
    azure.NAME: azure.read,
    burstgpt.NAME: burstgpt.read,
    mooncake.NAME: mooncake.read,
}

#: Values of a trace's ``format``.
FORMATS = ("auto", *READERS)


def read_table(path: str | Path, format: str = "auto") -> TraceTable:
    """The rows of the trace at ``path`` in ``format`` (``auto``: told by its first line)."""
    path = checked_file(path, "trace", "trace file not found")
    if format == "auto":
        format = detect_format(path)
    if format not in READERS:
        raise SpecError("unknown trace format", value=format, file=str(path), hint="one of " + ", ".join(FORMATS))
    return READERS[format](path)


__all__ = ["FORMATS", "READERS", "TraceTable", "detect_format", "read_table"]
