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


def output_path(value: str | Path | None, option: str, *, figure: bool = False) -> Path | None:
    """Check the shape of a file path option before any work is done (``None`` passes through): its directory
    exists, it is not itself a directory, and a figure's suffix is one of :data:`~kinsim.files.FIGURE_FORMATS`.
    Commands write their outputs through :class:`kinsim.outputs.Outputs`, which checks more (that the file
    can be written) and writes all or none."""
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
