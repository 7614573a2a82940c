"""``kinsim frontier SAMPLES``: accuracy against cost per task for every model, attention setting and
test-time strategy of a scored-sample file, the Pareto frontier, and what it says.

SAMPLES holds one row per generated sample (``.jsonl``, ``.csv`` or ``.parquet``; see docs/frontier.md).
Costs per task are counted from the samples' lengths: FLOPs and Kinetics eFLOPs (FLOPs + I x bytes, I from
``--intensity``, 562.5 by default: B200's dense fp8 peak over its HBM bandwidth, the paper's value). With
``--hw`` each row's workload is also simulated on that hardware by kinsim's engine (one simulation per
model, attention setting and N or budget; stored in the results file ``--db`` and reused, as sweeps are),
which gives GPU-seconds, joules and dollars per task. ``--cost`` picks the unit of the frontier: ``gpu_s``
by default with ``--hw``, ``eflops`` without.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

from kinsim.errors import SpecError
from kinsim.outputs import Outputs

#: Cost units (``--cost``): counted, then simulated.
UNITS = ("flops", "eflops", "gpu_s", "joules", "usd")
SIMULATED = ("gpu_s", "joules", "usd")
#: Columns of --csv (and the rows of --json), in order.
EXPORT_COLUMNS = ("model", "attention", "strategy", "n", "budget", "accuracy", "cost_flops", "cost_eflops",
                  "cost_gpu_s", "cost_joules", "cost_usd", "on_frontier_model", "on_frontier_global", "problems",
                  "params", "policy", "deployment", "kinetics_s", "gpu_s_over_kinetics_s")
_UNIT_WORDS = {"flops": "FLOPs", "eflops": "eFLOPs", "gpu_s": "GPU-s", "joules": "J", "usd": "$"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("frontier", help="accuracy-cost frontier of scored samples (Kinetics)",
                                   description=__doc__.split("\n\n", 1)[1])
    parser.add_argument("samples", metavar="SAMPLES", help="scored samples: .jsonl, .csv or .parquet")
    parser.add_argument("--hw", metavar="HW", default=None,
                        help="hardware file: simulate each row's workload on it (GPU-seconds, joules, dollars)")
    parser.add_argument("--attention", metavar="FILE", default=None,
                        help="attention settings named in SAMPLES (default: SAMPLES_STEM.attention.yaml beside it)")
    parser.add_argument("--workload", metavar="TEMPLATE", default=None,
                        help="workload file whose deployment the simulations use (default: per model, the "
                             "smallest tensor parallelism that fits)")
    parser.add_argument("--cost", choices=UNITS, default=None,
                        help="cost unit of the frontier (default: gpu_s with --hw, else eflops)")
    parser.add_argument("--intensity", metavar="I", default="562.5",
                        help="eFLOPs' FLOP per byte of memory traffic (default 562.5, the paper's: B200 fp8 peak "
                             "over its HBM bandwidth)")
    parser.add_argument("--n", metavar="LIST", default=None,
                        help="values of N, comma-separated (default: 1, 2, 4, ... up to the fewest samples "
                             "a problem has)")
    parser.add_argument("--csv", metavar="PATH", default=None, help="write every row as CSV")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the rows and the findings as JSON")
    parser.add_argument("--plot", metavar="PATH", default=None, help="plot accuracy against cost (PNG, SVG, PDF)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="local worker processes for the simulations (default: the number of cores)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                        help="run the simulations on this Dask cluster (needs kinsim[distributed])")
    parser.add_argument("--db", metavar="PATH", default=None,
                        help="results file of the simulations, reused by later calls (default: "
                             "SAMPLES_STEM.frontier.sqlite beside SAMPLES)")
    parser.add_argument("--quiet", action="store_true", help="print only the findings")
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    parser.set_defaults(run=run)


# ----------------------------------------------------------------------------------------- options


def _intensity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise SpecError("must be a positive number (FLOP per byte)", path="--intensity", value=text)
    return value


def _ns(text: str | None) -> list[int] | None:
    if text is None:
        return None
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise SpecError("expected whole numbers >= 1 separated by commas, like 1,2,4,8", path="--n", value=text)
        values.append(int(part))
    return sorted(set(values))


def _unit(args: argparse.Namespace) -> str:
    unit = args.cost or ("gpu_s" if args.hw else "eflops")
    if unit in SIMULATED and not args.hw:
        raise SpecError("needs --hw: GPU-seconds, joules and dollars are simulated on a hardware file",
                        path="--cost", value=unit)
    if args.workers < 1:
        raise SpecError("must be at least 1", path="--workers", value=args.workers)
    return unit


# ----------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    with Outputs() as outputs:
        outputs.file("--csv", args.csv)
        outputs.file("--json", args.json)
        outputs.file("--plot", args.plot, figure=True)
        unit, intensity, ns = _unit(args), _intensity(args.intensity), _ns(args.n)
        result = analyse(args, unit, intensity, ns)
        _export(outputs, args, result)
    if not args.quiet:
        print("\n".join(frontier_lines(result)))
    print("\n".join(finding_lines(result)))
    return 0


def analyse(args: argparse.Namespace, unit: str, intensity: float, ns: list[int] | None) -> dict[str, Any]:
    """Read the samples, count and (with --hw) simulate the costs, mark the frontiers, find the findings."""
    from kinsim.frontier.pareto import findings, mark_frontiers
    from kinsim.frontier.samples import load_samples
    from kinsim.frontier.table import frontier_rows

    hardware = None
    if args.hw is not None:
        from kinsim.hardware import load_hardware

        hardware = load_hardware(args.hw)  # a broken hardware file is refused before any work
    samples = load_samples(args.samples, args.attention)
    frame, tasks = frontier_rows(samples, intensity, ns)
    if frame.empty:
        raise SpecError("gives no rows: every value of --n is above the samples per problem", path="--n",
                        value=args.n)
    if args.hw is not None:
        frame = _simulate(frame, tasks, args)
    frame = _kinetics_time(frame, intensity, hardware)
    column = f"cost_{unit}"
    if not frame[column].notna().any():
        raise SpecError(f"no row has a cost in {unit}: the hardware file gives no "
                        f"{'power' if unit == 'joules' else 'price'}", path="--cost", value=unit, file=args.hw)
    frame = mark_frontiers(frame, unit)
    units = [u for u in UNITS if frame[f"cost_{u}"].notna().any()]
    found = findings(frame, unit, units)
    if hardware is not None:
        for strategy, entry in found.items():
            ratio = frame.loc[frame["strategy"] == strategy, "gpu_s_over_kinetics_s"].dropna()
            entry["gpu_s_over_kinetics_s"] = ({"median": float(ratio.median()), "min": float(ratio.min()),
                                               "max": float(ratio.max())} if len(ratio) else None)
    return {"samples": samples, "frame": frame, "unit": unit, "units": units, "intensity": intensity,
            "hardware": args.hw, "hardware_name": None if hardware is None else hardware.name, "findings": found}


def _kinetics_time(frame, intensity: float, hardware):
    """``frame`` with ``kinetics_s``, the Kinetics cost model's seconds per task on ``hardware`` (its FLOPs at
    the bf16 peak plus its bytes, ``(eFLOPs - FLOPs) / I``, at the HBM bandwidth: the paper's additive time
    on that GPU), and ``gpu_s_over_kinetics_s``, the simulated GPU-seconds over it; NaN without hardware."""
    import numpy as np

    frame = frame.copy()
    if hardware is None:
        frame["kinetics_s"] = frame["gpu_s_over_kinetics_s"] = np.nan
        return frame
    flops, eflops = frame["cost_flops"], frame["cost_eflops"]
    frame["kinetics_s"] = flops / hardware.peak("bf16") + (eflops - flops) / intensity / hardware.gpu.memory.bandwidth
    frame["gpu_s_over_kinetics_s"] = frame["cost_gpu_s"] / frame["kinetics_s"]
    return frame


def _simulate(frame, tasks, args: argparse.Namespace):
    """``frame`` with the simulated costs of its tasks (``kinsim.frontier.simulate``)."""
    from kinsim.cli.progress import Progress
    from kinsim.frontier.table import attach_simulated

    try:
        from kinsim.frontier.simulate import SimTask, simulate_costs
    except ImportError as error:
        if error.name != "kinsim.frontier.simulate":
            raise
        raise SpecError("simulated costs are not available in this kinsim (no kinsim.frontier.simulate)",
                        path="--hw", value=args.hw, hint="leave out --hw for FLOPs and eFLOPs only") from None
    progress = Progress("simulations", enabled=not (args.quiet or args.no_progress))
    try:
        tasks = [SimTask(model=t.model, attention=t.attention, prompts=t.prompts, outputs=t.outputs, weights=t.weights)
                 for t in tasks]
        costs = simulate_costs(tasks, args.hw,
                               workload=args.workload, workers=args.workers, dask=args.scheduler,
                               store=args.db or _default_db(args.samples), progress=progress.update)
    finally:
        progress.close()
    return attach_simulated(frame, costs)


def _default_db(samples: str) -> str:
    """The results file beside the samples: ``samples.jsonl`` -> ``samples.frontier.sqlite``."""
    path = os.path.splitext(samples)[0]
    return f"{path}.frontier.sqlite"


# ----------------------------------------------------------------------------------------- outputs


def export_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows as plain values (NaN and missing as None), columns :data:`EXPORT_COLUMNS`."""
    from kinsim.frontier.pareto import plain_value

    frame = result["frame"]
    return [{c: plain_value(v) for c, v in zip(EXPORT_COLUMNS, values)}
            for values in frame[list(EXPORT_COLUMNS)].itertuples(index=False, name=None)]


