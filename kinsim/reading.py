"""The one path by which kinsim reads its input files.

Every file is checked before a byte of it is read: a symbolic-link loop, a directory, a FIFO, a socket or
a device (``/dev/zero`` would never end, a FIFO would block for ever) and a file larger than the cap for
its kind (:data:`kinsim.limits.MAX_FILE_BYTES`) are refused with one line naming the file and why. JSON
is parsed with its nesting bounded (:data:`kinsim.limits.MAX_NESTING`).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.limits import MAX_FILE_BYTES, MAX_NESTING

_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _refuse_os_error(error: OSError, file: str, not_found: str) -> SpecError:
    if error.errno == errno.ENOENT:
        if os.path.islink(file):
            return SpecError("is a symbolic link to a file that does not exist", file=file)
        return SpecError(not_found, file=file)
    if error.errno == errno.ELOOP:
        return SpecError("is a symbolic link loop, not a file", file=file)
    if error.errno == errno.EISDIR:
        return SpecError("is a directory, expected a file", file=file)
    return SpecError(f"cannot be read ({error.strerror or error})", file=file)


def check_stat(st: os.stat_result, file: str, kind: str) -> None:
    """Refuse what ``st`` describes unless it is a regular file within the size cap of ``kind``."""
    if stat.S_ISDIR(st.st_mode):
        raise SpecError("is a directory, expected a file", file=file)
    for test, what in _NOT_REGULAR:
        if test(st.st_mode):
            raise SpecError(f"is {what}, not a regular file; kinsim reads only regular files", file=file)
    if not stat.S_ISREG(st.st_mode):
        raise SpecError("is not a regular file", file=file)
    cap = MAX_FILE_BYTES[kind]
    if st.st_size > cap:
        raise SpecError(f"is {_size(st.st_size)}, larger than the {_size(cap)} a {kind} input may be", file=file)


def checked_file(path: str | Path, kind: str, not_found: str = "file not found") -> Path:
    """``path`` when it is a regular file of at most the cap for ``kind`` (a key of
    :data:`~kinsim.limits.MAX_FILE_BYTES`), else a :class:`SpecError` naming it and why."""
    file = str(path)
    try:
        st = os.stat(file)
    except OSError as error:
        raise _refuse_os_error(error, file, not_found) from None
    except ValueError:  # a NUL byte in the name
        raise SpecError("is not a valid file name", file=file) from None
    check_stat(st, file, kind)
    return Path(path)


def checked_reference(target: str | Path, kind: str, file: str | None, key: str, value: Any) -> Path:
    """:func:`checked_file` for a file that ``key`` of ``file`` names as ``value``: a refusal names the key
    and the value as written (``target`` may be a resolved path, a symbolic link followed)."""
    try:
        return checked_file(target, kind)
    except SpecError as error:
        raise SpecError(error.rule, path=key, value=value, file=file) from None


def open_checked(path: str | Path, kind: str, not_found: str = "file not found"):
    """``path`` opened for reading in binary, after the checks of :func:`checked_file`. The file is opened
    without blocking and checked again on the open descriptor, so a FIFO swapped in after the check cannot
    block the read either."""
    file = str(checked_file(path, kind, not_found))
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise _refuse_os_error(error, file, not_found) from None
    try:
        check_stat(os.fstat(fd), file, kind)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_bytes(path: str | Path, kind: str, not_found: str = "file not found") -> bytes:
    """The bytes of a checked input file (at most the cap for ``kind``, even if it grows meanwhile)."""
    cap = MAX_FILE_BYTES[kind]
    with open_checked(path, kind, not_found) as handle:
        try:
            data = handle.read(cap + 1)
        except OSError as error:
            raise _refuse_os_error(error, str(path), not_found) from None
    if len(data) > cap:
        raise SpecError(f"is larger than the {_size(cap)} a {kind} input may be", file=str(path))
    return data


def read_text(path: str | Path, kind: str, not_found: str = "file not found") -> str:
    """The UTF-8 text of a checked input file (a leading byte-order mark is dropped)."""
    data = read_bytes(path, kind, not_found)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(f"is not UTF-8 text (byte {error.start})", file=str(path)) from None


def parse_json(text: str, file: str, where: str = "") -> Any:
    """JSON ``text`` parsed, nesting at most :data:`MAX_NESTING` deep; errors say ``not JSON: ...``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"not JSON: {error}", path=where, file=file) from None
    except RecursionError:
        raise SpecError(f"nests lists and objects more than {MAX_NESTING} deep", path=where, file=file) from None
    check_nesting(data, file, where)
    return data


def read_json(path: str | Path, kind: str = "json", not_found: str = "file not found") -> Any:
    """A checked JSON input file, parsed (:func:`parse_json`)."""
    data = read_bytes(path, kind, not_found)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(f"not JSON: not UTF-8 text (byte {error.start})", file=str(path)) from None
    return parse_json(text, str(path))


def check_nesting(data: Any, file: str | None, where: str = "") -> None:
    """A :class:`SpecError` when lists and mappings in ``data`` nest more than :data:`MAX_NESTING` deep
    (walked without recursion, so any depth is measured safely)."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth >= MAX_NESTING:
            raise SpecError(f"nests lists and mappings more than {MAX_NESTING} deep", path=where, file=file)
        stack.extend((child, depth + 1) for child in children)


def csv_rows_checked(reader: Iterator[Any], file: str) -> Iterator[Any]:
    """The rows of a ``csv`` reader, with its errors (a cell longer than the csv module's limit of
    131,072 characters, a NUL byte) refused as a :class:`SpecError` naming the file and line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            line = getattr(getattr(reader, "reader", reader), "line_num", 0)  # a DictReader's own is one behind
            raise SpecError(f"is not valid CSV ({error})", path=f"line {line}" if line else "", file=file) from None
        yield row


def resolved(path: str | Path, file: str | None = None, key: str = "") -> Path:
    """``Path(path).resolve()``, with a symbolic-link loop refused as a :class:`SpecError`: naming ``key``
    of ``file`` when given, else the path itself."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        if key:
            raise SpecError("is a symbolic link loop, not a file", path=key, value=str(path), file=file) from None
        raise SpecError("is a symbolic link loop, not a file", file=str(path)) from None
