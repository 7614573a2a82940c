"""Reading the JSON that ``kinsim run --json`` writes, with clear errors for anything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.metrics import SECTIONS
from kinsim.reading import read_json


def load_run(path: str | Path) -> dict[str, Any]:
    """The metrics of a run, or :class:`SpecError` naming the file and what is wrong."""
    path = Path(path)
    summary = read_json(path)
    if not isinstance(summary, dict):
        raise SpecError("expected a JSON object written by kinsim run --json", file=str(path))
    for key in SECTIONS:
        if key not in summary:
            raise SpecError("missing key; is this a file written by kinsim run --json?", path=key, file=str(path))
    return summary
