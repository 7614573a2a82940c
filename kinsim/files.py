"""Writing output files so that a failure never leaves a partial one behind."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: File formats a figure may be written in (the output path's suffix chooses).
FIGURE_FORMATS = ("png", "svg", "pdf")


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write`` on a temporary file next to ``path``, then move it into place in one step."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; when the block ends without an error its files
    replace ``path``'s (created if absent); on an error nothing of it is left behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        from kinsim.errors import SpecError

        raise SpecError("exists and is not a directory", path="--out", value=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        path.mkdir(exist_ok=True)
        for item in tmp.iterdir():
            item.replace(path / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """:func:`write_atomically` for a text file (UTF-8)."""
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_figure(figure: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure atomically in the format its suffix names (:data:`FIGURE_FORMATS`), with the
    same bytes for the same figure: no creation date in SVG or PDF, and SVG element ids from a fixed salt."""
    fmt = Path(path).suffix.lstrip(".").lower()
    return write_atomically(path, lambda tmp: write_figure(figure, tmp, fmt, dpi=dpi))


def write_figure(figure: Any, path: str | Path, fmt: str, dpi: int = 110) -> None:
    """Write a matplotlib figure to ``path`` (not atomically) in format ``fmt``, with the same bytes for the
    same figure (see :func:`save_figure`)."""
    import matplotlib

    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    with matplotlib.rc_context({"svg.hashsalt": "kinsim"}):
        figure.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
