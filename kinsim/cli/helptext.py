"""Help texts as plain text: the CLI takes some descriptions from module docstrings, which are reST
(``--db`` in double backquotes, :mod:`kinsim.units` roles); ``kinsim CMD --help`` shows them without the
markup, paragraph by paragraph."""

from __future__ import annotations

import argparse
import re
import textwrap

#: ``:role:`target``` and ``:domain:role:`target```; ``~`` keeps the last dotted part, ``text <target>`` the text.
_ROLE = re.compile(r":(?:[A-Za-z]+:)?[A-Za-z]+:`(~?)([^`]*?)`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_REFERENCE = re.compile(r"`([^`]+?)`_{1,2}")
_INTERPRETED = re.compile(r"`([^`]+?)`")
_STRONG = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    named = re.fullmatch(r"(.*?)\s*<[^>]*>", target, re.DOTALL)
    if named:
        return named.group(1)
    return target.rsplit(".", 1)[-1] if tilde else target


def plain_text(text: str | None) -> str | None:
    """``text`` without reST markup: roles, double-backquoted literals, links and strong emphasis become
    their words (``(see :mod:`kinsim.units`)`` reads ``(see kinsim.units)``); a paragraph's closing
    ``::`` becomes ``:``. Indentation common to all lines is removed; ``None`` passes through."""
    if not isinstance(text, str):
        return text
    text = textwrap.dedent(text)
    text = _ROLE.sub(_role, text)
    text = _LITERAL.sub(r"\1", text)
    text = _REFERENCE.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    return re.sub(r"::(\s*(?:\n|$))", r":\1", text)


class ParagraphHelpFormatter(argparse.HelpFormatter):
    """Fills each paragraph of a description on its own, so the blank lines between paragraphs stay."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
        return "\n\n".join(textwrap.fill(" ".join(p.split()), width, initial_indent=indent,
                                         subsequent_indent=indent) for p in paragraphs)


def subparsers_of(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of each subcommand of ``parser``, in the order they were added."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    found.append((name, sub))
    return found


def plain_help(parser: argparse.ArgumentParser) -> None:
    """Make every help text of ``parser`` and its subcommands plain (:func:`plain_text`), with paragraphs."""
    parser.formatter_class = ParagraphHelpFormatter
    parser.description = plain_text(parser.description)
    parser.epilog = plain_text(parser.epilog)
    for action in parser._actions:
        if action.help is not argparse.SUPPRESS:
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help)
    for _, sub in subparsers_of(parser):
        plain_help(sub)
