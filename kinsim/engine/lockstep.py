"""Replicas under a load-reading router in several processes that meet at every arrival (``kinsim run --jobs N``).

:mod:`kinsim.engine.parallel` runs replicas apart when every request's replica is known before the run. A
``least_loaded`` router over arrivals spread in time is not: it places each request on the replica with the
fewest outstanding requests, and those depend on when the other replicas' requests end. But the replicas still
interact only there. Between two instants of arrivals a replica's events depend on its own requests alone, so
``N`` processes can each run a share of the replicas (replica ``r`` in process ``r mod N``) and meet before
every instant of arrivals: each tells the others the loads of its replicas that changed since the last meeting
(the ends since then), all of them route the instant's requests alike, and each serves the ones placed on its
replicas. Every process routes every request, so every router makes the same choices as the one-process run's;
each process then has its replicas' events exactly as that run has them (it runs :mod:`kinsim.engine.lean`,
where a replica plans at once or at the end of the instant by the events it sees, open arrivals included: the
outcome is the same either way when no arrival comes at that instant). This process is process 0; the others
fork from it as it was built and send it their records, which it joins into its own (as
:func:`kinsim.engine.parallel.run_parallel` joins its workers'): every figure is the one-process run's to the bit except
``engine.events`` (each process counts its own events, the arrivals in all of them) and ``engine.jobs``
(``tests/test_lockstep.py``).

**The meeting** is a few words of memory shared by the processes (an anonymous shared mapping made before
they fork): per process the last instant it published and the last it read, its changed replicas and their
loads, and a flag that a process raises when it stops. A process publishes its changes, waits until every
other has published the same instant, reads theirs, and says so; before it publishes the next instant it waits
until the others have read the last. Waiting spins on the shared words (yielding the core every few hundred
turns, and looking at the stop flag and whether the processes it waits for are alive): a meeting costs about
a microsecond where each process has a core, against about 40 us through a pipe, and a chat run meets once
per request; so no more processes than usable cores run (:func:`usable_cores`). That needs the stores of one
process to reach the others in the order it made them, which x86's memory model guarantees; elsewhere the
run stays in one process.

What it gains is the share of the work that the processes do at once: between two instants of arrivals the
slower process sets the pace (measured on 10^5 chat requests on 8 replicas, the replicas' own work in two
interleaved halves is 73% of its sum in one process), and every process routes every request: two processes
take about 85% of one's time (docs/engine.md).
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import platform
from multiprocessing.connection import wait
from types import SimpleNamespace

import numpy as np

from kinsim.engine.parallel import Joiner, receive_result, send_error, send_result, shared_why_not
from kinsim.engine.records import Records
from kinsim.engine.request_records import RequestRecords
from kinsim.engine.simulation import Progress, Simulation

#: Machines whose memory model keeps one process's stores in order for the others (x86's total store order).
ORDERED_STORES = ("x86_64", "amd64", "i386", "i686", "x86")
#: Turns of a waiting loop between two looks at the stop flag and two yields of the core.
SPINS = 256


def usable_cores() -> int:
    """The cores this process may run on (at least 1): processes that wait for each other by spinning each
    need one of their own (on 2 cores, 10^4 chat requests took 1.1 s in 2 meeting processes, 1.7 s in 4)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # (no affinity on this system)
        return max(1, os.cpu_count() or 1)


class LinkBroken(Exception):
    """Another process of the lockstep run stopped (an error, or the run handed back)."""


def lockstep_why_not(sim: Simulation) -> str:
    """Why ``sim``'s replicas cannot run in processes that meet at every arrival, or ``""``."""
    from kinsim.engine.lean import unsupported

    why = shared_why_not(sim)
    if why:
        return why
    policy = sim.workload.deployment.router
    if policy not in ("least_loaded", "group_affinity"):
        return f"the {policy} router"
    if len(sim.requests) and max(sim._group_size) > 1:
        return ("groups of several requests arriving over time (a group's later members go where its first "
                "went, which every process would have to remember until the group ends)")
    why = unsupported(sim)
    if why:
        return f"the processes run the lean engine, which does not take {why}"
    machine = platform.machine().lower()
    if machine not in ORDERED_STORES:
        return (f"the processes meet through shared memory, which needs x86's ordering of stores (this machine is "
                f"{machine or 'unknown'})")
    return ""


