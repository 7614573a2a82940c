"""Command-line options shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.files import FIGURE_FORMATS
from kinsim.schema import parse_override


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help='override a dotted key of the file, value as in YAML, e.g. --set gpu.memory.bandwidth="6.7 TB/s" '
             "(repeatable)",
    )


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--set`` overrides as a dict of dotted key to value, in the order given."""
    return dict(parse_override(text) for text in args.overrides)


def output_directory(value: str | Path, option: str) -> Path:
    """Check an output directory option before any work: it is not a file, and the nearest folder above it
    that exists is a directory (missing folders are made when the output is written)."""
    path = Path(value)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SpecError("is under a file, not a directory", path=option, value=str(value))
    if path.exists() and not path.is_dir():
        raise SpecError("exists and is not a directory", path=option, value=str(value))
    return path


def output_path(value: str | Path | None, option: str, *, figure: bool = False) -> Path | None:
    """Check an output file option before any work is done (``None`` passes through): its directory exists,
    it is not itself a directory, and a figure's suffix is one of :data:`~kinsim.files.FIGURE_FORMATS`."""
    if value is None:
        return None
    path = Path(value)
    if not path.parent.is_dir():
        raise SpecError("directory does not exist", path=option, value=str(value))
    if path.is_dir():
        raise SpecError("is a directory, expected a file path", path=option, value=str(value))
    if figure and path.suffix.lstrip(".").lower() not in FIGURE_FORMATS:
        raise SpecError("a figure's suffix must be one of ." + ", .".join(FIGURE_FORMATS), path=option,
                        value=str(value))
    return path
