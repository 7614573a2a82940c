"""One simulation: the SimPy environment, the replicas, the router, the arrivals and the records.

**Order of events at one instant** (the only place it is decided; ``tests/test_engine.py`` checks it):

1. steps and segments that end (SimPy's normal priority): finished sequences free their KV blocks and
   a finished task releases the next problem of a closed loop;
2. arrivals (priority :data:`ARRIVAL`): requests arriving now are routed, in generation order, and see
   the loads left by step 1;
3. decisions (priority :data:`DECIDE`): every replica at a step boundary plans its next step, seeing
   every request that arrived at or before now.

Everything the simulation owns (clock, queues, id counters, records) lives on the :class:`Simulation`
object, so two simulations in one process do not interfere.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy
from simpy.events import Event

from kinsim.cost.registry import make_cost_model
from kinsim.engine.clock import MAX_RUN_WORDS, MAX_TICKS, TICKS_PER_S, to_seconds, to_tick
from kinsim.engine.fluid import FluidNetwork
from kinsim.engine.host_tier import host_copy_model, host_kv_blocks
from kinsim.engine.kv import KVLayout, kv_layout
from kinsim.engine.pricer import StepPricer
from kinsim.engine.records import Records
from kinsim.engine.replica import Replica
from kinsim.engine.request_records import RequestRecords
from kinsim.engine.router import Router
from kinsim.engine.scheduler import Scheduler
from kinsim.engine.segment_totals import SegmentTotals
from kinsim.engine.sequence import Sequence
from kinsim.engine.speculation import check_speculative_deployment, check_speculative_requests
from kinsim.engine.streaming import RequestTotals
from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.hardware.topology import HOST_LINK_DIRECTIONS, build_topology, gpu_name, host_link_resource, route
from kinsim.limits import MAX_TIME_S, MAX_TIME_WORDS, MAX_TOKENS
from kinsim.ops.offload import offloads
from kinsim.workload.generate import workload_request_table
from kinsim.workload.request import Request, RequestTable
from kinsim.workload.spec import ClosedLoopArrivals, WorkloadSpec

#: Event priorities within one instant (SimPy's own: 0 urgent, 1 normal).
ARRIVAL, DECIDE = 2, 3


class _Scheduled(Event):
    """An event that fires after ``delay`` at ``priority`` (lower first among events at one instant)."""

    def __init__(self, env: simpy.Environment, priority: int, delay: float = 0.0) -> None:
        super().__init__(env)
        self._ok, self._value = True, None
        env.schedule(self, priority, delay)


@dataclass(frozen=True)
class Progress:
    """Where a running simulation is: simulated seconds, and requests ended out of all."""

    sim_time_s: float
    ended: int
    total: int


class Simulation:
    """Serve ``workload`` on ``hardware``; :meth:`run` returns the :class:`Records`."""

    def __init__(self, workload: WorkloadSpec, hardware: HardwareSpec, *, exact_steps: bool = False,
                 cost_model: str = "roofline", requests: list[Request] | RequestTable | None = None,
                 op_window: tuple[float, float] | None = None, records: str | None = None,
                 workload_file: str | None = None, hardware_file: str | None = None) -> None:
        """``op_window`` (start, end) in seconds: record op-level slices of the steps overlapping it.
        ``records``: what to keep (:data:`RECORDS`); ``None`` chooses with :func:`default_records`.
        ``workload_file`` and ``hardware_file``: where the specs came from, named in errors."""
        deployment = workload.deployment
        self.workload_file = workload_file
        check_deployment(workload, hardware, workload_file, hardware_file)
        self.workload, self.hardware, self.exact_steps = workload, hardware, exact_steps
        self._op_window = None if op_window is None else (to_tick(op_window[0]), to_tick(op_window[1]))
        self.layout: KVLayout = kv_layout(workload.model, deployment, workload.attention, hardware,
                                          workload_file=workload_file, hardware_file=hardware_file)
        self.env = simpy.Environment()
        self.network = FluidNetwork(self.env)
        self.records = Records()
        try:
            if requests is None:
                requests = workload_request_table(workload)
            elif not isinstance(requests, RequestTable):
                requests = RequestTable.from_requests(requests)
            check_request_table(requests)
            check_speculative_requests(workload, requests)
        except SpecError as error:
            raise error.within("", workload_file) from None
        self.requests = requests
        self._pricer = StepPricer(workload.model, deployment, workload.attention,
                                  make_cost_model(cost_model, hardware))
        self.records_mode = default_records(len(requests)) if records is None else records
        if self.records_mode not in RECORDS:
            raise SpecError(f"must be one of {', '.join(RECORDS)}", path="--records", value=records)
        if self.records_mode != "full":
            self.records.segments = SegmentTotals(deployment.data_parallel)
        if self.records_mode == "none":
            self.records.sequences = RequestTotals(requests, getattr(workload.requests, "warmup", 0))
        else:
            self.records.sequences = RequestRecords(requests)
        self.replicas = self._build_replicas(hardware, deployment.tensor_parallel, deployment.data_parallel)
        self.router = Router(deployment.router, len(self.replicas), lambda i: self.replicas[i].scheduler.outstanding)
        # Members of each group (groups are numbered in the order of their first request): a CSR index.
        self._by_group = np.argsort(requests.group, kind="stable")
        self._group_start = np.searchsorted(requests.group[self._by_group], np.arange(requests.groups + 1))
        self._group_size = np.bincount(requests.group, minlength=requests.groups).tolist()
        self._group_left = list(self._group_size)
        self._group_replicas: dict[int, set[int]] = {}
        self._live: dict[int, Sequence] = {}  # requests placed on a replica and not ended, by order
        self._released = 0
        self._round_left = 0  # groups of the current round still running (closed loop in rounds)
        self._ended = 0
        self.progress: Callable[[Progress], None] | None = None

    # ------------------------------------------------------------------------------ building
    def _build_replicas(self, hw: HardwareSpec, tp: int, dp: int) -> list[Replica]:
        graph = build_topology(hw) if tp > 1 else None  # one-GPU replicas use no links
        per_node = hw.node.gpus
        gpu_sets = [[gpu_name(g // per_node, g % per_node) for g in range(r * tp, (r + 1) * tp)] for r in range(dp)]
        link_sets = []
        for gpus in gpu_sets:
            links = set()
            for a, b in itertools.permutations(gpus, 2):
                path = route(graph, a, b)
                links.update(f"{u}->{v}" for u, v in zip(path, path[1:]))
            link_sets.append(sorted(links))
        self.records.replica_gpus, self.records.replica_links = gpu_sets, link_sets
        deployment = self.workload.deployment
        # the replicas copy KV over their host links: swaps, and loads from the host tier of the prefix cache
        copies = deployment.preemption == "swap" or deployment.kv_offload != "none"
        # host-link resources of each replica: both directions for swap copies, host to GPU for the fetches of
        # offloaded sparse attention; GPUs behind one link (host_link.shared_by) share it
        host_sets = [sorted({host_link_resource(hw, g, d) for g in range(r * tp, (r + 1) * tp)
                             for d in (HOST_LINK_DIRECTIONS if copies else ("h2d",))})
                     if copies or self._pricer.offload else [] for r in range(dp)]
        # host memory for KV: swapped sequences and offloaded prefix blocks, or every offloaded token
        holds = copies or self.layout.host_bytes_per_token > 0
        host_blocks = host_kv_blocks(hw, self.layout, deployment.host_kv_fraction) if holds else 0
        replicas = []
        for r, (gpus, links) in enumerate(zip(gpu_sets, link_sets)):
            uses = set(links) | set(host_sets[r])
            private = all(not uses & (set(other) | set(host)) for k, (other, host) in
                          enumerate(zip(link_sets, host_sets)) if k != r)
            scheduler = Scheduler(self.layout, deployment, on_finish=self._on_end, host_blocks=host_blocks)
            host_copy = host_copy_model(hw, self.layout, range(r * tp, (r + 1) * tp)) if copies else None
            replica = Replica(r, self.env, self.network, scheduler, self._pricer, gpus, links,
                              segments_allowed=private and not self.exact_steps, decide=self._decide,
                              record=self.records.segments.append, record_op=self.records.ops.append,
                              op_window=self._op_window, private=private, host_copy=host_copy,
                              host_links=[name for name in host_sets[r] if name.endswith(".h2d")])
            replicas.append(replica)
        return replicas

    def _decide(self) -> Event:
        return _Scheduled(self.env, DECIDE)

    # ------------------------------------------------------------------------------ arrivals
    def _arrivals(self):
        """Open arrivals: every request at its arrival time (groups whole under a closed loop)."""
        arrival = self.workload.requests.arrival if hasattr(self.workload.requests, "arrival") else None
        if isinstance(arrival, ClosedLoopArrivals):
            self._release(min(arrival.concurrency, self.requests.groups))
            return
        arrival = self.requests.arrival_s
        order = np.argsort(arrival, kind="stable")  # by arrival, ties in generation order
        ticks = np.round(arrival[order] * TICKS_PER_S)  # to_tick, vectorised (both round half to even)
        bounds = np.flatnonzero(np.diff(ticks)) + 1
        for chunk in np.split(np.arange(len(order)), bounds) if len(order) else ():
            tick = float(ticks[chunk[0]])
            yield _Scheduled(self.env, ARRIVAL, max(tick - self.env.now, 0.0))
            arrived = to_seconds(tick)  # on the engine's clock
            for i in order[chunk].tolist():
                self._route(i, arrived)

    def _release(self, problems: int) -> None:
        """Release the next ``problems`` groups of a closed loop now (at the arrival priority)."""
        groups = list(range(self._released, min(self._released + problems, self.requests.groups)))
        self._released += len(groups)
        self._round_left += len(groups)
        if not groups:
            return
        event = _Scheduled(self.env, ARRIVAL)
        event.callbacks.append(lambda _e: self._route_groups(groups))

    def _route_groups(self, groups: list[int]) -> None:
        now = to_seconds(self.env.now)
        for group in groups:
            for i in self._by_group[self._group_start[group]:self._group_start[group + 1]].tolist():
                self._route(i, now)

    def _route(self, i: int, arrival_s: float) -> None:
        """Place request ``i``, arrived at ``arrival_s``, on a replica: it becomes a live sequence."""
        request = self.requests[i]
        group = int(self.requests.group[i])
        replica = self.replicas[self.router.place(group)]
        state = replica.scheduler.group_state(group, request.prompt_tokens, request.hash_ids, request.hash_block_tokens)
        seq = Sequence(request, i, state, arrival_s)
        if self._group_size[group] > 1:  # where its members went, to forget the group there when it ends
            self._group_replicas.setdefault(group, set()).add(replica.index)
        self._live[i] = seq
        replica.enqueue(seq)

    def _on_end(self, seq: Sequence) -> None:
        self._ended += 1
        del self._live[seq.order]
        self.records.sequences.write(seq)
        group = int(self.requests.group[seq.order])
        self._group_left[group] -= 1
        if self._group_left[group] == 0:  # nothing of the group is left to place or serve
            self.router.forget(group)
            for r in self._group_replicas.pop(group, (seq.replica,)):
                self.replicas[r].scheduler.forget_group(group)
        arrival = getattr(self.workload.requests, "arrival", None)
        if self._group_left[group] == 0 and isinstance(arrival, ClosedLoopArrivals):
            self._round_left -= 1
            if not arrival.rounds:
                self._release(1)
            elif self._round_left == 0:  # the whole round has ended: the next one starts together
                self._release(arrival.concurrency)

    # ------------------------------------------------------------------------------ running
    def run(self) -> Records:
        """Run to the end: until every request has ended."""
        env = self.env
        env.process(self._arrivals())
        events = 0
        last_report = 0
        total = len(self.requests)
        while (next_tick := env.peek()) != float("inf"):
            if next_tick > MAX_TICKS:  # past it float64 rounds ticks: refuse rather than report rounded times
                raise SpecError(f"the simulated time would pass {MAX_RUN_WORDS}", file=self.workload_file,
                                hint="simulate fewer or shorter requests")
            env.step()
            events += 1
            if self.progress is not None and events - last_report >= 2000:
                last_report = events
                self.progress(Progress(to_seconds(env.now), self._ended, total))
        self.records.events = events
        memory: dict[str, float] = {}
        for replica in self.replicas:
            for name, value in {**replica.scheduler.memory_counters(), **replica.host_stats,
                                **replica.spec_stats}.items():
                if name not in memory:
                    memory[name] = value
                elif name.endswith("_peak_blocks"):  # the most on any replica, as kv.peak_bytes
                    memory[name] = max(memory[name], value)
                else:
                    memory[name] += value
        memory["host_capacity_blocks"] = self.replicas[0].scheduler.host_blocks if self.replicas else 0
        self.records.memory = memory
        outcomes = self.records.sequences
        for seq in self._live.values():
            seq.reason = f"still {seq.state} when the simulation ran out of events (a bug in kinsim)"
            outcomes.write(seq)
        if isinstance(outcomes, RequestRecords):
            for i in np.flatnonzero((outcomes.reason < 0) & np.isnan(outcomes.finish_s)).tolist():
                outcomes.set_reason(i, "never reached a replica (a bug in kinsim)")
        else:
            outcomes.never_placed(len(self.requests) - self._ended - len(self._live))
        if self.progress is not None:
            self.progress(Progress(to_seconds(env.now), self._ended, total))
        return self.records

    @property
    def finished(self) -> int:
        outcomes = self.records.sequences
        return outcomes.completed if isinstance(outcomes, RequestTotals) else int(outcomes.finished().sum())


def hardware_words(hardware: HardwareSpec, hardware_file: str | None) -> str:
    """How messages name the hardware: ``h100 (hardware/h100.yaml)``, or its name alone."""
    return f"{hardware.name} ({hardware_file})" if hardware_file else hardware.name


def check_deployment(workload: WorkloadSpec, hardware: HardwareSpec, workload_file: str | None = None,
                     hardware_file: str | None = None) -> None:
    """A :class:`SpecError` naming the workload file, the key to change and the hardware file when the
    deployment does not fit the hardware: one replica (tensor_parallel) needs more GPUs than the hardware
    has (blame tensor_parallel), or all replicas do (blame data_parallel)."""
    deployment = workload.deployment
    tp, dp, total = deployment.tensor_parallel, deployment.data_parallel, hardware.total_gpus
    on = hardware_words(hardware, hardware_file)
    if hardware.cluster and hardware.cluster.nodes > 1:
        has = (f"{on} has {total} ({hardware.cluster.nodes} nodes x {hardware.node.gpus}: hw.cluster.nodes x "
               "hw.node.gpus)")
    else:
        has = f"{on} has {total} (hw.node.gpus)"
    if tp > total:
        raise SpecError(f"one replica needs {tp} GPUs but {has}", path="deployment.tensor_parallel", value=tp,
                        file=workload_file, hint="lower deployment.tensor_parallel, or add nodes with hw.cluster.nodes")
    if workload.gpus > total:
        raise SpecError(f"needs {workload.gpus} GPUs (deployment.tensor_parallel {tp} x deployment.data_parallel "
                        f"{dp}) but {has}", path="deployment.data_parallel", value=dp, file=workload_file,
                        hint=f"deployment.data_parallel at most {total // tp} fits")
    if offloads(workload.attention) and deployment.preemption == "swap":
        raise SpecError("must be recompute with attention.offload: the KV already lives in host memory",
                        path="deployment.preemption", value=deployment.preemption, file=workload_file)
    check_speculative_deployment(workload, workload_file)
    if deployment.max_num_batched_tokens < deployment.max_num_seqs:
        raise SpecError(f"must be at least deployment.max_num_seqs ({deployment.max_num_seqs}) so that "
                        "every decoding sequence fits in a step", path="deployment.max_num_batched_tokens",
                        value=deployment.max_num_batched_tokens, file=workload_file)


def check_request_table(table: RequestTable) -> None:
    """The engine's guarantee on what it serves, whoever built the requests: arrivals finite, from 0 to
    :data:`~kinsim.limits.MAX_TIME_S`; token counts from 1 to MAX_TOKENS. Traces and generated
    workloads are checked earlier, naming the row or the key; this names the request."""
    arrival = table.arrival_s
    checks = ((~((arrival >= 0) & (arrival <= MAX_TIME_S)), "arrival_s", f"must be from 0 s to {MAX_TIME_WORDS}"),
              (~((table.prompt_tokens >= 1) & (table.prompt_tokens <= MAX_TOKENS)), "prompt_tokens",
               f"must be from 1 to {MAX_TOKENS:,} tokens"),
              (~((table.output_tokens >= 1) & (table.output_tokens <= MAX_TOKENS)), "output_tokens",
               f"must be from 1 to {MAX_TOKENS:,} tokens"))
    for bad, column, rule in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SpecError(rule, path=f"request {table.request_id(i)}.{column}",
                            value=getattr(table, column)[i].item())


#: What a simulation keeps (``kinsim run --records``): ``full``, every request's outcome and every step or
#: segment (for the request and step tables, timelines and reports); ``summary``, every request's outcome
#: but only running totals of the segments (exact figures and percentiles; plot series rebinned from a fine
#: grid); ``none``, running totals only (percentiles from logarithmic histograms, within 0.1%).
RECORDS = ("full", "summary", "none")
#: Above this many requests the default is ``summary``: the segments' rows would outgrow memory.
FULL_RECORDS_LIMIT = 2_000_000


def default_records(requests: int) -> str:
    """``full`` up to :data:`FULL_RECORDS_LIMIT` requests, else ``summary``."""
    return "full" if requests <= FULL_RECORDS_LIMIT else "summary"
