"""Independent replicas simulated in several processes (``kinsim run --jobs N``).

Data-parallel replicas that share no resource (each runs its steps on its own timer: no link, host link
or KV handoff between them) interact only through the router, at arrivals. When every request's replica
is known before the run, each replica is a simulation of its own requests alone, and a run can split its
replicas among processes and join what they recorded. That holds when

* the arrivals are open (a trace or a generated process, not a closed loop, whose clients send when
  earlier requests end), and
* the router's choices do not depend on the run: ``round_robin`` (request ``i`` in arrival order goes to
  replica ``i mod R``), or every request arrives at one instant (a Best-of-N batch sent at once), where
  ``least_loaded`` and ``group_affinity`` see only the placements before them (nothing has ended yet).

:func:`placement_of` decides it and gives every request's replica (the router's own choices, replayed).
:func:`run_parallel` splits the replicas into shares of similar work (their requests' prompt and output
tokens), :data:`CHUNKS_PER_JOB` per process, and forks a worker per share, ``N`` at a time, heaviest share
first: each worker starts from the simulation as it was built (shared copy-on-write, never run in this
process), serves only its share's requests (:meth:`~kinsim.engine.simulation.Simulation.serve_only`) and
sends back what it recorded. This process joins it: the requests' outcomes by request, the segments in
their canonical order (by end time, ties in replica order:
:meth:`~kinsim.engine.records.SegmentTable.in_end_order`), the memory counters per replica in replica
order. Every figure is the one-process run's to the bit, except ``engine.events`` (each process counts its
own SimPy events, and fewer replicas per process share fewer instants) and the wall time;
``tests/test_parallel.py`` checks it.

With ``N`` cores a run takes about ``1/N`` of the time plus the joining (about a second per million
segments); several shares per process even out shares slower than their tokens said. Peak memory grows:
this process holds every share's records while it joins them. Workers need the ``fork`` start method
(Linux, macOS); where it is missing the run stays in one process, with a note.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import traceback
from multiprocessing.connection import wait
from types import SimpleNamespace

import numpy as np

from kinsim.engine.clock import TICKS_PER_S
from kinsim.engine.records import Records, SegmentTable
from kinsim.engine.request_records import RequestRecords
from kinsim.engine.router import Router
from kinsim.engine.simulation import Progress, Simulation
from kinsim.workload.spec import ClosedLoopArrivals

#: Seconds between two progress reports while this process waits for the workers.
POLL_S = 0.5
#: Bytes of a worker's pipe buffer while it sends its arrays (Linux's default limit for a process).
PIPE_BYTES = 1 << 20
#: Shares of the replicas per worker process: the workers take them one after the other, so that the
#: shares' differences in work even out.
CHUNKS_PER_JOB = 4


def shared_why_not(sim: Simulation) -> str:
    """Why ``sim``'s replicas cannot run in several processes in any way (apart, or meeting at every arrival:
    :mod:`kinsim.engine.lockstep`), or ``""``."""
    if len(sim.roles) > 1:
        return "disaggregated serving hands sequences from prefill to decode replicas"
    if len(sim.replicas) < 2:
        return "one replica"
    if not all(replica.private for replica in sim.replicas):
        return "the replicas share links, so their steps are flows of one network"
    if sim._op_window is not None:
        return "op-level slices (--trace-ops) are recorded in one process"
    if sim.records_mode != "full":
        return f"--records {sim.records_mode} keeps running totals, summed in the order segments end"
    if "fork" not in multiprocessing.get_all_start_methods():
        return "worker processes need the fork start method, which this platform lacks"
    if isinstance(getattr(sim.workload.requests, "arrival", None), ClosedLoopArrivals):
        return "a closed loop's clients send requests when earlier ones end"
    return ""


def placement_of(sim: Simulation) -> tuple[np.ndarray | None, str]:
    """(the replica of every request, ``""``) when ``sim``'s replicas can run in separate processes (see the
    module docstring), else ``(None, why not)``."""
    why = shared_why_not(sim)
    if why:
        return None, why
    requests = sim.requests
    policy = sim.workload.deployment.router
    ticks = np.round(requests.arrival_s * TICKS_PER_S)  # as the simulation's arrivals round them
    if policy != "round_robin" and len(ticks) and ticks.min() != ticks.max():
        return None, (f"the {policy} router places each request by the replicas' loads when it arrives, which "
                      "depend on the other replicas' progress (arrivals at one instant, or round_robin, "
                      "can run in parallel)")
    # the router itself, in the order the simulation routes the requests (by arrival, ties in generation
    # order), seeing as loads the placements so far: round_robin reads none, and at one instant nothing ends
    order = np.argsort(requests.arrival_s, kind="stable")
    replicas = len(sim.replicas)
    placement = np.empty(len(requests), dtype=np.int64)
    loads = [0] * replicas
    router = Router(policy, replicas, loads.__getitem__)
    for i, group in zip(order.tolist(), requests.group[order].tolist()):
        chosen = router.place(group)
        placement[i] = chosen
        loads[chosen] += 1
        router.changed(chosen)
    return placement, ""


def replica_work(sim: Simulation, placement: np.ndarray) -> np.ndarray:
    """Each replica's measure of work: the prompt and output tokens of the requests ``placement`` puts on it."""
    requests = sim.requests
    return np.bincount(placement, weights=(requests.prompt_tokens + requests.output_tokens).astype(float),
                       minlength=len(sim.replicas))


