"""Running a sweep's points: resolving them, skipping those already stored, simulating the rest on local
worker processes or a Dask cluster, and storing every result (or failure, with its reason) as it comes."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinsim.errors import KinsimError, SpecError
from kinsim.sweep.spec import Sweep
from kinsim.sweep.store import ResultStore, content_key

#: Summary sections not stored among a point's metrics: plot series (large), inputs and wall time (stored in
#: columns of their own).
DROPPED = ("series", "inputs", "wall_time_s")


@dataclass
class Point:
    """One point of a sweep: its axis values, all overrides, and its key (``None`` until resolved)."""

    index: int
    values: dict[str, Any]
    overrides: dict[str, Any]
    key: str
    inputs: dict[str, Any]
    error: str = ""


def resolve(sweep: Sweep) -> list[Point]:
    """Every point with its resolved inputs and key; a point whose inputs are invalid carries the error."""
    from kinsim.hardware.load import load_hardware
    from kinsim.runner import split_overrides
    from kinsim.schema import to_raw
    from kinsim.workload.load import load_workload

    points = []
    for index, values in enumerate(sweep.points()):
        overrides = {**sweep.overrides, **values}
        workload_overrides, hardware_overrides = split_overrides(overrides)
        try:
            inputs = {"workload": to_raw(load_workload(sweep.workload, workload_overrides)),
                      "hardware": to_raw(load_hardware(sweep.hardware, hardware_overrides))}
            points.append(Point(index, values, overrides, content_key(inputs), inputs))
        except KinsimError as error:
            failed = {"workload": str(sweep.workload), "hardware": str(sweep.hardware), "overrides": overrides}
            points.append(Point(index, values, overrides, content_key(failed), failed, error=str(error)))
    return points


def simulate_point(workload: str, hardware: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Simulate one point (in a worker): ``{"status", "reason", "metrics", "wall_time_s"}``. Bad input is a
    failed point, not an exception."""
    from kinsim.runner import simulate

    started = time.perf_counter()
    try:
        summary = simulate(workload, hardware, overrides).to_dict()
    except KinsimError as error:
        return {"status": "failed", "reason": str(error), "metrics": {}, "wall_time_s": time.perf_counter() - started}
    metrics = {k: v for k, v in summary.items() if k not in DROPPED}
    return {"status": "ok", "reason": "", "metrics": metrics, "wall_time_s": summary["wall_time_s"]}


@dataclass
class SweepReport:
    """What one invocation did."""

    total: int
    skipped: int
    ran: int
    failed: int
    wall_s: float


def run_sweep(sweep: Sweep, store: ResultStore, workers: int = 1, scheduler: str | None = None,
              progress: Callable[[int, int], None] | None = None, points: list[Point] | None = None) -> SweepReport:
    """Run the points of ``sweep`` not yet in ``store``: ``workers`` local processes, or the Dask cluster at
    ``scheduler`` (``tcp://host:port``). ``points``: ``resolve(sweep)``, when the caller already has it."""
    started = time.perf_counter()
    if scheduler:  # before any work: a missing extra is bad input, not a crash halfway
        try:
            from distributed import Client
            from distributed import as_completed as dask_completed
        except ImportError:
            raise SpecError("needs Dask's distributed package to reach a cluster", path="--scheduler",
                            value=scheduler, hint='pip install "kinsim[distributed]"') from None
    points = resolve(sweep) if points is None else points
    pending, skipped, failed = [], 0, 0
    for point in points:
        if store.done(point.key):
            skipped += 1
        elif point.error:
            store.put(point.key, sweep.name, point.values, "failed", point.error, point.inputs, {}, 0.0)
            failed += 1
        else:
            pending.append(point)
    args = [(str(sweep.workload), str(sweep.hardware), point.overrides) for point in pending]
    done = 0

    def record(point: Point, result: dict[str, Any]) -> None:
        nonlocal done, failed
        store.put(point.key, sweep.name, point.values, result["status"], result["reason"], point.inputs,
                  result["metrics"], result["wall_time_s"])
        failed += result["status"] == "failed"
        done += 1
        if progress is not None:
            progress(done, len(pending))

    if scheduler:

        try:
            client = Client(scheduler, timeout="10s")
        except OSError as error:
            raise SpecError(f"cannot reach the Dask scheduler ({error})", path="--scheduler", value=scheduler) from None
        with client:
            futures = {client.submit(simulate_point, *a, pure=False): p for a, p in zip(args, pending)}
            for future in dask_completed(futures):
                record(futures[future], future.result())
    elif workers <= 1 or len(pending) <= 1:
        for a, point in zip(args, pending):
            record(point, simulate_point(*a))
    else:
        from kinsim.sweep.workers import local_pool

        with local_pool(workers) as pool:
            futures = {pool.submit(simulate_point, *a): p for a, p in zip(args, pending)}
            for future in as_completed(futures):
                record(futures[future], future.result())
    return SweepReport(len(points), skipped, len(pending), failed, time.perf_counter() - started)


def sweep_rows(sweep: Sweep, store: ResultStore, points: list[Point] | None = None) -> list[dict[str, Any]]:
    """One flat row per point of ``sweep`` (in file order): axis values, numeric axis values from the
    resolved inputs (``<axis>.si``), status, reason, and every metric by dotted key. ``points``:
    ``resolve(sweep)``, when the caller already has it."""
    rows = []
    for point in resolve(sweep) if points is None else points:
        stored = store.get(point.key)
        row: dict[str, Any] = dict(point.values)
        for axis in sweep.axes:
            row[f"{axis}.si"] = _resolved_value(point.inputs, axis)
        if stored is None:
            row.update(status="missing", reason="not run yet")
        else:
            row.update(status=stored["status"], reason=stored["reason"])
            row.update(_flatten(stored["metrics"]))
        rows.append(row)
    return rows


def _resolved_value(inputs: dict[str, Any], axis: str) -> Any:
    """The SI value of an axis key in resolved inputs (``hw.x.y`` is ``hardware.x.y``)."""
    from kinsim.runner import HARDWARE_PREFIXES

    node: Any = inputs.get("workload")
    key = axis
    for prefix in HARDWARE_PREFIXES:
        if axis.startswith(prefix):
            node, key = inputs.get("hardware"), axis[len(prefix):]
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, str):  # a quantity is written "<SI number> <base unit>"
        number = node.split(" ", 1)[0]
        try:
            return float(number)
        except ValueError:
            return node
    return node


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def default_db(sweep_file: str | Path) -> Path:
    """``<sweep file without suffix>.sqlite`` next to the sweep file."""
    path = Path(sweep_file)
    return path.with_suffix(".sqlite")
