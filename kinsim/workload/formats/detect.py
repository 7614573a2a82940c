"""Telling a trace's format from its first line: a CSV header or the keys of the first JSON object."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from kinsim.errors import SpecError
from kinsim.reading import csv_rows_checked
from kinsim.workload.formats import azure, burstgpt, cells, kinsim_format, mooncake

#: What each format's first line holds, for detection and for the message when none matches.
EXPECTED = {
    "kinsim": "CSV header or JSON keys request_id, arrival_s, prompt_tokens, output_tokens",
    "azure": "CSV header " + ",".join(azure.HEADER),
    "burstgpt": "CSV header " + ",".join(burstgpt.HEADER) + ",Total tokens,Log Type",
    "mooncake": "JSON keys " + ", ".join(mooncake.KEYS) + ", hash_ids",
}


def detect_format(path: str | Path) -> str:
    """The format of the trace at ``path``: ``kinsim``, ``azure``, ``burstgpt`` or ``mooncake``."""
    file = str(path)
    first = cells.first_line(path)
    if not first:
        raise SpecError("is empty, expected a trace", file=file)
    if first.startswith("{"):
        try:
            row = json.loads(first)
        except json.JSONDecodeError as error:
            raise SpecError(f"is not valid JSON ({error.msg})", path="line 1", file=file) from None
        except RecursionError:
            raise SpecError("is not valid JSON (nests too deep)", path="line 1", file=file) from None
        keys = set(row) if isinstance(row, dict) else set()
        if "request_id" in keys or "arrival_s" in keys:
            return kinsim_format.NAME
        if set(mooncake.KEYS) <= keys:
            return mooncake.NAME
    else:
        header = {h.strip() for h in next(csv_rows_checked(csv.reader([first]), file), [])}
        if set(azure.HEADER) <= header:
            return azure.NAME
        if set(burstgpt.HEADER) <= header:
            return burstgpt.NAME
        if "request_id" in header or "arrival_s" in header:
            return kinsim_format.NAME
    raise SpecError("cannot tell the trace's format from its first line", path="line 1", value=first[:60], file=file,
                    hint="expected one of: " + "; ".join(f"{k} ({v})" for k, v in EXPECTED.items())
                         + "; or name it with format:")
