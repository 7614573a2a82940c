"""``kinsim validate FILE...``: check hardware, workload, model, trace, sweep and regression-suite files."""

from __future__ import annotations

import argparse

from kinsim.cli.options import add_set_option, overrides_of
from kinsim.inputs import load_input


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate", help="check hardware, workload, model, trace, sweep and suite files",
        description="Check each file; print one line per valid file. Exit 0 when all are valid, 2 with "
                    "the first problem's message otherwise.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="files to check (YAML, config.json, "
                        "JSONL or CSV trace; a sweep's every point is resolved)")
    add_set_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = overrides_of(args)
    for name in args.files:
        loaded = load_input(name, overrides)
        detail = f", {len(loaded.requests)} requests" if loaded.requests is not None else ""
        detail += f", {loaded.detail}" if loaded.detail else ""
        print(f"ok  {name} ({loaded.kind}{detail})")
    return 0
