"""Reading a trace file row by row and converting its cells strictly, with errors naming the file, the
line and the column (``trace.csv: line 4.prompt_tokens: expected a whole number of tokens, got '12.5'``).

This is the exact path every reader falls back on when its fast, vectorised path meets anything unusual
(a blank line, a bad cell, a missing key): it either reads the file or raises the one precise error.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.limits import MAX_NESTING
from kinsim.reading import csv_rows_checked, open_checked

#: Longest first line read to tell a trace's format (a header or one JSON object).
FIRST_LINE_CHARS = 1 << 20


def open_text(path: str | Path):
    """``path`` opened as UTF-8 text (a byte-order mark at its start dropped, as spreadsheets write it), or a
    :class:`SpecError` when it cannot be (or is not a regular file within the size cap of a trace:
    :mod:`kinsim.reading`)."""
    return io.TextIOWrapper(open_checked(path, "trace", "trace file not found"), encoding="utf-8-sig", newline="")


def _lines(handle, file: str) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError as error:
        raise SpecError(f"cannot be read as UTF-8 text ({error})", file=file) from None


def first_line(path: str | Path) -> str:
    """The first non-blank line of the file ('' when there is none); a line of more than
    :data:`FIRST_LINE_CHARS` characters is refused without reading it whole."""
    with open_text(path) as handle:
        for line in _lines(iter(lambda: handle.readline(FIRST_LINE_CHARS + 1), ""), str(path)):
            if len(line) > FIRST_LINE_CHARS:
                raise SpecError(f"its first line is longer than {FIRST_LINE_CHARS:,} characters, expected a "
                                "CSV header or a JSON object", path="line 1", file=str(path))
            if line.strip():
                return line.strip().lstrip("\ufeff")
    return ""


def csv_header(path: str | Path) -> list[str]:
    """The stripped header cells of a CSV file; a :class:`SpecError` when it is empty or repeats a column."""
    file = str(path)
    with open_text(path) as handle:
        header = next(csv_rows_checked(csv.reader(_lines(handle, file)), file), None)
    if header is None:
        raise SpecError("is empty, expected a header row", file=file)
    header = [h.strip().lstrip("\ufeff") for h in header]
    for i, name in enumerate(header):
        if name in header[:i]:
            raise SpecError(f"column {name!r} appears twice in the header", path="line 1", file=file)
    return header


def csv_rows(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: stripped cell}) of each non-blank data row; empty cells are left out."""
    file = str(path)
    header = csv_header(path)
    with open_text(path) as handle:
        reader = csv.reader(_lines(handle, file))
        next(reader)
        for cells in csv_rows_checked(reader, file):
            if not any(c.strip() for c in cells):
                continue
            line = reader.line_num
            if len(cells) != len(header):
                raise SpecError(f"has {len(cells)} cells, the header has {len(header)}", path=f"line {line}",
                                file=file)
            yield line, {k: v.strip() for k, v in zip(header, cells) if v.strip() != ""}


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) of each non-blank line of a JSONL file."""
    file = str(path)
    with open_text(path) as handle:
        for number, line in enumerate(_lines(handle, file), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise SpecError(f"is not valid JSON ({error.msg})", path=f"line {number}", file=file) from None
            except RecursionError:
                raise SpecError(f"is not valid JSON (nests more than {MAX_NESTING} deep)", path=f"line {number}",
                                file=file) from None
            if not isinstance(row, dict):
                raise SpecError("expected a JSON object", path=f"line {number}", value=row, file=file)
            yield number, row


def require(row: dict[str, Any], columns: tuple[str, ...], line: int, file: str) -> None:
    """A :class:`SpecError` naming the first of ``columns`` missing from ``row``."""
    for key in columns:
        if key not in row:
            raise SpecError("missing required column", path=f"line {line}.{key}", file=file)


def name(value: Any, path: str, file: str) -> str:
    """A non-empty string or whole number, as a string."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise SpecError("expected a non-empty name or whole number", path=path, value=value, file=file)
    return str(value)


def number(value: Any, path: str, file: str) -> float:
    """A finite number (a JSON number or a numeric CSV cell)."""
    try:
        result = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        result = math.nan
    if not math.isfinite(result):
        raise SpecError("expected a finite number", path=path, value=value, file=file)
    return result


def count(value: Any, path: str, file: str, minimum: int = 0) -> int:
    """A whole number of tokens, at least ``minimum``."""
    if isinstance(value, str) and re.fullmatch(r"\+?[0-9]+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError("expected a whole number of tokens", path=path, value=value, file=file)
    if value < minimum:
        raise SpecError(f"must be at least {minimum}", path=path, value=value, file=file)
    return value


_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                       r"\s*(Z|[+-]\d{2}:?\d{2})?")


def datetime_ns(value: Any, path: str, file: str) -> int:
    """A date and time like ``2023-11-16 18:15:46.6805900`` or ``2024-05-10 00:00:00.009930+00:00`` as
    integer nanoseconds since 1970-01-01 UTC (a time without an offset is taken as UTC)."""
    match = _DATETIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise SpecError("expected a date and time like 2023-11-16 18:15:46.6805900", path=path, value=value,
                        file=file)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
        if not (1 <= int(month) <= 12 and 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]
                and int(hour) < 24 and int(minute) < 60 and int(second) < 61):
            raise ValueError
    except ValueError:
        raise SpecError("is not a valid date and time", path=path, value=value, file=file) from None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def id_list(value: Any, path: str, file: str) -> list[int]:
    """Hash ids: a JSON list of whole numbers, or a CSV cell of whole numbers separated by spaces or
    semicolons."""
    ids: list[int] | None = None
    if isinstance(value, str):
        parts = [p for p in re.split(r"[;\s]+", value.strip()) if p]
        if all(re.fullmatch(r"\+?-?[0-9]+", p) for p in parts):
            ids = [int(p) for p in parts]
    elif isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        ids = value
    if ids is None:
        raise SpecError("expected a list of whole numbers (hash ids)", path=path, value=value, file=file)
    for hash_id in ids:  # they are kept as int64
        if not -(2**63) <= hash_id < 2**63:
            raise SpecError("a hash id must fit a 64-bit integer", path=path, value=hash_id, file=file)
    return ids
