"""``kinsim ... --help``: plain text for people, whatever the reST of the docstrings it is built from."""

from __future__ import annotations

import re

import pytest

from kinsim.cli import build_parser, main
from kinsim.cli.helptext import plain_text, subparsers_of


def _commands(parser=None, prefix=()):
    """Every command line that has its own help: ``()``, ``("run",)``, ``("calibrate", "fit")``, ..."""
    parser = parser or build_parser()
    found = [prefix]
    for name, sub in subparsers_of(parser):
        found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands()

#: reST that must not reach a terminal.
MARKUP = re.compile(r"``|`|:(mod|func|class|meth|data|attr|ref|doc|exc|obj|py:\w+):|\*\*")


def test_every_command_and_subcommand_is_covered():
    names = {" ".join(c) for c in COMMANDS}
    # the walk finds nested commands: calibrate's steps and op's kinds
    assert {"run", "sweep", "regress", "calibrate", "calibrate measure", "calibrate import", "calibrate fit",
            "calibrate validate", "op gemm", "op step", "info"} <= names
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "kinsim")
def test_help_is_plain_text(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kinsim")
    assert not MARKUP.search(out), MARKUP.search(out).group(0)


def _help(capsys, *command) -> str:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return capsys.readouterr().out


def test_help_keeps_the_words_and_the_paragraphs(capsys):
    words = " ".join(_help(capsys, "sweep").split())
    assert "Results go to an SQLite file (--db, default next to the sweep file), keyed by" in words
    words = " ".join(_help(capsys, "regress").split())
    assert "a failure only with --strict. --update rewrites the baseline on purpose." in words
    out = _help(capsys, "calibrate")
    words = " ".join(out.split())
    assert ("(see kinsim.calibration.measure; also python -m kinsim.calibration.measure where kinsim is not "
            "installed)") in words
    # each step's paragraph starts a line of its own after a blank line
    for step in ("import aiconfigurator --system", "fit DIR --hw HW -o PROFILE:", "validate DIR --hw HW:"):
        assert f"\n\n{step}" in out


@pytest.mark.parametrize("rest, plain", [
    ("(``--db``, default)", "(--db, default)"),
    ("see :mod:`kinsim.calibration.measure`.", "see kinsim.calibration.measure."),
    (":func:`~kinsim.units.parse_quantity` parses", "parse_quantity parses"),
    (":py:class:`kinsim.errors.SpecError`", "kinsim.errors.SpecError"),
    (":ref:`the formats <file-formats>`", "the formats"),
    ("a `link <https://example.org>`_ and `name`_", "a link <https://example.org> and name"),
    ("**strong** and ``a\nb``", "strong and a\nb"),
    ("Example::\n\n    kinsim run", "Example:\n\n    kinsim run"),
    ("  indented\n  lines", "indented\nlines"),
    ("50%% of %(default)s", "50%% of %(default)s"),  # argparse's own markers pass through
    (None, None),
])
def test_plain_text(rest, plain):
    assert plain_text(rest) == plain