class Link:
    """The meeting point of a lockstep run's ``jobs`` processes over ``replicas`` replicas (made before they
    fork; each process then :meth:`bind`\\ s its index). Shared words (64-bit): the stop flag; per process
    the last instant it published and the last it read; per process its changed replicas (a count, then
    their indices); each replica's load as its process last published it."""

    def __init__(self, jobs: int, replicas: int) -> None:
        self.jobs, self.replicas = jobs, replicas
        self._changes = 1 + 2 * jobs  # the first word of process 0's changed replicas
        self._loads = self._changes + jobs * (replicas + 1)
        self._memory = mmap.mmap(-1, 8 * (self._loads + replicas))
        self.cells = memoryview(self._memory).cast("q")
        self.process = -1
        self.own: list[bool] = []
        #: Called while waiting, every :data:`SPINS` turns: raises :class:`LinkBroken` where a process that
        #: this one waits for has died (process 0 watches the others; the others watch process 0).
        self.watch = None

    def bind(self, process: int) -> None:
        """This is process ``process``: its replicas are those ``r`` with ``r mod jobs == process``."""
        self.process = process
        self.own = [r % self.jobs == process for r in range(self.replicas)]
        # (the words this process writes; each other process's published and read words and its changes)
        self._mine = (1 + 2 * process, 2 + 2 * process, self._changes + process * (self.replicas + 1))
        self._others = [(1 + 2 * other, 2 + 2 * other, self._changes + other * (self.replicas + 1))
                        for other in range(self.jobs) if other != process]

    def share(self, process: int) -> list[int]:
        """The replicas of process ``process``."""
        return list(range(process, self.replicas, self.jobs))

    def stop(self) -> None:
        """Tell the other processes that this one stops (they raise :class:`LinkBroken` while waiting)."""
        self.cells[0] = 1

    def meet(self, instant: int, changed: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Publish this process's ``changed`` replicas' loads (``(replica, load)`` pairs) for the ``instant``-th
        meeting (from 1), wait for every other process's, and return theirs."""
        cells, loads = self.cells, self._loads
        published, read, base = self._mine
        for _, other_read, _ in self._others:  # everyone has read what this process published last
            if cells[other_read] < instant - 1:
                self._wait(other_read, instant - 1)
        for n, (replica, load) in enumerate(changed, start=1):
            cells[loads + replica] = load
            cells[base + n] = replica
        cells[base] = len(changed)
        cells[published] = instant  # (after the words above: x86 keeps the order of stores)
        heard = []
        for other_published, _, start in self._others:
            if cells[other_published] < instant:
                self._wait(other_published, instant)
            count = cells[start]
            if count:
                for replica in cells[start + 1:start + 1 + count].tolist():
                    heard.append((replica, cells[loads + replica]))
        cells[read] = instant
        return heard

    def _wait(self, cell: int, value: int) -> None:
        """Spin until shared word ``cell`` reaches ``value`` (the core yielded every :data:`SPINS` turns)."""
        cells = self.cells
        spins = 0
        while cells[cell] < value:
            spins += 1
            if spins == SPINS:
                spins = 0
                if cells[0]:
                    raise LinkBroken("another process of the run stopped")
                if self.watch is not None:
                    self.watch()
                os.sched_yield()


def run_lockstep(sim: Simulation, jobs: int) -> Records | None:
    """Run ``sim`` (:func:`lockstep_why_not` gives ``""``) in ``min(jobs, replicas)`` processes that meet at
    every arrival: this one (process 0) and ``jobs - 1`` forked from it as it was built; this one joins what
    the others recorded into its records. Returns the joined records, or None where a process met what the
    lean engine does not do (a request that can never run): the run is then started over in one process
    (:meth:`Simulation.run`, after :meth:`Simulation._restart`). An error in a process is raised here."""
    from kinsim.engine.lean import LeanRun, Unsupported

    jobs = min(jobs, len(sim.replicas))
    link = Link(jobs, len(sim.replicas))
    context = multiprocessing.get_context("fork")
    ended = context.Array("q", jobs, lock=False)  # requests ended so far, per process (process 0's unused)
    total = len(sim.requests)
    report = sim.progress
    running: dict = {}  # receiver -> (process, its index)
    joiner = Joiner(sim)
    try:
        for index in range(1, jobs):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_work, args=(sim, link, index, ended, sender), daemon=True)
            process.start()
            sender.close()
            running[receiver] = (process, index)
        link.bind(0)
        processes = [process for process, _ in running.values()]

        def watch() -> None:
            for process in processes:
                if process.exitcode is not None:  # (a waitpid that does not block)
                    raise LinkBroken(f"a process of the run ended (exit code {process.exitcode})")

        link.watch = watch
        if report is not None:  # the whole run's progress: this process's, with the others' ends
            sim.progress = lambda p: report(Progress(p.sim_time_s, p.ended + sum(ended), total))
        run = LeanRun(sim, link)
        try:
            records = run.run()
        except (Unsupported, LinkBroken):
            link.stop()
            records = None
        finally:
            sim.progress = report
        while running:  # the others' records (or why they stopped)
            for receiver in wait(list(running)):
                process, index = running.pop(receiver)
                kind, payload = receive_result(process, receiver, "lockstep run")
                receiver.close()
                process.join()
                if kind == "hand back":
                    records = None
                if kind != "ok" or records is None:  # "stopped": another process stopped first and says why
                    continue
                if not np.array_equal(payload["placement"], run.placed):
                    raise RuntimeError("the processes of a lockstep run routed the requests differently (a bug in "
                                       "kinsim)")
                joiner.add(payload, payload["rows"])
    finally:
        link.stop()
        for receiver, (process, _) in running.items():
            receiver.close()
            process.kill()
            process.join()
    if records is None:  # (what this process's part of the run left: forgotten)
        sim._serving, sim.lean_counters = None, None
        sim._restart()
        return None
    joiner.add_own(records, [sim.lean_counters[r] for r in link.share(0)], link.share(0))
    return joiner.finish(jobs, sim._ended + sum(ended))


