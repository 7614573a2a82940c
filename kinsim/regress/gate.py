"""Comparing a suite's figures with its baseline, and writing the verdicts (table, JUnit XML, Markdown)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from kinsim import __version__
from kinsim.errors import SpecError
from kinsim.metrics import better_direction, figure_unit
from kinsim.reading import read_json
from kinsim.regress.suite import Suite, finite_number
from kinsim.units import format_figure

PASS, REGRESSION, IMPROVEMENT, NEW, MISSING = "ok", "REGRESSION", "improved", "new", "missing"


@dataclass(frozen=True)
class Verdict:
    """One case and metric: the baseline and current values, the relative change and the verdict."""

    case: str
    metric: str
    baseline: float | None
    now: float | None
    change: float | None
    tolerance: float
    verdict: str


def measure(suite: Suite) -> dict[str, dict[str, float]]:
    """Run every case; return its guarded metrics (their keys were checked when the suite was loaded)."""
    from kinsim.metrics import figure_of
    from kinsim.runner import simulate

    figures = {}
    for case in suite.cases:
        try:
            summary = simulate(case.workload, case.hardware, case.overrides).to_dict()
        except SpecError as error:
            raise SpecError(str(error), path=f"cases.{case.name}", file=suite.file) from None
        figures[case.name] = {metric: figure_of(summary, metric) for metric in case.metrics}
    return figures


def load_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not os.path.lexists(path):
        raise SpecError("baseline not found", file=str(path), hint="write one with kinsim regress SUITE --update")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), dict):
        raise SpecError("expected a baseline written by kinsim regress --update", path="cases", file=str(path))
    for name, figures in data["cases"].items():
        if not isinstance(figures, dict):
            raise SpecError("expected a mapping of metric keys to numbers", path=f"cases.{name}", file=str(path))
        for metric, value in figures.items():
            # JSON's NaN and Infinity (which Python reads) would compare as regressions whatever the figure
            if value is not None and finite_number(value) is None:
                raise SpecError("expected a finite number or null", path=f"cases.{name}.{metric}", value=value,
                                file=str(path))
    return data


def baseline_document(suite: Suite, figures: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {"kinsim": __version__, "suite": suite.name, "cases": figures}


def judge(suite: Suite, figures: dict[str, dict[str, float]], baseline: dict[str, Any]) -> list[Verdict]:
    """A verdict per case and metric: within tolerance, a regression, an improvement to accept, new (no
    baseline value) or missing (no value now).

    A figure may be ``null`` (``cost_usd`` without a GPU price, a latency with nothing to measure): null in
    both is within tolerance; a number where the baseline has none is new, and none where it had one missing.
    """
    verdicts = []
    for case in suite.cases:
        old = baseline["cases"].get(case.name, {})
        for metric, tolerance in case.metrics.items():
            now, base = figures.get(case.name, {}).get(metric), old.get(metric)
            if base is None or now is None:
                if base is None and now is None and metric in old:
                    verdict = PASS  # null in the baseline and now
                else:
                    verdict = NEW if base is None else MISSING
                verdicts.append(Verdict(case.name, metric, base, now, None, tolerance, verdict))
                continue
            change = (now - base) / abs(base) if base else (0.0 if now == base else float("inf"))
            if abs(change) <= tolerance:
                verdict = PASS
            elif change * better_direction(metric) > 0:
                verdict = IMPROVEMENT
            else:
                verdict = REGRESSION
            verdicts.append(Verdict(case.name, metric, base, now, change, tolerance, verdict))
    return verdicts


def failing(verdict: str, strict: bool) -> bool:
    """A regression, a missing or new value fails the gate; with ``strict`` an improvement does too."""
    return verdict in (REGRESSION, MISSING, NEW) or (strict and verdict == IMPROVEMENT)


def exit_code(verdicts: list[Verdict], strict: bool) -> int:
    """1 when any verdict fails the gate, else 0."""
    return 1 if any(failing(v.verdict, strict) for v in verdicts) else 0


def _num(value: float | None, metric: str = "") -> str:
    """A figure in its unit, to six significant digits (``54.8312 GB``): enough to see what moved."""
    return format_figure(figure_unit(metric), value, digits=6)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4%}"


def table_lines(verdicts: list[Verdict]) -> list[str]:
    rows = [("case", "metric", "baseline", "now", "change", "verdict")]
    rows += [(v.case, v.metric, _num(v.baseline, v.metric), _num(v.now, v.metric), _pct(v.change), v.verdict)
             for v in verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return ["  ".join(c.ljust(w) if i < 2 or i == 5 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            .rstrip() for r in rows]


def summary_line(verdicts: list[Verdict], strict: bool) -> str:
    counts = {k: sum(v.verdict == k for v in verdicts) for k in (PASS, REGRESSION, IMPROVEMENT, NEW, MISSING)}
    status = "FAIL" if exit_code(verdicts, strict) else "PASS"
    parts = [f"{counts[PASS]} within tolerance", f"{counts[REGRESSION]} regressed", f"{counts[IMPROVEMENT]} improved"]
    parts += [f"{counts[k]} {k}" for k in (NEW, MISSING) if counts[k]]
    advice = ""
    if counts[IMPROVEMENT] or counts[NEW] or counts[REGRESSION]:
        advice = "; if the change is intended, rerun with --update and commit the baseline with the reason"
    return f"regress {status}: {len(verdicts)} checks, " + ", ".join(parts) + advice


def junit_xml(suite: Suite, verdicts: list[Verdict], strict: bool) -> str:
    failures = sum(failing(v.verdict, strict) for v in verdicts)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuite name={quoteattr("kinsim regress " + suite.name)} tests="{len(verdicts)}" '
             f'failures="{failures}">']
    for v in verdicts:
        name = quoteattr(f"{v.case}: {v.metric}")
        message = (f"baseline {_num(v.baseline, v.metric)}, now {_num(v.now, v.metric)}, change {_pct(v.change)}, "
                   f"tolerance {v.tolerance:g}: {v.verdict}")
        if failing(v.verdict, strict):
            lines.append(f'  <testcase classname={quoteattr(v.case)} name={name}><failure message={quoteattr(message)}>'
                         f"{escape(message)}</failure></testcase>")
        else:
            lines.append(f'  <testcase classname={quoteattr(v.case)} name={name}><system-out>{escape(message)}'
                         "</system-out></testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"


def markdown(suite: Suite, verdicts: list[Verdict], strict: bool) -> str:
    icon = {PASS: "ok", REGRESSION: "**regression**", IMPROVEMENT: "improved (accept with --update)",
            NEW: "**new: no baseline**", MISSING: "**missing**"}
    lines = [f"### kinsim regress: {suite.name}", "", summary_line(verdicts, strict), "",
             "| case | metric | baseline | now | change | verdict |", "|---|---|---:|---:|---:|---|"]
    lines += [f"| {v.case} | `{v.metric}` | {_num(v.baseline, v.metric)} | {_num(v.now, v.metric)} | "
              f"{_pct(v.change)} | {icon[v.verdict]} |" for v in verdicts]
    return "\n".join(lines) + "\n"


def version_note(baseline: dict[str, Any]) -> str | None:
    """A line when the baseline was written by another kinsim version."""
    written = baseline.get("kinsim")
    if written != __version__:
        return f"note: the baseline was written by kinsim {written}, this is kinsim {__version__}"
    return None


def extra_cases(suite: Suite, baseline: dict[str, Any]) -> list[str]:
    """Baseline cases the suite no longer has."""
    names = {case.name for case in suite.cases}
    return sorted(name for name in baseline["cases"] if name not in names)
