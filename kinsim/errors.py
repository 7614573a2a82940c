"""The one error hierarchy of kinsim.

Every problem with user input is a :class:`KinsimError`. Its message is meant to be read by the person who
wrote the input, so it names the file, the path to the key inside it, the rule that was broken and the
value that broke it, and ends with a hint where one helps::

    hardware/h100.yaml: gpu.memory.bandwidth: expected a bandwidth like "3.35 TB/s", got 3350

The CLI prints that one line and exits 2. Any other exception escaping the CLI is a bug in kinsim.
"""

from __future__ import annotations

import reprlib


class KinsimError(Exception):
    """Root of every error kinsim raises on purpose (bad input, failed checks)."""


class SpecError(KinsimError):
    """A value in a spec (hardware, model, workload, trace) breaks a rule.

    Attributes:
        file: the file the value came from, or None when it was built in Python.
        path: dotted path to the key (``gpu.memory.bandwidth``, ``requests.output_tokens.mean``,
            ``row 12.prompt_tokens`` for a trace); empty for the file as a whole.
        rule: what was expected, as a phrase ("must be positive").
        value: the offending value, shown with ``repr`` when given.
        hint: an optional suggestion to fix it.
    """

    _NO_VALUE = object()

    def __init__(
        self,
        rule: str,
        *,
        path: str = "",
        value: object = _NO_VALUE,
        file: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.rule = rule
        self.path = path
        self.value = value
        self.file = file
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        # Every part can hold text from the input (a file name, a key, a rule quoting a value): each is cut
        # to a bounded length, so a message stays one readable line whatever the input holds.
        parts = []
        if self.file:
            parts.append(_cut(str(self.file), MAX_PART))
        if self.path:
            parts.append(_cut(self.path, MAX_PART))
        text = _cut(self.rule, MAX_TEXT)
        if self.value is not SpecError._NO_VALUE:
            text += f", got {_show(self.value)}"
        if self.hint:
            text += f" (hint: {_cut(self.hint, MAX_TEXT)})"
        parts.append(text)
        return ": ".join(parts)

    def within(self, prefix: str = "", file: str | None = None) -> SpecError:
        """The same error seen from an enclosing key ``prefix`` and/or file ``file``."""
        path = ".".join(p for p in (prefix, self.path) if p)
        if self.path.startswith("["):
            path = prefix + self.path
        return SpecError(
            self.rule, path=path, value=self.value, file=self.file or file, hint=self.hint
        )

    def __reduce__(self):  # keep errors picklable for worker processes
        return (_rebuild_spec_error, (self.rule, self.path, self.value, self.file, self.hint))


def _rebuild_spec_error(rule, path, value, file, hint):
    return SpecError(rule, path=path, value=value, file=file, hint=hint)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 80, 80, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


#: Longest file name or key path a message shows (characters) ...
MAX_PART = 240
#: ... and longest rule or hint (a hint may list what was expected: every trace format's first line).
MAX_TEXT = 600


def _cut(text: str, limit: int) -> str:
    """``text``, or its start and end around " ... " when it is longer than ``limit`` characters."""
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


def show_value(value: object) -> str:
    """How a value appears in a message: see :func:`_show`."""
    return _show(value)


def _show(value: object) -> str:
    """``repr(value)`` cut to 80 characters; a large value is never written out in full (a YAML alias bomb
    stands for billions of values), so the cost is bounded whatever the value."""
    text = _REPR.repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text
