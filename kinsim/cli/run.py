"""``kinsim run WORKLOAD --hw HW``: simulate, print a summary, optionally write the metrics as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from kinsim.cli.options import add_set_option, overrides_of
from kinsim.cli.progress import Progress
from kinsim.cost.registry import COST_MODELS
from kinsim.errors import SpecError
from kinsim.outputs import Outputs
from kinsim.report.summary import summary_lines
from kinsim.workload.replay import trace_notice


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="simulate a workload on hardware",
        description="Simulate serving WORKLOAD on HW and print throughput, latency, where the time went and "
                    "KV-cache use. --set keys address the workload (deployment.max_num_seqs=128) or, with a "
                    "hw. prefix, the hardware (hw.gpu.memory.bandwidth=\"6.7 TB/s\").")
    parser.add_argument("workload", metavar="WORKLOAD", help="workload YAML file")
    parser.add_argument("--hw", required=True, metavar="HW", help="hardware YAML file")
    add_set_option(parser)
    parser.add_argument("--seed", type=int, default=None, help="replace the workload's seed")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the metrics as one JSON object")
    parser.add_argument("--exact-steps", action="store_true",
                        help="one event per step instead of exact fast-forward (same figures, slower)")
    parser.add_argument("--cost-model", default="roofline", choices=tuple(COST_MODELS),
                        help="operator cost model: roofline (with the hardware's calibration profile; the "
                             "default), datasheet (the plain roofline, constant efficiencies) or kinetics "
                             "(the paper's eFLOPs)")
    parser.add_argument("--plots", metavar="DIR", default=None,
                        help="write plots (time by op class, throughput and KV over time, latency CDFs, roofline) "
                             "as PNG and SVG into DIR")
    parser.add_argument("--requests-csv", metavar="PATH", default=None, help="write one row per request")
    parser.add_argument("--steps-csv", metavar="PATH", default=None,
                        help="write one row per step (exact steps) or decode segment (fast-forward)")
    parser.add_argument("--trace", metavar="PATH", default=None,
                        help="write a Chrome Trace Event timeline (open it in ui.perfetto.dev)")
    parser.add_argument("--trace-window", metavar="START:END", default=None,
                        help="keep only the part of the timeline between START and END seconds")
    parser.add_argument("--trace-ops", action="store_true",
                        help="add one slice per kernel kind per step inside --trace-window")
    parser.add_argument("--records", choices=("full", "summary", "none"), default=None,
                        help="what to keep: full (every request and step: the default up to 2 million requests), "
                             "summary (every request, running totals of the steps: the default above) or none "
                             "(running totals only; percentiles within 0.1%%)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="split the replicas among N processes: apart where every request's replica is "
                             "known before the run (round_robin, or all at one instant), or meeting at every "
                             "arrival (least_loaded over open arrivals of single requests); the same figures but "
                             "engine.events; otherwise one process, with a note (default 1)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress on stderr (a bar on a terminal; elsewhere a line every 30 s after 10 s)")
    parser.set_defaults(run=run)


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``"START:END"`` in seconds, or ``None``."""
    if text is None:
        return None
    try:
        start, end = (float(part) for part in text.split(":"))
    except ValueError:
        raise SpecError("expected START:END in seconds, like 10:12.5", path="--trace-window", value=text) from None
    if not 0 <= start < end:
        raise SpecError("needs 0 <= START < END", path="--trace-window", value=text)
    return start, end



def run(args: argparse.Namespace) -> int:
    with Outputs() as outputs:
        summary = _simulate_and_write(args, outputs)
    if not args.quiet:
        print("\n".join(summary_lines(summary)))
    return 0


def _simulate_and_write(args: argparse.Namespace, outputs: Outputs) -> dict:
    """Check the outputs, simulate, produce the outputs (committed by the caller); return the summary."""
    from kinsim.runner import simulate  # the engine (and SimPy) only when a simulation runs

    json_path = outputs.file("--json", args.json)
    requests_csv = outputs.file("--requests-csv", args.requests_csv)
    steps_csv = outputs.file("--steps-csv", args.steps_csv)
    trace_path = outputs.file("--trace", args.trace)
    plots = outputs.directory("--plots", args.plots)
    window = parse_window(args.trace_window)
    if args.trace_ops and (window is None or trace_path is None):
        raise SpecError("needs --trace and --trace-window (op-level slices are kept for a window only)",
                        path="--trace-ops", value=True)
    records = records_needed(args, requests_csv, steps_csv, trace_path)
    progress = Progress("requests", enabled=not (args.quiet or args.no_progress))

    def report(p) -> None:  # a kinsim.engine.simulation.Progress
        progress.update(p.ended, p.total, f"{p.sim_time_s:,.1f} s simulated")

    try:
        result = simulate(args.workload, args.hw, overrides_of(args), seed=args.seed, exact_steps=args.exact_steps,
                          cost_model=args.cost_model, progress=report,
                          op_window=window if args.trace_ops else None, records=records, jobs=args.jobs,
                          notice=None if args.quiet else lambda text: print(f"kinsim: note: {text}",
                                                                            file=sys.stderr))
    finally:
        progress.close()
    summary = result.to_dict()
    if records is None and summary["records"] != "full" and not args.quiet:
        print(f"kinsim: note: {summary['requests']['total']:,} requests: kept running totals of the steps "
              "(--records summary); pass --records full for the step table and timelines", file=sys.stderr)
    notice = trace_notice(summary["inputs"]["trace"]) if summary["inputs"].get("trace") else None
    if notice and not args.quiet:
        print(f"kinsim: note: {notice}", file=sys.stderr)
    if json_path is not None:
        outputs.write_text("--json", json.dumps(summary, indent=2) + "\n")
    if requests_csv is not None:
        outputs.write("--requests-csv", lambda p: result.requests.to_csv(p, index=False))
    if steps_csv is not None:
        outputs.write("--steps-csv", lambda p: result.steps.to_csv(p, index=False))
    if trace_path is not None:
        from kinsim.report.trace import write_trace

        outputs.write("--trace", lambda p: write_trace(p, result.records, summary, window))
    if plots is not None:
        from kinsim.report.plots import write_plots

        outputs.write("--plots", lambda directory: write_plots(summary, directory))
    return summary


def records_needed(args: argparse.Namespace, requests_csv, steps_csv, trace_path) -> str | None:
    """The ``--records`` mode to run with: as given, ``full`` when an output needs every step and none was
    given, else ``None`` (the default by size). A mode too small for a requested output is an error."""
    needs = [(option, "full") for option, path in (("--steps-csv", steps_csv), ("--trace", trace_path))
             if path is not None]
    if requests_csv is not None:
        needs.append(("--requests-csv", "summary"))
    order = ("none", "summary", "full")
    for option, mode in needs:
        if args.records is not None and order.index(args.records) < order.index(mode):
            raise SpecError(f"needs --records {mode} or more (it writes every "
                            f"{'request' if mode == 'summary' else 'step'})", path=option,
                            value=getattr(args, option[2:].replace("-", "_")))
    if args.records is None and any(mode == "full" for _, mode in needs):
        return "full"
    return args.records
