"""``kinsim compare``: headline metrics of several runs side by side, with ratios and a plot.

``kinsim compare A.json B.json ...`` compares runs written by ``kinsim run --json``;
``kinsim compare WORKLOAD --hw H1 --hw H2`` (or several workloads on one ``--hw``) runs them first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kinsim.cli.options import add_set_option, overrides_of
from kinsim.errors import SpecError
from kinsim.outputs import Outputs


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare runs side by side (JSON files, or workloads x hardware run now)",
        description="Compare the headline metrics of several runs, with ratios to the first. Give run files "
                    "written by kinsim run --json, or workload files with one or more --hw (every workload "
                    "runs on every hardware).")
    parser.add_argument("files", nargs="*", metavar="FILE", help="RUN.json files, or workload YAML files")
    parser.add_argument("--workload", action="append", default=[], metavar="WORKLOAD",
                        help="a workload to run (repeatable; adds to the FILE arguments)")
    parser.add_argument("--hw", action="append", default=[], metavar="HW", help="hardware to run on (repeatable)")
    add_set_option(parser)
    parser.add_argument("--plot", metavar="PATH", default=None, help="write a bar chart of the ratios (PNG or SVG)")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the comparison as JSON")
    parser.set_defaults(run=run)


def _label(path: str) -> str:
    return Path(path).stem


def gather_runs(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(label, metrics) for each run to compare, loading or simulating as the arguments say."""
    from kinsim.report.runfile import load_run

    json_files = [f for f in args.files if f.endswith(".json")]
    if json_files:
        if len(json_files) != len(args.files) or args.workload or args.hw:
            raise SpecError("give either run files (.json) or workloads with --hw, not both", path="FILE",
                            value=" ".join(args.files))
        runs = [(_label(f), load_run(f)) for f in json_files]
    else:
        workloads = list(args.files) + list(args.workload)
        if not workloads or not args.hw:
            raise SpecError("needs run files, or at least one workload and one --hw", path="FILE", value="")
        from kinsim.runner import simulate

        runs = []
        for workload in workloads:
            for hw in args.hw:
                if len(workloads) == 1:
                    label = _label(hw)
                elif len(args.hw) == 1:
                    label = _label(workload)
                else:
                    label = f"{_label(workload)}@{_label(hw)}"
                runs.append((label, simulate(workload, hw, overrides_of(args)).to_dict()))
    if len(runs) < 2:
        raise SpecError("needs at least two runs to compare", path="FILE", value=len(runs))
    return runs


def run(args: argparse.Namespace) -> int:
    from kinsim.report.compare import compare_rows, format_table, plot_compare

    with Outputs() as outputs:
        outputs.file("--plot", args.plot, figure=True)
        outputs.file("--json", args.json)
        runs = gather_runs(args)
        if args.json:
            outputs.write_text("--json", json.dumps({"runs": [label for label, _ in runs],
                                                     "metrics": compare_rows(runs)}, indent=2) + "\n")
        if args.plot:
            outputs.write_figure("--plot", plot_compare(runs))
    print("\n".join(format_table(runs)))
    return 0
