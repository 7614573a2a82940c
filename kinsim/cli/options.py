"""Command-line options shared by several commands."""

from __future__ import annotations

import argparse
from typing import Any

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
