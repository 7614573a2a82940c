"""``python -m kinsim``: the same as the ``kinsim`` command."""

from kinsim.cli import entry_point

entry_point()
