"""Progress of long commands on stderr: a redrawn bar on a terminal, a plain line now and then elsewhere.

On a terminal the bar appears after the first second and is redrawn in place. When stderr is a file or a
pipe (a CI log, ``nohup``), a redrawn bar would be noise, and silence would look like a hang: a job there
prints one line every :data:`LOG_EVERY_S` seconds of wall time, starting after the first
:data:`LOG_AFTER_S`, so that short commands print nothing. ``--quiet`` (every command that runs
simulations) or ``--no-progress`` silences both.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Wall seconds before the first progress output (short commands stay silent).
BAR_AFTER_S = 1.0
LOG_AFTER_S = 10.0
#: Wall seconds between two progress lines when stderr is not a terminal.
LOG_EVERY_S = 30.0


class Progress:
    """Report ``done`` of ``total`` units (requests, points) with an optional detail, on ``stream``."""

    def __init__(self, unit: str, *, enabled: bool = True, stream: TextIO | None = None, width: int = 30) -> None:
        self.unit, self.enabled, self.width = unit, enabled, width
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.terminal = self.stream.isatty()
        except (AttributeError, ValueError):
            self.terminal = False
        self.started = time.monotonic()
        self.last_line = self.started
        self.drawn = False

    def update(self, done: int, total: int, detail: str = "") -> None:
        """Show ``done`` of ``total`` if it is time to."""
        if not self.enabled:
            return
        now = time.monotonic()
        elapsed = now - self.started
        text = f"{done:,}/{total:,} {self.unit}" + (f", {detail}" if detail else "")
        if self.terminal:
            if elapsed < BAR_AFTER_S:
                return
            filled = int(self.width * done / total) if total else self.width
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {text}")
            self.drawn = True
        else:
            first = self.last_line == self.started
            if elapsed < LOG_AFTER_S or (not first and now - self.last_line < LOG_EVERY_S):
                return
            self.last_line = now
            self.stream.write(f"kinsim: progress: {text}, {elapsed:,.0f} s elapsed\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line (a terminal only)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
