"""Running a sweep's points: resolving them, skipping those already stored, simulating the rest on local
worker processes or a Dask cluster, and storing every result (or failure, with its reason) as it comes."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinsim.errors import KinsimError, SpecError
from kinsim.sweep.spec import Sweep
from kinsim.sweep.store import ResultStore, content_key

if TYPE_CHECKING:
    from kinsim.hardware.spec import HardwareSpec
    from kinsim.workload.spec import WorkloadSpec

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


def simulate_point(workload: WorkloadSpec | str, hardware: HardwareSpec | str,
                   overrides: dict[str, Any], extra: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Simulate one point (in a worker) from file paths, or from resolved specs (a frontier's workloads are
    built in memory): ``{"status", "reason", "metrics", "wall_time_s"}``. Bad input is a failed point, not an
    exception. ``extra(result)``: more metrics to store from the run's :class:`~kinsim.result.Result` (a
    module-level function, so that it reaches worker processes)."""
    from kinsim.runner import simulate

    started = time.perf_counter()
    try:
        result = simulate(workload, hardware, overrides)
    except KinsimError as error:
        return {"status": "failed", "reason": str(error), "metrics": {}, "wall_time_s": time.perf_counter() - started}
    summary = result.to_dict()
    metrics = {k: v for k, v in summary.items() if k not in DROPPED}
    if extra is not None:
        metrics.update(extra(result))
    return {"status": "ok", "reason": "", "metrics": metrics, "wall_time_s": summary["wall_time_s"]}


@dataclass
class SweepReport:
    """What one invocation did."""

    total: int
    skipped: int
    ran: int
    failed: int
    wall_s: float


#: Seconds between two looks at points another sweep is simulating.
CLAIM_POLL_S = 0.5


def run_sweep(sweep: Sweep, store: ResultStore, workers: int = 1, scheduler: str | None = None,
              progress: Callable[[int, int], None] | None = None, points: list[Point] | None = None) -> SweepReport:
    """Run the points of ``sweep`` not yet in ``store``: ``workers`` local processes, or the Dask cluster at
    ``scheduler`` (``tcp://host:port``). ``points``: ``resolve(sweep)``, when the caller already has it.
    See :func:`run_points`."""
    started = time.perf_counter()
    check_scheduler(scheduler)  # before any work: a missing extra is bad input, not a crash halfway
    points = resolve(sweep) if points is None else points

    def arguments(point: Point) -> tuple[str, str, dict[str, Any]]:
        return str(sweep.workload), str(sweep.hardware), point.overrides

    report = run_points(points, store, sweep.name, simulate_point, arguments, workers, scheduler, progress)
    return dataclasses.replace(report, wall_s=time.perf_counter() - started)


def check_scheduler(scheduler: str | None) -> None:
    """A :class:`SpecError` naming ``--scheduler`` when a Dask cluster is asked for without Dask installed."""
    if scheduler:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise SpecError("needs Dask's distributed package to reach a cluster", path="--scheduler",
                            value=scheduler, hint='pip install "kinsim[distributed]"') from None


def run_points(points: list[Point], store: ResultStore, name: str, task: Callable[..., dict[str, Any]],
               arguments: Callable[[Point], tuple], workers: int = 1, scheduler: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> SweepReport:
    """Run the ``points`` not yet in ``store`` (recorded under the sweep name ``name``): each is
    ``task(*arguments(point))`` (a module-level function, so that it reaches worker processes; it returns
    :func:`simulate_point`'s dict), on ``workers`` local processes or the Dask cluster at ``scheduler``.
    ``progress(done, total)`` counts the points simulated (or finished elsewhere) out of those pending.

    Each point is claimed in ``store`` just before it is submitted, so that sweeps sharing one results file
    share the work: a point another live sweep has claimed is left to it, and this sweep waits for its result
    (or takes it over if that sweep dies) before returning. Points finished elsewhere count as skipped."""
    started = time.perf_counter()
    check_scheduler(scheduler)
    pending, skipped, failed = [], 0, 0
    for point in points:
        if store.done(point.key):
            skipped += 1
        elif point.error:
            store.put(point.key, name, point.values, "failed", point.error, point.inputs, {}, 0.0)
            failed += 1
        else:
            pending.append(point)
    done = ran = 0

    def record(point: Point, result: dict[str, Any]) -> None:
        nonlocal done, ran, failed
        store.put(point.key, name, point.values, result["status"], result["reason"], point.inputs,
                  result["metrics"], result["wall_time_s"])
        failed += result["status"] == "failed"
        done += 1
        ran += 1
        if progress is not None:
            progress(done, len(pending))

    queue, waiting = deque(pending), []
    with _executor(task, arguments, workers if len(pending) > 1 else 1, scheduler) as (submit, wait_first, capacity):
        in_flight: dict[Any, Point] = {}
        try:
            while queue or in_flight or waiting:
                while queue and len(in_flight) < capacity:
                    point = queue.popleft()
                    state = store.claim(point.key)
                    if state == "busy":
                        waiting.append(point)
                        continue
                    if state == "done":  # finished by another sweep meanwhile
                        skipped += 1
                        done += 1
                        if progress is not None:
                            progress(done, len(pending))
                        continue
                    in_flight[submit(point)] = point
                if in_flight:
                    for future in wait_first(list(in_flight)):
                        record(in_flight.pop(future), future.result())
                    store.renew([p.key for p in in_flight.values()])
                elif waiting:  # only points other sweeps are simulating are left: look again shortly
                    time.sleep(CLAIM_POLL_S)
                    queue.extend(waiting)
                    waiting.clear()
        finally:
            store.release([p.key for p in in_flight.values()])
    return SweepReport(len(points), skipped, ran, failed, time.perf_counter() - started)


@contextmanager
def _executor(task: Callable[..., dict[str, Any]], arguments: Callable[[Point], tuple], workers: int,
              scheduler: str | None):
    """``(submit, wait_first, capacity)`` for running points: in this process, on local workers or on a Dask
    cluster. ``submit(point)`` gives a future of ``task(*arguments(point))``; ``wait_first(futures)`` the
    futures among them that are done, once at least one is."""
    if scheduler:
        from distributed import Client
        from distributed import wait as dask_wait

        try:
            client = Client(scheduler, timeout="10s")
        except OSError as error:
            raise SpecError(f"cannot reach the Dask scheduler ({error})", path="--scheduler", value=scheduler) from None
        with client:
            yield (lambda point: client.submit(task, *arguments(point), pure=False),
                   lambda futures: dask_wait(futures, return_when="FIRST_COMPLETED").done,
                   1 << 30)
    elif workers <= 1:
        def run_here(point: Point) -> Future:
            future: Future = Future()
            future.set_result(task(*arguments(point)))
            return future

        yield run_here, lambda futures: futures[:1], 1
    else:
        from kinsim.sweep.workers import local_pool

        with local_pool(workers) as pool:
            yield (lambda point: pool.submit(task, *arguments(point)),
                   lambda futures: wait(futures, return_when=FIRST_COMPLETED).done,
                   workers)


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
