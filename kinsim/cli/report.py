"""``kinsim report RUN.json -o report.html``: one self-contained HTML page for a run."""

from __future__ import annotations

import argparse

from kinsim.outputs import Outputs


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a run",
        description="Write one HTML page (plots embedded, nothing fetched from a network) with the summary, "
                    "breakdown, latency, throughput and KV plots, and the hardware and workload of a run "
                    "written by kinsim run --json.")
    parser.add_argument("run_file", metavar="RUN.json", help="metrics written by kinsim run --json")
    parser.add_argument("-o", "--output", required=True, metavar="PATH", help="the HTML file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kinsim.report.html import render_report
    from kinsim.report.runfile import load_run

    with Outputs() as outputs:
        output = outputs.file("--output", args.output)
        outputs.write_text("--output", render_report(load_run(args.run_file)))
    print(f"wrote {output}")
    return 0
