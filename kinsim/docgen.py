"""Generate the key reference of ``docs/file-formats.md`` from the spec classes.

The tables between the ``BEGIN GENERATED`` and ``END GENERATED`` markers are written by this module;
a test fails when they differ from what the code declares, so a new key cannot go undocumented.
Regenerate with ``python -m kinsim.docgen docs/file-formats.md``.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

from kinsim.hardware.spec import HardwareSpec
from kinsim.model.spec import ModelSpec
from kinsim.schema import iter_keys
from kinsim.units import UNITS, format_quantity
from kinsim.workload.distributions import LengthDistribution, length_field
from kinsim.workload.spec import WorkloadSpec

BEGIN = "<!-- BEGIN GENERATED: python -m kinsim.docgen docs/file-formats.md -->"
END = "<!-- END GENERATED -->"

@dataclasses.dataclass(frozen=True)
class _LengthDistributions:
    """Stand-in holding one length distribution, to document the distributions once."""

    length: LengthDistribution = length_field("A token-length distribution, or a bare number for a constant.")


_DISTRIBUTIONS = set(typing.get_args(LengthDistribution))

SECTIONS = (
    ("Hardware files (`hardware/*.yaml`)", HardwareSpec),
    ("Workload files (`workloads/*.yaml`)", WorkloadSpec),
    ("Model keys (a workload's `model:` or a model YAML file)", ModelSpec),
    ("Token-length distributions (`prompt_tokens`, `output_tokens`)", _LengthDistributions),
)


def _documented_elsewhere(cls: type) -> bool:
    return cls is ModelSpec or cls in _DISTRIBUTIONS


def section_keys(cls: type):
    """The keys documented in the table of section class ``cls`` (models and length distributions are
    documented once, in their own tables)."""
    skip = _documented_elsewhere if cls is WorkloadSpec else (lambda c: False)
    return iter_keys(cls, skip=skip)


def _default_text(key) -> str:
    if key.required:
        return "required"
    if key.default is None:
        return "absent"
    if isinstance(key.default, bool):
        return f"`{str(key.default).lower()}`"
    if isinstance(key.default, (int, float, str)) and not key.unit:
        return f"`{key.default}`" if key.default != "" else '`""`'
    if key.unit:
        return f"`{format_quantity(key.unit, key.default)}`"
    if hasattr(key.default, "KIND"):
        return f"`{key.default.KIND}`"
    return "see below"


def example_of(key) -> str:
    """The example shown for quantity ``key``: its own (``"50 MB"`` for an L2 cache), else its kind's."""
    return key.example or UNITS[key.unit][1].strip(chr(34))


def _unit_text(key) -> str:
    if not key.unit:
        return ""
    return f"{key.type}, e.g. `{example_of(key)}`"


def render_reference() -> str:
    """The generated Markdown: one table per file kind, a row per key."""
    out = []
    for title, cls in SECTIONS:
        out.append(f"### {title}\n")
        out.append("| key | type | default | meaning |")
        out.append("|---|---|---|---|")
        for key in section_keys(cls):
            kind = _unit_text(key) or key.type
            if key.type == "variant":
                out.append(f"| `{key.path}` | | | {key.doc} |")
                continue
            doc = key.doc.replace("|", "\\|")
            out.append(f"| `{key.path}` | {kind} | {_default_text(key)} | {doc} |")
        out.append("")
    return "\n".join(out)


def splice(document: str, generated: str, begin_marker: str = BEGIN) -> str:
    """``document`` with the text between the markers replaced by ``generated``."""
    head, begin, rest = document.partition(begin_marker)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError("the document lacks the generated-section markers")
    return f"{head}{begin_marker}\n\n{generated}\n{END}{tail}"


METRICS_BEGIN = "<!-- BEGIN GENERATED: python -m kinsim.docgen docs/metrics.md -->"


def main(argv: list[str] | None = None) -> int:
    """Regenerate the given documents (default: both): ``file-formats.md`` and ``metrics.md``."""
    from kinsim.metrics import render_metrics_table

    args = sys.argv[1:] if argv is None else argv
    for path in map(Path, args or ["docs/file-formats.md", "docs/metrics.md"]):
        if path.name == "metrics.md":
            text = splice(path.read_text(encoding="utf-8"), render_metrics_table(), METRICS_BEGIN)
        else:
            text = splice(path.read_text(encoding="utf-8"), render_reference())
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
