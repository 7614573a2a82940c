"""User text in plots shown as written.

Matplotlib reads any text with a pair of ``$`` as math (``$x_1$``), so a workload, model, hardware, file or
axis name such as ``cost $5 vs $7`` or ``$\\foo$`` would be typeset or, with an unknown command, make the
whole figure fail to draw. Every plot passes user-given text (titles, labels, legend entries, tick labels)
through :func:`plain`, which escapes the dollar signs: with no unescaped ``$`` the text is never math, and
matplotlib shows ``\\$`` as ``$``. Other mathtext specials (``_``, ``^``, ``\\``) are literal outside math.
"""

from __future__ import annotations


def plain(text: object) -> str:
    """``text`` as a string that matplotlib draws literally (never as math)."""
    return str(text).replace("$", r"\$")
