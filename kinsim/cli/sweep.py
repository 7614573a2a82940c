"""``kinsim sweep SWEEP.yaml``: simulate every point of a sweep, store the results, show them.

Results go to an SQLite file (``--db``, default next to the sweep file), keyed by a hash of each point's
resolved inputs: a rerun skips finished points, an interrupted sweep resumes. A point that fails (a model
that does not fit, an invalid override) is recorded with its reason and does not stop the sweep.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kinsim.cli.progress import Progress
from kinsim.errors import KinsimError, SpecError
from kinsim.metrics import check_figure_key, figure_unit
from kinsim.outputs import Outputs, checked_file
from kinsim.units import axis_unit, figure_kind, format_figure, quantity_kind

DEFAULT_METRICS = ("throughput.tasks_per_s", "throughput.output_tokens_per_s", "latency.task.e2e.p99",
                   "kv.peak_bytes")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="simulate a grid of what-ifs, resumably",
                                   description=__doc__.split("\n\n", 1)[1])
    parser.add_argument("sweep_file", metavar="SWEEP.yaml", help="the sweep: base files and axes")
    parser.add_argument("--db", metavar="PATH", default=None, help="results file (default: SWEEP.sqlite)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="local worker processes (default: the number of cores)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                        help="run on this Dask distributed cluster instead (needs kinsim[distributed])")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), metavar="KEYS",
                        help="comma-separated dotted metric keys to print")
    parser.add_argument("--csv", metavar="PATH", default=None, help="export every point and metric as CSV")
    parser.add_argument("--parquet", metavar="PATH", default=None, help="export as Parquet (needs pyarrow)")
    parser.add_argument("--plot", metavar="PATH", default=None, help="plot a metric against an axis (PNG or SVG)")
    parser.add_argument("--x", metavar="AXIS", default=None, help="axis of the plot (default: the file's or the first)")
    parser.add_argument("--y", metavar="METRIC", default=None,
                        help="metric of the plot (default: the file's or tasks/s)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress on stderr (a bar on a terminal; elsewhere a line every 30 s after 10 s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with Outputs() as outputs:
        for option in ("csv", "parquet", "plot"):
            outputs.file(f"--{option}", getattr(args, option), figure=option == "plot")
        if args.parquet is not None:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise SpecError("needs pyarrow", path="--parquet", file=args.parquet,
                                hint='pip install "kinsim[distributed]" or pyarrow') from None
        sweep, rows, metrics, report, db = _run_and_export(args, outputs)
    if not args.quiet:
        print("\n".join(table_lines(sweep, rows, metrics)))
    failed = [r for r in rows if r["status"] == "failed"]
    print(f"{sweep.name}: {report.total} points, {report.ran} simulated now, {report.skipped} from {db.name}, "
          f"{len(failed)} failed, {report.wall_s:.1f} s")
    return 0


def _run_and_export(args: argparse.Namespace, outputs: Outputs):
    """Check the options, run the points not yet stored, produce the exports (committed by the caller)."""
    from kinsim.sweep.execute import default_db, resolve, run_sweep, sweep_rows
    from kinsim.sweep.spec import load_sweep
    from kinsim.sweep.store import ResultStore

    sweep = load_sweep(args.sweep_file)
    if args.workers < 1:
        raise SpecError("must be at least 1", path="--workers", value=args.workers)
    x = args.x or sweep.plot.get("x") or next(iter(sweep.axes))
    y = args.y or sweep.plot.get("y") or "throughput.tasks_per_s"
    if x not in sweep.axes:
        raise SpecError("must be one of the sweep's axes: " + ", ".join(sweep.axes), path="--x", value=x)
    metrics = [m for m in args.metrics.split(",") if m]
    for key in metrics:
        check_figure_key(key, "--metrics")
    check_figure_key(y, "--y")
    db = checked_file("--db", args.db or default_db(args.sweep_file), special=False).path
    created = not os.path.lexists(db)
    store = ResultStore(db)
    try:
        progress = Progress("points", enabled=not (args.quiet or args.no_progress))
        points = resolve(sweep)
        try:
            report = run_sweep(sweep, store, workers=args.workers, scheduler=args.scheduler,
                               progress=progress.update, points=points)
        finally:
            progress.close()
        rows = sweep_rows(sweep, store, points)
    except BaseException:  # a results file this call made and left empty goes too (stored points stay: resume)
        if created:
            _remove_if_empty(store)
        raise
    finally:
        store.close()
    if rows and all(r["status"] == "failed" for r in rows):  # nothing to export or plot: bad input, not a result
        raise SpecError(f"every point failed ({len(rows)} of {len(rows)}); the first: {rows[0]['reason']}",
                        file=sweep.file)
    if args.csv or args.parquet:
        import pandas as pd

        frame = pd.DataFrame(rows)
        if args.csv:
            outputs.write("--csv", lambda p: frame.to_csv(p, index=False))
        if args.parquet:
            outputs.write("--parquet", lambda p: frame.astype({c: str for c in sweep.axes}).to_parquet(p))
    if args.plot:
        outputs.write_figure("--plot", plot_sweep(sweep, rows, x, y))
    return sweep, rows, metrics, report, db


def _remove_if_empty(store) -> None:
    """Remove the results file of ``store`` (and SQLite's side files) when it holds no point."""
    try:
        empty = len(store) == 0 and store.claimed_by_others() == 0  # another sweep may be just starting on it
    except KinsimError:  # unreadable: made by this call, it holds nothing worth keeping
        empty = True
    store.close()
    if empty:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{store.path}{suffix}").unlink(missing_ok=True)


def _cell(value, unit: str = "") -> str:
    """A table cell: a figure in its unit (:func:`~kinsim.units.format_figure`), an axis value as written."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_figure(unit, value)
    return "-" if value is None else str(value)


def table_lines(sweep, rows: list[dict], metrics: list[str]) -> list[str]:
    header = [*sweep.axes, "status", *metrics]
    lines = [header]
    for row in rows:
        cells = [_cell(row.get(axis)) for axis in sweep.axes] + [row["status"]]
        cells += [_cell(row.get(m), figure_unit(m)) if row["status"] == "ok"
                  else (row["reason"][:60] if m == metrics[0] else "") for m in metrics]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]


def _scaled(kind: str | None, unit: str, values: list[float]) -> tuple[str, float]:
    """The unit an axis of ``values`` is labelled in and the divisor of its values: for a quantity
    ``kind`` the unit of the largest value (``("TB/s", 1e12)``), for fractions ``("%", 0.01)``, else
    ``unit`` as it is."""
    if kind:
        return axis_unit(kind, values)
    if unit == "fraction":
        return "%", 0.01
    return unit if unit not in ("count", "") else "", 1.0


def plot_sweep(sweep, rows: list[dict], x: str, y: str):
    """``y`` against axis ``x``, one line per value of the other axes. A quantity axis is drawn at its SI
    value scaled to the unit of its largest value (``hw.gpu.memory.bandwidth (TB/s)``), the metric in
    its unit likewise (``kv.peak_bytes (GB)``)."""
    from matplotlib.figure import Figure

    from kinsim.report.plaintext import plain

    others = [a for a in sweep.axes if a != x]
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["status"] == "ok":
            groups.setdefault(tuple(str(row[o]) for o in others), []).append(row)
    ok = [row for members in groups.values() for row in members]
    x_kind = next((quantity_kind(row[x]) for row in ok if quantity_kind(row[x])), None)
    x_unit, x_div = _scaled(x_kind, "", [r[f"{x}.si"] for r in ok if isinstance(r[f"{x}.si"], (int, float))])
    y_unit, y_div = _scaled(figure_kind(figure_unit(y)), figure_unit(y),
                            [r[y] for r in ok if isinstance(r[y], (int, float))])
    for label, members in groups.items():
        xs = [r[f"{x}.si"] for r in members]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs)
        ys = [r[y] / y_div for r in members]
        points = sorted(zip([v / x_div for v in xs], ys)) if numeric else list(zip([plain(r[x]) for r in members], ys))
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-",
                label=plain(", ".join(f"{o}={v}" for o, v in zip(others, label))) or None)
    ax.set_xlabel(plain(f"{x} ({x_unit})" if x_unit else x))
    ax.set_ylabel(plain(f"{y} ({y_unit})" if y_unit else y))
    for axis in (ax.xaxis, ax.yaxis):  # the unit is in the label: no "1e12" offset above the ticks
        formatter = axis.get_major_formatter()
        if hasattr(formatter, "set_useOffset"):
            formatter.set_useOffset(False)
            formatter.set_scientific(False)
    ax.set_title(plain(f"{sweep.name}: {y} against {x}"), fontsize=9)
    ax.grid(alpha=0.3)
    if others:
        ax.legend(fontsize=7)
    return fig
