"""The ``kinsim`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Exit codes: 0 success, 1 a failed check (regression, validation of results), 2 bad input (one message
naming the file, key, rule and value; no traceback), 3 an internal error (a bug in kinsim).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from kinsim import __version__
from kinsim.cli import calibrate, compare, info, op, regress, report, run, sweep, validate
from kinsim.cli.helptext import plain_help
from kinsim.errors import KinsimError

COMMANDS = (run, compare, report, sweep, regress, validate, info, op, calibrate)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_BUG = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinsim",
        description="Discrete-event simulator of LLM inference on GPU hardware.",
    )
    parser.add_argument("--version", action="version", version=f"kinsim {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    plain_help(parser)  # descriptions taken from docstrings are reST
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args)
    except KinsimError as error:
        print(f"kinsim: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("kinsim: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - anything else is a bug, reported as one
        print("kinsim: internal error, this is a bug in kinsim; please report it with the traceback below",
              file=sys.stderr)
        traceback.print_exc()
        return EXIT_BUG


def entry_point() -> None:
    """Console-script entry: exit with :func:`main`'s code."""
    sys.exit(main())