def _export(outputs: Outputs, args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.csv:
        frame = result["frame"][list(EXPORT_COLUMNS)]
        outputs.write("--csv", lambda path: frame.to_csv(path, index=False))
    if args.json:
        samples = result["samples"]
        document = {"samples": samples.file, "attention_file": samples.attention_file, "cost": result["unit"],
                    "intensity": result["intensity"], "hardware": result["hardware"], "workload": args.workload,
                    "rows": export_rows(result), "findings": result["findings"]}
        outputs.write_text("--json", json.dumps(document, indent=1, allow_nan=False) + "\n")
    if args.plot:
        from kinsim.frontier.plot import plot_frontier

        units = [u for u in ("flops", "eflops", "gpu_s") if u in result["units"]]
        if result["unit"] not in units:
            units.append(result["unit"])
        outputs.write_figure("--plot", plot_frontier(result["frame"], units, title=os.path.basename(args.samples)))


# ----------------------------------------------------------------------------------------- printing


def format_cost(unit: str, value: float | None) -> str:
    """A cost per task for a table: FLOPs as ``2.06e14`` (three digits), seconds, joules and dollars as figures."""
    from kinsim.units import format_figure, format_number

    if value is None or not math.isfinite(value):
        return "-"
    if unit in ("flops", "eflops"):
        exponent = math.floor(math.log10(value)) if value > 0 else 0
        return f"{value / 10**exponent:.2f}e{exponent}"
    if unit == "gpu_s":
        return format_figure("s", value)
    if unit == "joules":
        return f"{format_number(value)} J"
    return format_figure("$", value)


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *lines]]


