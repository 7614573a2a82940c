"""``simulate``: from input files (or specs) and overrides to a :class:`~kinsim.result.Result`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kinsim.engine.simulation import Progress, Simulation
from kinsim.errors import SpecError
from kinsim.hardware.load import load_hardware
from kinsim.hardware.spec import HardwareSpec
from kinsim.metrics import summarize
from kinsim.result import Result
from kinsim.schema import with_overrides
from kinsim.workload.load import load_workload
from kinsim.workload.replay import replay_trace
from kinsim.workload.spec import TraceRequests, WorkloadSpec

#: Prefix of an override key that addresses the hardware rather than the workload.
HARDWARE_PREFIXES = ("hw.", "hardware.")


def split_overrides(overrides: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(workload overrides, hardware overrides): keys starting ``hw.`` or ``hardware.`` go to the hardware."""
    workload, hardware = {}, {}
    for key, value in (overrides or {}).items():
        for prefix in HARDWARE_PREFIXES:
            if key.startswith(prefix):
                hardware[key[len(prefix):]] = value
                break
        else:
            workload[key] = value
    return workload, hardware


def simulate(workload: WorkloadSpec | str | Path, hardware: HardwareSpec | str | Path,
             overrides: Mapping[str, Any] | None = None, *, seed: int | None = None, exact_steps: bool = False,
             cost_model: str = "roofline", progress: Callable[[Progress], None] | None = None,
             op_window: tuple[float, float] | None = None, records: str | None = None, jobs: int = 1,
             notice: Callable[[str], None] | None = None) -> Result:
    """Simulate ``workload`` on ``hardware`` (specs or file paths).

    Args:
        overrides: dotted keys to change, e.g. ``{"deployment.max_num_seqs": 128,
            "hw.gpu.memory.bandwidth": "6.7 TB/s"}`` (``hw.`` addresses the hardware).
        seed: replaces the workload's seed.
        exact_steps: one event per step instead of exact fast-forward (same figures, slower).
        cost_model: ``roofline`` or ``kinetics``.
        progress: called now and then with a :class:`Progress`.
        op_window: (start, end) seconds: also record op-level slices of the steps in it (for timelines).
        records: ``full``, ``summary`` or ``none`` (see :data:`kinsim.engine.simulation.RECORDS`); ``None``:
            ``full`` up to two million requests, else ``summary``.
        jobs: processes to split the replicas among where they are independent simulations
            (:mod:`kinsim.engine.parallel`: the same figures, ``engine.events`` aside); where they are not,
            the run stays in one process and ``notice`` is told why.
        notice: called with a sentence worth telling the user (``jobs`` not used).
    """
    if jobs < 1:
        raise SpecError("must be at least 1", path="--jobs", value=jobs)
    started = time.perf_counter()
    workload_file = str(workload) if isinstance(workload, (str, Path)) else None
    hardware_file = str(hardware) if isinstance(hardware, (str, Path)) else None
    workload_overrides, hardware_overrides = split_overrides(overrides)
    if seed is not None:
        workload_overrides["seed"] = seed
    if isinstance(workload, (str, Path)):
        workload = load_workload(workload, workload_overrides)
    elif workload_overrides:
        workload = with_overrides(workload, workload_overrides)
    if isinstance(hardware, (str, Path)):
        hardware = load_hardware(hardware, hardware_overrides)
    elif hardware_overrides:
        hardware = with_overrides(hardware, hardware_overrides)
    requests, trace_report = None, None
    if isinstance(workload.requests, TraceRequests):
        replay = replay_trace(workload.requests, workload.seed)
        requests, trace_report = replay.requests, replay.report.as_dict()
    sim = Simulation(workload, hardware, exact_steps=exact_steps, cost_model=cost_model, op_window=op_window,
                     requests=requests, records=records, workload_file=workload_file, hardware_file=hardware_file)
    sim.progress = progress
    records = _run_in_jobs(sim, jobs, notice) if jobs > 1 else None
    if records is None:
        records = sim.run()
    summary = summarize(records, workload, hardware, sim.layout, sim.role_layouts, sim.role_hardware)
    summary["inputs"]["trace"] = trace_report
    summary["mode"] = "exact_steps" if exact_steps else "fast_forward"
    summary["records"] = sim.records_mode
    summary["wall_time_s"] = time.perf_counter() - started
    return Result(summary, records, workload, hardware)


def _run_in_jobs(sim, jobs: int, notice: Callable[[str], None] | None):
    """``sim``'s records from ``jobs`` processes: apart where every request's replica is known before the run
    (:mod:`kinsim.engine.parallel`), else meeting at every arrival (:mod:`kinsim.engine.lockstep`); None where
    neither can run it (with a notice saying why) or a process handed the run back."""
    from kinsim.engine.lockstep import lockstep_why_not, run_lockstep, usable_cores
    from kinsim.engine.parallel import placement_of, run_parallel

    placement, apart = placement_of(sim)
    if placement is not None:
        return run_parallel(sim, placement, jobs)
    meeting = lockstep_why_not(sim)
    cores = usable_cores()
    if not meeting and min(jobs, len(sim.replicas)) > cores and notice is not None:
        notice(f"--jobs {jobs}: the processes meet at every arrival, so each needs a core of its own: "
               f"{cores} of them ran")
    records = None if meeting else run_lockstep(sim, min(jobs, cores))
    if records is None and notice is not None:
        if not meeting:
            why_not = "a request can never run, which only the general engine ends"
        elif meeting == apart:  # (a reason of both: a closed loop, shared links, one replica, ...)
            why_not = meeting
        else:
            why_not = f"{apart}; and they cannot meet at every arrival: {meeting}"
        notice(f"--jobs {jobs}: the replicas ran in one process: {why_not}")
    return records


__all__ = ["simulate"]