def shares_of(sim: Simulation, placement: np.ndarray, jobs: int) -> list[list[int]]:
    """The replicas of each of ``jobs`` processes (sorted, none empty): by :func:`replica_work`, the
    heaviest replica first onto the lightest share (ties to the first share)."""
    replicas = len(sim.replicas)
    work = replica_work(sim, placement)
    jobs = min(jobs, replicas)
    shares: list[list[int]] = [[] for _ in range(jobs)]
    loads = [0.0] * jobs
    for r in sorted(range(replicas), key=lambda r: (-work[r], r)):
        k = min(range(jobs), key=lambda k: (loads[k], k))
        shares[k].append(r)
        loads[k] += float(work[r])
    return [sorted(share) for share in shares if share]


def run_parallel(sim: Simulation, placement: np.ndarray, jobs: int) -> Records:
    """Run ``sim`` with its replicas split among worker processes, ``jobs`` at a time; ``placement``:
    :func:`placement_of`'s. This process stays as it was built (each worker forks from it, so each starts
    from the same state) and joins what they recorded. The replicas go in :data:`CHUNKS_PER_JOB` x ``jobs``
    shares of similar work, the heaviest first, each to the next free worker: shares that turn out slower
    than their tokens said are balanced by the others. Returns the joined :class:`Records`; an error in a
    worker is raised here."""
    work = replica_work(sim, placement)
    shares = sorted(shares_of(sim, placement, CHUNKS_PER_JOB * jobs), key=lambda share: -work[share].sum())
    context = multiprocessing.get_context("fork")
    ended = context.Array("q", len(shares), lock=False)  # requests ended so far, per share
    clock = context.Array("d", len(shares), lock=False)  # simulated seconds so far, per share
    total = len(sim.requests)
    report = sim.progress
    joiner = Joiner(sim)
    running: dict = {}  # receiver -> (process, share)
    pending = list(enumerate(shares))
    try:
        while pending or running:
            while pending and len(running) < jobs:
                slot, share = pending.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(target=_work, args=(sim, placement, share, slot, ended, clock, sender),
                                          daemon=True)
                process.start()
                sender.close()
                running[receiver] = (process, share)
            for receiver in wait(list(running), timeout=POLL_S):
                process, share = running.pop(receiver)
                _, payload = receive_result(process, receiver, "parallel run")
                receiver.close()
                process.join()
                joiner.add(payload, np.isin(placement, share))
            if report is not None:
                report(Progress(max(clock), sum(ended), total))
    finally:
        for receiver, (process, _) in running.items():
            receiver.close()
            process.kill()
            process.join()
    return joiner.finish(min(jobs, len(shares)), sum(ended))


