"""The ``kinsim`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Exit codes: 0 success, 1 a failed check (regression, validation of results), 2 bad input (one message
naming the file, key, rule and value; no traceback), 3 an internal error (a bug in kinsim).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from kinsim import __version__
from kinsim.cli import calibrate, compare, frontier, info, op, regress, report, run, samples, sweep, validate
from kinsim.cli.helptext import plain_help
from kinsim.errors import KinsimError

COMMANDS = (run, compare, report, sweep, frontier, samples, regress, validate, info, op, calibrate)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_BUG = 0, 1, 2, 3
#: Exit codes of a process ended by a signal, as a shell reports them (128 + the signal's number).
EXIT_PIPE_CLOSED, EXIT_TERMINATED = 128 + signal.SIGPIPE, 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: unwind like an interrupt, so that temporaries are removed and worker processes
    stopped on the way out (a BaseException, so that no ``except Exception`` swallows it)."""


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


@functools.lru_cache(maxsize=1)
def _shared_parser() -> argparse.ArgumentParser:
    """The parser :func:`main` uses, built once per process (about 20 ms: a library caller or a test that
    calls ``main`` many times pays it once). Parsing does not change a parser, so reuse is safe."""
    return build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = _shared_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    previous = _terminate_on_sigterm()
    try:
        return args.run(args)
    except KinsimError as error:
        print(f"kinsim: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader of stdout went away (``kinsim info X | head -3``): stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_PIPE_CLOSED
    except KeyboardInterrupt:
        print("kinsim: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("kinsim: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception:  # noqa: BLE001 - anything else is a bug, reported as one
        print("kinsim: internal error, this is a bug in kinsim; please report it with the traceback below",
              file=sys.stderr)
        traceback.print_exc()
        return EXIT_BUG
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` while a command runs (main thread only); returns the handler
    it replaced, or ``None`` where none could be installed."""
    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a library caller's worker thread): leave signals alone
        return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (a test's capture)
        pass


def entry_point() -> None:
    """Console-script entry: exit with :func:`main`'s code."""
    sys.exit(main())