def frontier_lines(result: dict[str, Any]) -> list[str]:
    """The global frontier of each strategy: the best model and configuration at each cost."""
    samples, unit = result["samples"], result["unit"]
    frame = result["frame"]
    counts = samples.samples
    lines = [f"{samples.file}: {len(counts):,} samples, {counts['model'].nunique()} models, "
             f"{counts['attention'].nunique()} attention settings, {counts['problem'].nunique()} problems; "
             f"cost per task in {_UNIT_WORDS[unit]} (eFLOPs with I = {result['intensity']:g})"]
    others = [u for u in result["units"] if u != unit]
    for strategy, found in result["findings"].items():
        rows = frame[frame["strategy"] == strategy]
        lines += ["", f"{strategy} frontier ({int(rows['on_frontier_global'].sum())} of {len(rows)} rows), "
                      f"best model and configuration at each cost:"]
        body = []
        for row in found["frontier"]:
            setting = f"N={row['n']}" if row["budget"] is None else f"budget {row['budget']:,}"
            body.append([format_cost(unit, row[f"cost_{unit}"]), f"{row['accuracy']:.1%}", row["model"],
                         row["attention"], setting, *(format_cost(u, row[f"cost_{u}"]) for u in others)])
        lines += _table([_UNIT_WORDS[unit], "accuracy", "model", "attention", "setting",
                         *(_UNIT_WORDS[u] for u in others)], body)
    return lines


def _grid_words(summary: dict[str, Any]) -> str:
    accuracies = summary["accuracy"]
    span = f"{accuracies[0]:.0%}" if len(accuracies) == 1 else f"{accuracies[0]:.0%}-{accuracies[-1]:.0%}"
    return f"{summary['geomean']:.2f}x (geometric mean over accuracies {span})"


def finding_lines(result: dict[str, Any]) -> list[str]:
    """The headline findings of each strategy: size threshold, dense against sparse, plans against optima."""
    unit = result["unit"]
    lines = []
    for strategy, found in result["findings"].items():
        lines += ["", f"{strategy}:"]
        for u, threshold in found["threshold"].items():
            if threshold is None:
                continue
            text = (f"  size threshold in {_UNIT_WORDS[u]}: {threshold['model']} (above "
                    f"{format_cost(u, threshold['from_cost'])} the frontier moves only to larger models)")
            if threshold["never"]:
                text += "; never on the frontier: " + ", ".join(threshold["never"])
            lines.append(text)
        for pair in found["dense_vs_sparse"]:
            ratio = _grid_words(pair) if pair["geomean"] is not None else "no common accuracy"
            lines.append(f"  dense / {pair['sparse']} cost at equal accuracy, {_UNIT_WORDS[unit]}: {ratio}; "
                         f"largest accuracy gain of {pair['sparse']} at equal cost: {pair['max_gain'] * 100:+.1f} "
                         f"points at {format_cost(unit, pair['max_gain_cost'])}")
        for plan in found["plans"]:
            if plan["geomean"] is None:
                continue
            lines.append(f"  {_UNIT_WORDS[plan['plan']]}-optimal choices cost {_grid_words(plan)} the "
                         f"{_UNIT_WORDS[plan['judge']]}-optimal ones, in {_UNIT_WORDS[plan['judge']]}")
        ratio = found.get("gpu_s_over_kinetics_s")
        if ratio:
            lines.append(f"  simulated GPU-s on {result['hardware_name']} / the Kinetics model's seconds there "
                         f"(FLOPs at the bf16 peak + bytes at the HBM bandwidth): median {ratio['median']:.2f}x, "
                         f"{ratio['min']:.2f}x to {ratio['max']:.2f}x")
    return lines
