"""The fast, vectorised path of the readers: pyarrow's CSV and JSON readers.

Each function returns the columns as NumPy arrays, or None when the file holds anything the fast path
does not vouch for (a blank line, an empty cell, a text cell in a number column, a missing key). The
reader then takes the exact row-by-row path (:mod:`kinsim.workload.formats.cells`), which either reads
the same values or raises the one precise error: the fast path only ever decides *that* a file is
ordinary, never *what* is wrong with it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from kinsim.limits import MAX_NESTING

#: Column kinds: ``int`` (int64, whole numbers only), ``float`` (float64, finite), ``str`` (no empty
#: cell), ``category`` (a name: ``NAME.codes`` into ``NAME.names``, in order of first appearance),
#: ``datetime`` (int64 nanoseconds since 1970 UTC), ``ids`` (lists of whole numbers: ``NAME.offsets`` and
#: ``NAME.values``, int32 when every id fits, else int64).
KINDS = ("int", "float", "str", "category", "datetime", "ids")

#: Whether pyarrow's JSON reader parses a block on several threads.
THREADS = True


def count_lines(path: str | Path) -> int:
    """Lines in the file (a last line without a newline counts)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def read_csv(path: str | Path, columns: dict[str, str]) -> dict[str, np.ndarray] | None:
    """``columns`` (name -> kind) of a CSV file whose every data row is ordinary, else None (also when
    pyarrow is not installed)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    if "ids" in columns.values():
        return None  # hash ids in a CSV cell are read by the exact path
    types = {name: pa.string() for name, kind in columns.items() if kind in ("str", "category")}
    try:
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            include_columns=list(columns), column_types=types, strings_can_be_null=True),
            read_options=pcsv.ReadOptions(use_threads=False), memory_pool=pa.system_memory_pool())
    except (pa.ArrowException, OSError, UnicodeDecodeError):
        return None
    if table.num_rows == 0 or table.num_rows != count_lines(path) - 1:
        return None  # blank lines would shift the line numbers
    return _columns(table, columns, ())


def read_jsonl(path: str | Path, columns: dict[str, str], optional: tuple[str, ...] = (),
               block_bytes: int = 1 << 23) -> dict[str, np.ndarray] | None:
    """``columns`` (name -> kind) of a JSONL file whose every line is an ordinary object, else None (also
    when pyarrow is not installed). Columns named in ``optional`` may be absent from the whole file. The
    result's ``__columns__`` lists every key the file has. The file is parsed ``block_bytes`` of whole
    lines at a time, so that memory holds the NumPy columns and one block, not pyarrow's whole table."""
    try:
        import pyarrow as pa
        import pyarrow.json as pj
    except ImportError:
        return None
    parts: list[dict[str, np.ndarray]] = []
    keys: dict[str, None] = {}
    with open(path, "rb") as handle:
        rest = b""
        while True:
            block = handle.read(block_bytes)
            text = rest + block
            if not block:
                rest = b""
            else:
                cut = text.rfind(b"\n") + 1
                text, rest = text[:cut], text[cut:]
            if text:
                if _nests_deeply(text):
                    return None  # pyarrow's parser recurses per level (and crashes far down): the exact path
                try:
                    table = pj.read_json(io.BytesIO(text), read_options=pj.ReadOptions(use_threads=THREADS),
                                         parse_options=pj.ParseOptions(newlines_in_values=False),
                                         memory_pool=pa.system_memory_pool())
                except pa.ArrowException:
                    return None
                lines = text.count(b"\n") + (not text.endswith(b"\n"))
                if table.num_rows != lines:
                    return None  # blank lines would shift the line numbers
                part = _columns(table, columns, optional)
                if part is None:
                    return None
                parts.append(part)
                keys.update(dict.fromkeys(table.column_names))
            if not block:
                break
    if not parts or any(p.keys() != parts[0].keys() for p in parts):
        return None  # an optional column in some blocks only: the exact path fills the gaps
    out = {}
    for name in list(parts[0]):
        pieces = [p.pop(name) for p in parts]
        if name.endswith(".offsets"):
            starts = np.cumsum([0] + [piece[-1] for piece in pieces[:-1]])
            pieces = [pieces[0]] + [piece[1:] + start for piece, start in zip(pieces[1:], starts[1:])]
        out[name] = np.concatenate(pieces)
        del pieces
    out["__columns__"] = np.array(list(keys), dtype=object)
    return out


def _nests_deeply(text: bytes) -> bool:
    """Whether brackets in ``text`` nest more than :data:`~kinsim.limits.MAX_NESTING` deep, counted
    vectorised over the block; brackets inside strings count too, which can only send an ordinary file to
    the exact path, never let a deep one through."""
    data = np.frombuffer(text, dtype=np.uint8)
    step = (data == ord("{")).astype(np.int32) + (data == ord("["))
    step -= (data == ord("}")).astype(np.int32) + (data == ord("]"))
    return bool(len(step)) and int(np.cumsum(step).max()) > MAX_NESTING


def _columns(table, columns: dict[str, str], optional: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for name, kind in columns.items():
        if name not in table.column_names:
            if name in optional:
                continue
            return None
        column = table.column(name).combine_chunks()
        if column.null_count:
            return None
        if kind == "ids":
            if not (pa.types.is_list(column.type) and pa.types.is_integer(column.type.value_type)):
                return None
            if column.values.null_count:
                return None
            offsets = column.offsets.to_numpy().astype(np.int64)
            out[name + ".offsets"] = offsets - offsets[0]
            values = column.flatten().to_numpy()
            small = len(values) == 0 or (values.min() >= -(2**31) and values.max() < 2**31)
            out[name + ".values"] = values.astype(np.int32 if small else np.int64)  # int32 halves the memory
        elif kind == "int" and pa.types.is_integer(column.type):
            out[name] = column.to_numpy().astype(np.int64)
        elif kind == "float" and (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            values = column.to_numpy().astype(np.float64)
            if not np.isfinite(values).all():
                return None
            out[name] = values
        elif kind in ("str", "category") and (pa.types.is_string(column.type) or pa.types.is_integer(column.type)):
            column = pc.utf8_trim_whitespace(column.cast(pa.string()))
            if pc.any(pc.equal(column, "")).as_py():
                return None
            if kind == "str":
                out[name] = np.array(column.to_pylist(), dtype=object)
            else:
                encoded = column.dictionary_encode()
                out[name + ".codes"] = encoded.indices.to_numpy().astype(np.int64)
                out[name + ".names"] = np.array(encoded.dictionary.to_pylist(), dtype=object)
        elif kind == "datetime" and pa.types.is_timestamp(column.type):
            out[name] = column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64()).to_numpy()
        else:
            return None
    return out
