"""Reading request traces (JSONL or CSV).

Columns (JSONL keys or the CSV header):

=============== ======== ==============================================================
column          required meaning
=============== ======== ==============================================================
request_id      yes      unique name (string or whole number)
group_id        no       requests with the same group share one prompt; default: own id
arrival_s       yes      arrival time in seconds (number >= 0)
prompt_tokens   yes      prompt length, tokens (whole number >= 1)
output_tokens   yes      tokens to generate (whole number >= 1)
score           no       a number carried to reports
=============== ======== ==============================================================

Rows of one group must have the same ``prompt_tokens`` (they share the prompt). Requests are returned
sorted by arrival, ties in file order. Every broken rule is a :class:`SpecError` naming the file, the
line and the column.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.workload.request import Request

REQUIRED_COLUMNS = ("request_id", "arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL_COLUMNS = ("group_id", "score")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


def read_trace(path: str | Path, time_scale: float = 1.0) -> list[Request]:
    """Read the trace at ``path`` (format chosen by extension: ``.jsonl``/``.json`` or ``.csv``)."""
    path = Path(path)
    file = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise SpecError("unknown trace format", value=path.suffix, file=file,
                        hint="name the file .jsonl or .csv")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("trace file not found", file=file) from None
    except (UnicodeDecodeError, OSError) as error:
        raise SpecError(f"cannot be read as UTF-8 text ({error})", file=file) from None
    rows = _jsonl_rows(text, file) if suffix in (".jsonl", ".json") else _csv_rows(text, file)
    requests = [_request(line, row, file, time_scale) for line, row in rows]
    if not requests:
        raise SpecError("holds no requests", file=file)
    _check_groups(requests, [line for line, _ in rows], file)
    order = sorted(range(len(requests)), key=lambda i: (requests[i].arrival_s, i))
    return [requests[i] for i in order]


def _jsonl_rows(text: str, file: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise SpecError(f"is not valid JSON ({error.msg})", path=f"line {number}", file=file) from None
        if not isinstance(row, dict):
            raise SpecError("expected a JSON object", path=f"line {number}", value=row, file=file)
        rows.append((number, row))
    return rows


def _csv_rows(text: str, file: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise SpecError("is empty, expected a header row", file=file)
    header = [h.strip() for h in header]
    for i, name in enumerate(header):
        if name in header[:i]:
            raise SpecError(f"column {name!r} appears twice in the header", path="line 1", file=file)
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise SpecError(f"has {len(cells)} cells, the header has {len(header)}", path=f"line {number}",
                            file=file)
        rows.append((number, {k: v.strip() for k, v in zip(header, cells) if v.strip() != ""}))
    return rows


def _request(line: int, row: dict[str, Any], file: str, time_scale: float) -> Request:
    where = f"line {line}"
    for key in row:
        if key not in COLUMNS:
            raise SpecError(f"unknown column {key!r}", path=where, file=file,
                            hint="columns: " + ", ".join(COLUMNS))
    for key in REQUIRED_COLUMNS:
        if key not in row:
            raise SpecError("missing required column", path=f"{where}.{key}", file=file)
    request_id = _name(row["request_id"], f"{where}.request_id", file)
    group_id = _name(row.get("group_id", request_id), f"{where}.group_id", file)
    arrival = _number(row["arrival_s"], f"{where}.arrival_s", file)
    if arrival < 0:
        raise SpecError("must not be negative", path=f"{where}.arrival_s", value=row["arrival_s"], file=file)
    score = row.get("score")
    return Request(
        request_id=request_id,
        group_id=group_id,
        arrival_s=arrival * time_scale,
        prompt_tokens=_count(row["prompt_tokens"], f"{where}.prompt_tokens", file),
        output_tokens=_count(row["output_tokens"], f"{where}.output_tokens", file),
        score=None if score is None else _number(score, f"{where}.score", file),
    )


def _name(value: Any, path: str, file: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise SpecError("expected a non-empty name or whole number", path=path, value=value, file=file)
    return str(value)


def _number(value: Any, path: str, file: str) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise SpecError("expected a finite number", path=path, value=value, file=file)
    return number


def _count(value: Any, path: str, file: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"\+?[0-9]+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError("expected a whole number of tokens", path=path, value=value, file=file)
    if value < 1:
        raise SpecError("must be at least 1", path=path, value=value, file=file)
    return value


def _check_groups(requests: list[Request], lines: list[int], file: str) -> None:
    seen_ids: dict[str, int] = {}
    prompt_of_group: dict[str, tuple[int, int]] = {}
    for request, line in zip(requests, lines):
        if request.request_id in seen_ids:
            raise SpecError(f"duplicate request_id (first on line {seen_ids[request.request_id]})",
                            path=f"line {line}.request_id", value=request.request_id, file=file)
        seen_ids[request.request_id] = line
        first = prompt_of_group.setdefault(request.group_id, (request.prompt_tokens, line))
        if first[0] != request.prompt_tokens:
            raise SpecError(
                f"differs from the group's prompt_tokens {first[0]} (line {first[1]}); requests of one "
                "group share their prompt", path=f"line {line}.prompt_tokens", value=request.prompt_tokens,
                file=file)
