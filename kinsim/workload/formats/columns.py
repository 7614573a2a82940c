"""Reading the named columns of a trace file into NumPy arrays: fast when the file is ordinary, exact
(one precise error naming the file, the line and the column) when it is not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinsim.errors import SpecError
from kinsim.workload.formats import cells, fast
from kinsim.workload.formats.table import offsets_of


@dataclass(frozen=True)
class Column:
    """One column a reader needs: its ``name`` in the file, its ``kind`` (see
    :data:`kinsim.workload.formats.fast.KINDS`), the least value a number may take, whether every
    row must have it, and the most a number may take (token counts: MAX_TOKENS, checked before any cap)."""

    name: str
    kind: str
    minimum: float | None = None
    required: bool = True
    maximum: float | None = None


def read_columns(path: str | Path, columns: tuple[Column, ...], *, jsonl: bool,
                 known: tuple[str, ...] | None = None,
                 fast_path: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(line of each row, {column name: values}) of the file's data rows in file order.

    Optional columns absent from the whole file are absent from the result; an ``ids`` column comes back
    as ``NAME.offsets`` and ``NAME.values``. With ``known``, any other column is an error (kinsim's own
    format); without it, other columns are ignored (a native format's columns kinsim has no use for).
    ``fast_path=False`` reads row by row even an ordinary file (the tests check both paths agree).
    """
    file = str(path)
    present = _present(path, columns, jsonl, known)
    wanted = {c.name: c.kind for c in columns if c.name in present}
    optional = tuple(c.name for c in columns if not c.required)
    values = None
    if fast_path:
        values = fast.read_jsonl(path, wanted, optional) if jsonl else fast.read_csv(path, wanted)
    if values is not None and jsonl and known is not None:
        if any(name not in known for name in values.pop("__columns__")):
            values = None
    if values is not None and _ordinary(values, columns):
        values.pop("__columns__", None)
        first = 1 if jsonl else 2
        rows = len(values[columns[0].name])
        return np.arange(first, first + rows, dtype=np.int64), values
    return _exact(path, columns, jsonl, known, present, file)


def _present(path, columns, jsonl, known) -> set[str]:
    """Columns the file has: the CSV header (checked for the required columns of a native format and for
    unknown columns of kinsim's own), or for JSONL the columns the reader asks for (each row is checked on
    its own; so is each CSV row of kinsim's own format, which names the missing cell's first line)."""
    if jsonl:
        return {c.name for c in columns}
    file = str(path)
    header = cells.csv_header(path)
    for column in columns:
        if known is None and column.required and column.name not in header:
            raise SpecError(f"missing required column {column.name!r}", path="line 1", file=file,
                            hint="header: " + ",".join(c.name for c in columns if c.required))
    if known is not None:
        for name in header:
            if name not in known:
                raise SpecError(f"unknown column {name!r}", path="line 1", file=file,
                                hint="columns: " + ", ".join(known))
        return set(header) | {c.name for c in columns if c.required}
    return set(header)


def _ordinary(values: dict[str, np.ndarray], columns: tuple[Column, ...]) -> bool:
    """Whether the fast path's values keep every minimum and maximum (else the exact path names the first
    row)."""
    for column in columns:
        if column.name not in values:
            continue
        if column.minimum is not None and (values[column.name] < column.minimum).any():
            return False
        if column.maximum is not None and (values[column.name] > column.maximum).any():
            return False
    return True


def _exact(path, columns, jsonl, known, present, file) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rows = cells.jsonl_rows(path) if jsonl else cells.csv_rows(path)
    lines: list[int] = []
    out: dict[str, list] = {c.name: [] for c in columns if c.name in present}
    seen: set[str] = set()
    for line, row in rows:
        if known is not None:
            for key in row:
                if key not in known:
                    raise SpecError(f"unknown column {key!r}", path=f"line {line}", file=file,
                                    hint="columns: " + ", ".join(known))
        lines.append(line)
        for column in columns:
            if column.name not in out:
                continue
            where = f"line {line}.{column.name}"
            if column.name not in row:
                if column.required:
                    raise SpecError("missing required column", path=where, file=file)
                out[column.name].append(None)
                continue
            seen.add(column.name)
            out[column.name].append(_cell(row[column.name], column, where, file))
    if not lines:
        raise SpecError("holds no requests", file=file)
    result: dict[str, np.ndarray] = {}
    for column in columns:
        if column.name not in out or (not column.required and column.name not in seen):
            continue
        result.update(_array(column, out[column.name]))
    return np.array(lines, dtype=np.int64), result


def _cell(value, column: Column, where: str, file: str):
    kind = column.kind
    if kind == "int":
        number = cells.count(value, where, file, minimum=int(column.minimum or 0))
        if column.maximum is not None and number > column.maximum:
            raise SpecError(f"must be at most {column.maximum:,.0f}, the most tokens a request may have", path=where,
                            value=value, file=file)
        return number
    if kind == "float":
        number = cells.number(value, where, file)
        if column.minimum is not None and number < column.minimum:
            raise SpecError(f"must be at least {column.minimum:g}" if column.minimum else "must not be negative",
                            path=where, value=value, file=file)
        if column.maximum is not None and number > column.maximum:
            raise SpecError(f"must be at most {column.maximum:g}", path=where, value=value, file=file)
        return number
    if kind in ("str", "category"):
        return cells.name(value, where, file)
    if kind == "datetime":
        return cells.datetime_ns(value, where, file)
    if kind == "ids":
        return cells.id_list(value, where, file)
    raise ValueError(f"unknown column kind {kind!r}")


def _array(column: Column, values: list) -> dict[str, np.ndarray]:
    kind = column.kind
    if kind == "ids":
        lists = [v or [] for v in values]
        flat = np.fromiter((x for ids in lists for x in ids), dtype=np.int64)
        return {column.name + ".offsets": offsets_of([len(v) for v in lists]), column.name + ".values": flat}
    if kind == "str":
        return {column.name: np.array(values, dtype=object)}
    if kind == "category":
        codes: dict[str, int] = {}
        return {column.name + ".codes": np.array([codes.setdefault(v, len(codes)) for v in values], dtype=np.int64),
                column.name + ".names": np.array(list(codes), dtype=object)}
    if kind == "float":
        return {column.name: np.array([np.nan if v is None else v for v in values], dtype=np.float64)}
    return {column.name: np.array(values, dtype=np.int64)}