def _work(sim: Simulation, link: Link, index: int, ended, sender) -> None:
    """Process ``index`` (from 1): serve its replicas, meeting the others at every arrival; send what it
    recorded (its requests' outcomes alone), or that the run goes back to one process, and leave without
    running the parent's exit handlers."""
    from kinsim.engine.lean import LeanRun, Unsupported

    try:
        link.bind(index)
        parent = os.getppid()

        def watch() -> None:
            if os.getppid() != parent:
                raise LinkBroken("the run's first process ended")

        link.watch = watch

        def progress(p: Progress) -> None:
            ended[index] = p.ended

        sim.progress = progress
        run = LeanRun(sim, link)
        try:
            records = run.run()
        except Unsupported as why:
            link.stop()
            send_result(sender, "hand back", str(why))
            return
        outcomes = records.sequences
        rows = np.flatnonzero(sim._serving)
        counters = sim.replica_counters()
        send_result(sender, "ok", {
            "sequences": SimpleNamespace(reasons=outcomes.reasons, reason=outcomes.reason[rows],
                                         **{name: getattr(outcomes, name)[rows] for name in RequestRecords.COLUMNS}),
            "rows": rows,
            "segments": records.segments.columns(),
            "events": records.events,
            "counters": {r: counters[r] for r in link.share(index)},
            "placement": run.placed,
        })
    except LinkBroken:  # another process stopped first: its message is the one that counts
        send_result(sender, "stopped")
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        link.stop()
        send_error(sender)
    finally:
        sender.close()
        os._exit(0)
