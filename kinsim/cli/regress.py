"""``kinsim regress SUITE``: run a suite of simulations and compare their figures with a baseline.

Exit 1 when a guarded figure moved the wrong way beyond its tolerance (or a case has no baseline);
an improvement beyond tolerance is reported as a change to accept, a failure only with ``--strict``.
``--update`` rewrites the baseline on purpose. The baseline defaults to ``SUITE`` with ``.baseline.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kinsim.outputs import Outputs


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("regress", help="check simulated figures against a committed baseline",
                                   description=__doc__.split("\n\n", 1)[1])
    parser.add_argument("suite", metavar="SUITE", help="suite YAML: cases and guarded metrics")
    parser.add_argument("--baseline", metavar="FILE", default=None,
                        help="baseline JSON (default: next to the suite, SUITE.baseline.json)")
    parser.add_argument("--update", action="store_true", help="write the current figures as the new baseline")
    parser.add_argument("--strict", action="store_true", help="an improvement beyond tolerance fails too")
    parser.add_argument("--junit", metavar="FILE", default=None, help="write JUnit XML for CI systems")
    parser.add_argument("--markdown", metavar="FILE", default=None, help="write a Markdown report (a PR comment)")
    parser.set_defaults(run=run)


def default_baseline(suite_file: str | Path) -> Path:
    path = Path(suite_file)
    return path.with_name(path.stem + ".baseline.json")


def run(args: argparse.Namespace) -> int:
    from kinsim.regress.gate import (
        baseline_document,
        exit_code,
        extra_cases,
        judge,
        junit_xml,
        load_baseline,
        markdown,
        measure,
        summary_line,
        table_lines,
        version_note,
    )
    from kinsim.regress.suite import load_suite

    suite = load_suite(args.suite)
    baseline_path = Path(args.baseline) if args.baseline else default_baseline(args.suite)
    with Outputs() as outputs:
        outputs.file("--junit", args.junit)
        outputs.file("--markdown", args.markdown)
        if args.update:
            outputs.file("--update", baseline_path)  # writes the baseline (read otherwise, by load_baseline)
        baseline = None if args.update else load_baseline(baseline_path)
        figures = measure(suite)
        if args.update:
            outputs.write_text("--update", json.dumps(baseline_document(suite, figures), indent=2) + "\n")
        else:
            verdicts = judge(suite, figures, baseline)
            if args.junit:
                outputs.write_text("--junit", junit_xml(suite, verdicts, args.strict))
            if args.markdown:
                outputs.write_text("--markdown", markdown(suite, verdicts, args.strict))
    if args.update:
        print(f"wrote {baseline_path}: {sum(len(m) for m in figures.values())} figures of {len(figures)} cases")
        return 0
    note = version_note(baseline)
    if note:
        print(note)
    for name in extra_cases(suite, baseline):
        print(f"note: the baseline has case {name!r}, which the suite no longer runs")
    print("\n".join(table_lines(verdicts)))
    print(summary_line(verdicts, args.strict))
    return exit_code(verdicts, args.strict)