class Joiner:
    """Joins into ``sim``'s records what worker processes recorded, one worker at a time (:meth:`add`, so that
    a worker's payload is freed before the next comes), then :meth:`finish`."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.tables: list[SegmentTable] = []
        self.counters: dict[int, dict[str, float]] = {}

    def add(self, payload: dict, rows: np.ndarray) -> None:
        """A worker's ``payload`` (its request outcomes, segment columns, events and its replicas' memory
        counters) and its requests ``rows``: a mask, or indices where the payload holds those rows alone. The
        outcomes and segments are taken out of ``payload``, so that the join frees each segment column as it
        goes even while the caller still holds the payload (at 10^6 chat requests in two processes, holding
        them kept the other process's 360 MB of segments to the end)."""
        records = self.sim.records
        records.sequences.take_rows(payload.pop("sequences"), rows, packed=rows.dtype != bool)
        self.tables.append(SegmentTable.from_columns(payload.pop("segments")))
        records.events += payload["events"]
        self.counters.update(payload["counters"])

    def add_own(self, records: Records, counters: list[dict[str, float]], replicas: list[int]) -> None:
        """What this process recorded itself (into ``sim.records``, which are ``records``) on ``replicas``,
        with their memory ``counters``."""
        self.tables.append(records.segments)
        self.counters.update(zip(replicas, counters))

    def finish(self, jobs: int, ended: int) -> Records:
        """The joined records (``jobs``: the processes the replicas ran in; ``ended``: the requests they ended,
        for the last progress report to ``sim.progress``)."""
        sim = self.sim
        records = sim.records
        records.sequences.sort_reasons()
        records.segments = SegmentTable.in_end_order(self.tables, consume=True)
        self.tables = []
        records.memory = sim.memory_totals([self.counters[r] for r in range(len(sim.replicas))])
        records.jobs = jobs
        if sim.progress is not None:
            end = float(records.segments.column("end_s").max()) if len(records.segments) else 0.0
            sim.progress(Progress(end, ended, len(sim.requests)))
        return records


class _Array:
    """Where the ``index``-th array sent raw after a payload's skeleton goes back (:func:`send_result`)."""

    def __init__(self, index: int) -> None:
        self.index = index


def send_result(sender, kind: str, payload=None) -> None:
    """Send a worker's ``(kind, payload)`` to the parent: the payload with its NumPy arrays taken out (pickled),
    then the arrays' bytes as they are. A pickled array of a hundred megabytes took seconds to cross a
    pipe (the receiving end's reads grow their buffer a pipe's worth at a time); raw, it reads straight into
    its array (:func:`receive_result`)."""
    arrays: list[np.ndarray] = []
    skeleton = _strip(payload, arrays)
    sender.send((kind, skeleton, [(array.dtype.str, array.shape) for array in arrays]))
    handle = sender.fileno()
    if arrays:
        _widen_pipe(handle)
    for array in arrays:
        view = memoryview(array).cast("B")
        while len(view):
            view = view[os.write(handle, view):]


def _widen_pipe(handle: int) -> None:
    """Give the pipe ``handle`` writes into a buffer of :data:`PIPE_BYTES` where the system allows (Linux): a
    pipe's default 64 KiB moved about 300 MB/s on this project's machine, 1 MiB about 1.9 GB/s."""
    try:
        import fcntl

        fcntl.fcntl(handle, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):  # another system, or a smaller limit: the default buffer
        pass


def receive_result(process, receiver, run: str) -> tuple[str, object]:
    """A worker's ``(kind, payload)`` (:func:`send_result`; its pipe is ready: a result, or the end of a worker
    that died); a worker's error raised here (``run`` names the run in the message)."""
    try:
        kind, skeleton, specs = receiver.recv()
        arrays = []
        handle = receiver.fileno()
        for dtype, shape in specs:
            array = np.empty(shape, dtype=dtype)
            view = memoryview(array).cast("B")
            got = 0
            while got < len(view):
                count = os.readv(handle, [view[got:]])
                if not count:
                    raise EOFError
                got += count
            arrays.append(array)
    except EOFError:
        process.join()
        raise RuntimeError(f"a worker process of the {run} ended without its results (exit code "
                           f"{process.exitcode})") from None
    if kind == "error":
        error, text = skeleton
        if error is not None:
            raise error
        raise RuntimeError(f"a worker process of the {run} failed:\n{text}")

    return kind, _fill(skeleton, arrays)


def _strip(value, arrays: list[np.ndarray]):
    """``value`` with each NumPy array in it (in dicts and namespaces) put at the end of ``arrays`` and replaced
    by its :class:`_Array`. (Module functions rather than recursive closures: a closure that calls itself is a
    reference cycle, which kept a million requests' arrays alive until the garbage collector ran.)"""
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        arrays.append(np.ascontiguousarray(value))
        return _Array(len(arrays) - 1)
    if isinstance(value, dict):
        return {key: _strip(item, arrays) for key, item in value.items()}
    if isinstance(value, SimpleNamespace):
        return SimpleNamespace(**{key: _strip(item, arrays) for key, item in vars(value).items()})
    return value


def _fill(value, arrays: list[np.ndarray]):
    """``value`` with each :class:`_Array` in it replaced by its array (the inverse of :func:`_strip`)."""
    if isinstance(value, _Array):
        return arrays[value.index]
    if isinstance(value, dict):
        return {key: _fill(item, arrays) for key, item in value.items()}
    if isinstance(value, SimpleNamespace):
        return SimpleNamespace(**{key: _fill(item, arrays) for key, item in vars(value).items()})
    return value


def send_error(sender) -> None:
    """Send the exception being handled to the parent (as text where it does not survive pickling)."""
    error = sys.exc_info()[1]
    text = traceback.format_exc()
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - an error that does not survive pickling goes back as text
        error = None
    try:
        sender.send(("error", (error, text), []))
    except Exception:  # noqa: BLE001 - the parent sees the worker end without results
        pass


def _work(sim: Simulation, placement: np.ndarray, replicas: list[int], slot: int, ended, clock, sender) -> None:
    """A worker: serve ``replicas``' requests, send what was recorded, and leave without running the parent's
    exit handlers (its files and outputs are the parent's)."""
    try:
        sim.serve_only(placement, replicas)

        def progress(p: Progress) -> None:
            ended[slot], clock[slot] = p.ended, p.sim_time_s

        sim.progress = progress
        records = sim.run()
        outcomes = records.sequences
        counters = sim.replica_counters()
        send_result(sender, "ok", {
            "sequences": SimpleNamespace(reasons=outcomes.reasons, reason=outcomes.reason,
                                         **{name: getattr(outcomes, name) for name in RequestRecords.COLUMNS}),
            "segments": records.segments.columns(),
            "events": records.events,
            "counters": {r: counters[r] for r in replicas},
        })
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        send_error(sender)
    finally:
        sender.close()
        os._exit(0)
