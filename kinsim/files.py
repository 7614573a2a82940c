"""Writing output files so that a failure never leaves a partial one behind."""

from __future__ import annotations

from collections.abc import Callable
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
