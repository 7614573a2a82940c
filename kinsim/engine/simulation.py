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
from functools import partial

import numpy as np
import simpy
from simpy.events import Event

from kinsim.cost.registry import make_cost_model
from kinsim.engine.clock import MAX_RUN_WORDS, MAX_TICKS, TICKS_PER_S, to_seconds, to_tick
from kinsim.engine.disagg import KVHandoff, RolePlan, TransferCost, joined_topology, role_plans, transfer_cost
from kinsim.engine.fluid import FluidNetwork
from kinsim.engine.host_tier import host_copy_model, host_kv_blocks
from kinsim.engine.kv import KVLayout, kv_layout
from kinsim.engine.pricer import StepPricer
from kinsim.engine.records import Records, SegmentTable
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
from kinsim.ops.attention import model_attention_dims
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
        #: The roles of the replicas (one ``both`` role unless disaggregated), with their KV layouts.
        self.roles = role_plans(deployment)
        #: Each role's hardware: the run's, or the role's own file (disaggregation.<role>.hardware).
        self._hardware = [hardware if role.hardware_file is None else _role_hardware(workload, role, workload_file)
                          for role in self.roles]
        self.role_hardware = {role.name: hw for role, hw in zip(self.roles, self._hardware)}
        self._layouts = [kv_layout(workload.model, role.deployment, workload.attention, hw,
                                   workload_file=workload_file, hardware_file=role.hardware_file or hardware_file)
                         for role, hw in zip(self.roles, self._hardware)]
        self.layout: KVLayout = self._layouts[-1]  # the decode role's, whose KV the figures describe
        self.role_layouts = {role.name: layout for role, layout in zip(self.roles, self._layouts)}
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
        self._pricers = [StepPricer(workload.model, role.deployment, workload.attention,
                                    make_cost_model(cost_model, hw)) for role, hw in zip(self.roles, self._hardware)]
        self._pricer = self._pricers[-1]
        self.records_mode = default_records(len(requests)) if records is None else records
        if self.records_mode not in RECORDS:
            raise SpecError(f"must be one of {', '.join(RECORDS)}", path="--records", value=records)
        if self.records_mode != "full":
            self.records.segments = SegmentTotals(sum(role.replicas for role in self.roles))
        if self.records_mode == "none":
            self.records.sequences = RequestTotals(requests, getattr(workload.requests, "warmup", 0))
        else:
            self.records.sequences = RequestRecords(requests)
        self._handoff: KVHandoff | None = None
        self.replicas = self._build_replicas(hardware)
        first = self.roles[0]
        self.router = Router(deployment.router, first.replicas, lambda i: self.replicas[i].scheduler.outstanding)
        # Members of each group (groups are numbered in the order of their first request): a CSR index.
        self._by_group = np.argsort(requests.group, kind="stable")
        self._group_start = np.searchsorted(requests.group[self._by_group], np.arange(requests.groups + 1))
        self._group_size = np.bincount(requests.group, minlength=requests.groups).tolist()
        self._group_left = list(self._group_size)
        self._group_replicas: dict[int, set[int]] = {}
        self._live: dict[int, Sequence] = {}  # requests placed on a replica and not ended, by order
        self._released = 0
        # the serving frontend's time per request (HTTP, tokenization): requests reach the first role's queue
        # this long after they arrive, their TTFT counted from the arrival
        frontend_s = deployment.frontend_s
        self._frontend_ticks = to_tick(self._pricers[0].overhead.frontend_s if frontend_s is None else frontend_s)
        self._round_left = 0  # groups of the current round still running (closed loop in rounds)
        self._ended = 0
        self.progress: Callable[[Progress], None] | None = None
        #: The replica of every request, decided before the run (:meth:`serve_only`), or None: the router's
        #: choice at each arrival.
        self._placement: np.ndarray | None = None
        #: The requests this simulation serves (a boolean mask), or None: all of them.
        self._serving: np.ndarray | None = None
        #: Each replica's memory counters where the lean engine ran the simulation (its replicas are its own).
        self.lean_counters: list[dict[str, float]] | None = None

    # ------------------------------------------------------------------------------ building
    def _build_replicas(self, hw: HardwareSpec) -> list[Replica]:
        roles = self.roles
        disaggregated = len(roles) > 1
        # each cluster's link graph, where a replica's GPUs need links (tensor parallelism) or KV moves
        graphs = {}
        for role, role_hw in zip(roles, self._hardware):
            if (disaggregated or role.tensor_parallel > 1) and role.prefix not in graphs:
                graphs[role.prefix] = (role_hw, build_topology(role_hw))
        # (role number, first GPU in its cluster, GPUs) of every replica, in order: the prefill role's first
        placed = [(k, role.first_gpu + i * role.tensor_parallel, role.tensor_parallel)
                  for k, role in enumerate(roles) for i in range(role.replicas)]
        gpu_sets, link_sets = [], []
        for k, first, tp in placed:
            prefix, per_node = roles[k].prefix, self._hardware[k].node.gpus
            gpus = [gpu_name(g // per_node, g % per_node) for g in range(first, first + tp)]
            links = set()
            for a, b in itertools.permutations(gpus, 2):
                path = route(graphs[prefix][1], a, b)
                links.update(f"{prefix}{u}->{prefix}{v}" for u, v in zip(path, path[1:]))
            gpu_sets.append([prefix + g for g in gpus])
            link_sets.append(sorted(links))
        self.records.replica_gpus, self.records.replica_links = gpu_sets, link_sets
        self.records.replica_roles = [roles[k].name for k, _, _ in placed]
        deployment = self.workload.deployment
        # the replicas copy KV over their host links: swaps, and loads from the host tier of the prefix cache
        copies = deployment.preemption == "swap" or deployment.kv_offload != "none"
        # host-link resources of each replica: both directions for swap copies, host to GPU for the fetches of
        # offloaded sparse attention; GPUs behind one link (host_link.shared_by) share it
        host_sets = [sorted({roles[k].prefix + host_link_resource(self._hardware[k], g, d)
                             for g in range(first, first + tp) for d in (HOST_LINK_DIRECTIONS if copies else ("h2d",))})
                     if copies or self._pricers[k].offload else [] for k, first, tp in placed]
        transfer_links: set[str] = set()
        if disaggregated:
            self._handoff, transfer_links = self._build_handoff(graphs, gpu_sets)
        replicas = []
        for r, ((k, first, tp), gpus, links) in enumerate(zip(placed, gpu_sets, link_sets)):
            role, layout, role_hw = roles[k], self._layouts[k], self._hardware[k]
            # host memory for KV: swapped sequences and offloaded prefix blocks, or every offloaded token
            holds = copies or layout.host_bytes_per_token > 0
            host_blocks = host_kv_blocks(role_hw, layout, deployment.host_kv_fraction) if holds else 0
            uses = set(links) | set(host_sets[r])
            private = not uses & transfer_links and all(
                not uses & (set(other) | set(host)) for j, (other, host) in enumerate(zip(link_sets, host_sets))
                if j != r)
            on_handoff = partial(self._hand_off, prefill=r) if role.name == "prefill" else None
            scheduler = Scheduler(layout, role.deployment, on_finish=self._on_end, host_blocks=host_blocks,
                                  role=role.name, on_handoff=on_handoff,
                                  max_tokens=getattr(self.workload.requests, "max_output_tokens", None))
            host_copy = None
            if copies:
                host_copy = _prefixed_copy(host_copy_model(role_hw, layout, range(first, first + tp)), role.prefix)
            replica = Replica(r, self.env, self.network, scheduler, self._pricers[k], gpus, links,
                              segments_allowed=private and not self.exact_steps, decide=self._decide,
                              record=self.records.segments.append, record_op=self.records.ops.append,
                              op_window=self._op_window, private=private, host_copy=host_copy,
                              host_links=[name for name in host_sets[r] if name.endswith(".h2d")],
                              start_landings=self._handoff.start if role.name == "decode" else None)
            replica.attribute = self.records_mode != "none"
            replicas.append(replica)
        if self._handoff is not None:
            self._handoff.replicas = replicas
        return replicas

    def _build_handoff(self, graphs: dict, gpu_sets: list[list[str]]) -> tuple[KVHandoff, set[str]]:
        """The KV handoff between the roles, and every link a transfer may cross.
        ``graphs``: each cluster's hardware and link graph, by the prefix of its names."""
        prefill, decode = self.roles
        files = {role.prefix: role.hardware_file for role in self.roles}
        graph = joined_topology([(prefix, hw, g) for prefix, (hw, g) in graphs.items()], files)
        decode_layout = self._layouts[1]
        replica_block_bytes = decode_layout.block_bytes * decode.tensor_parallel
        first_decode = self._first_decode = decode.first_replica
        self._decode_router = Router(self.workload.deployment.router, decode.replicas,
                                     lambda i: self.replicas[first_decode + i].scheduler.outstanding)
        unit: dict[tuple[int, int], TransferCost] = {}  # per (prefill, decode) replica: one block's transfer
        for p in range(prefill.replicas):
            for d in range(first_decode, first_decode + decode.replicas):
                unit[p, d] = transfer_cost(graph, gpu_sets[p], gpu_sets[d], replica_block_bytes)
        links = {name for cost in unit.values() for name in cost.usage}

        window_blocks = None
        model = self.workload.model
        if model.sliding_window_layers:  # the window layers' KV, in the decode replica's blocks' worth of bytes
            layer_kv = model_attention_dims(model, decode.tensor_parallel).kv_bytes_per_token * decode.tensor_parallel
            window_bytes = model.sliding_window_layers * layer_kv  # per token of the window, all the replica's GPUs

            def window_blocks(tokens: int) -> float:
                return min(tokens, model.sliding_window) * window_bytes / replica_block_bytes

        def cost(p: int, d: int, blocks: float) -> TransferCost:
            one = unit[p, d]
            return TransferCost(one.latency_s, one.work_s * blocks, one.usage)

        def group_state(scheduler: Scheduler, seq: Sequence):
            request = seq.request
            return scheduler.group_state(int(self.requests.group[seq.order]), request.prompt_tokens,
                                         request.hash_ids, request.hash_block_tokens)

        handoff = KVHandoff(self.env, self.network, [], lambda group: first_decode + self._decode_router.place(group),
                            group_state, cost, replica_block_bytes, window_blocks)
        return handoff, links

    def _hand_off(self, seq: Sequence, prefill: int) -> None:
        """Prefill replica ``prefill`` has given ``seq`` its first token: on to a decode replica."""
        group = int(self.requests.group[seq.order])
        self._handoff.handoff(seq, prefill, group)
        self._load_changed(prefill)
        self._load_changed(seq.replica)  # the decode replica that received it
        self._group_replicas.setdefault(group, {prefill}).add(seq.replica)

    def _load_changed(self, replica: int) -> None:
        """Replica ``replica``'s outstanding requests changed: tell the router that places onto it."""
        if self._handoff is not None and replica >= self._first_decode:
            self._decode_router.changed(replica - self._first_decode)
        else:
            self.router.changed(replica)

    def _decide(self) -> Event:
        return _Scheduled(self.env, DECIDE)

    def serve_only(self, placement: np.ndarray, replicas) -> None:
        """Serve only the requests that ``placement`` (the replica of every request, as the router would
        choose them: :func:`kinsim.engine.parallel.placement_of`) puts on ``replicas``; the other replicas
        stay idle. Replicas that share nothing and whose requests are known before the run are independent
        simulations: :mod:`kinsim.engine.parallel` runs them in several processes, each calling this before
        :meth:`run`."""
        self._placement = np.asarray(placement, dtype=np.int64)
        self._serving = np.isin(self._placement, np.asarray(list(replicas), dtype=np.int64))
        groups = self.requests.group[self._serving]
        self._group_left = np.bincount(groups, minlength=self.requests.groups).tolist()

    # ------------------------------------------------------------------------------ arrivals
    def _arrivals(self):
        """Open arrivals: every request at its arrival time (groups whole under a closed loop)."""
        arrival = self.workload.requests.arrival if hasattr(self.workload.requests, "arrival") else None
        if isinstance(arrival, ClosedLoopArrivals):
            self._release(min(arrival.concurrency, self.requests.groups))
            return
        arrival = self.requests.arrival_s
        order = np.argsort(arrival, kind="stable")  # by arrival, ties in generation order
        if self._serving is not None:
            order = order[self._serving[order]]
        ticks = np.round(arrival[order] * TICKS_PER_S)  # to_tick, vectorised (both round half to even)
        frontend = self._frontend_ticks
        # the requests of one tick arrive together: walk the sorted order tick by tick (no array per tick:
        # a Poisson trace has about one request a tick, and an array object each cost ~100 bytes a request)
        ends = np.append(np.flatnonzero(np.diff(ticks)) + 1, len(order))
        first = 0
        for end in ends if len(order) else ():  # one scalar at a time, not a list of them all
            end = int(end)
            tick = float(ticks[first])
            # the engine sees the requests once the frontend has handed them on; their clock starts at arrival
            yield _Scheduled(self.env, ARRIVAL, max(tick + frontend - self.env.now, 0.0))
            arrived = to_seconds(tick)  # on the engine's clock
            for i in order[first:end].tolist():
                self._route(i, arrived)
            first = end

    def _release(self, problems: int, pause: float = 0.0) -> None:
        """Release the next ``problems`` groups of a closed loop: their clients send them ``pause`` ticks from
        now, and the engine sees them ``frontend_s`` later (at the arrival priority)."""
        groups = list(range(self._released, min(self._released + problems, self.requests.groups)))
        self._released += len(groups)
        self._round_left += len(groups)
        if not groups:
            return
        sent = to_seconds(self.env.now + pause)
        event = _Scheduled(self.env, ARRIVAL, pause + self._frontend_ticks)
        event.callbacks.append(lambda _e: self._route_groups(groups, sent))

    def _route_groups(self, groups: list[int], sent_s: float) -> None:
        for group in groups:
            for i in self._by_group[self._group_start[group]:self._group_start[group + 1]].tolist():
                self._route(i, sent_s)

    def _route(self, i: int, arrival_s: float) -> None:
        """Place request ``i``, arrived at ``arrival_s``, on a replica: it becomes a live sequence."""
        request = self.requests[i]
        group = int(self.requests.group[i])
        replica = self.replicas[self.router.place(group) if self._placement is None else int(self._placement[i])]
        state = replica.scheduler.group_state(group, request.prompt_tokens, request.hash_ids, request.hash_block_tokens)
        seq = Sequence(request, i, state, arrival_s)
        if self._group_size[group] > 1:  # where its members went, to forget the group there when it ends
            self._group_replicas.setdefault(group, set()).add(replica.index)
        self._live[i] = seq
        replica.enqueue(seq)
        self._load_changed(replica.index)

    def _on_end(self, seq: Sequence) -> None:
        self._ended += 1
        self._load_changed(seq.replica)
        if self._handoff is not None:  # ended before its KV moved (impossible on the decode side): free it
            self._handoff.release(seq)
        del self._live[seq.order]
        self.records.sequences.write(seq)
        group = int(self.requests.group[seq.order])
        self._group_left[group] -= 1
        if self._group_left[group] == 0:  # nothing of the group is left to place or serve
            self.router.forget(group)
            if self._handoff is not None:
                self._decode_router.forget(group)
            for r in self._group_replicas.pop(group, (seq.replica,)):
                self.replicas[r].scheduler.forget_group(group)
        arrival = getattr(self.workload.requests, "arrival", None)
        if self._group_left[group] == 0 and isinstance(arrival, ClosedLoopArrivals):
            self._round_left -= 1
            if not arrival.rounds:
                self._release(1, self._stagger_pause(arrival, group, seq))
            elif self._round_left == 0:  # the whole round has ended: the next one starts together
                self._release(arrival.concurrency)

    def _stagger_pause(self, arrival: ClosedLoopArrivals, group: int, seq: Sequence) -> float:
        """Ticks the client of ``group`` waits before its next problem: under ``stagger``, client k of the
        first round (groups are released, and numbered, in order) waits k / concurrency of its first
        problem's time in the system, from its send to its last token; 0 otherwise."""
        if not arrival.stagger or group >= arrival.concurrency:
            return 0.0
        return to_tick((to_seconds(self.env.now) - seq.arrival_s) * group / arrival.concurrency)

    # ------------------------------------------------------------------------------ running
    def run(self) -> Records:
        """Run to the end: until every request has ended.

        A run that :mod:`kinsim.engine.lean` can take (the common case: open arrivals or a closed loop, dense
        attention, private replicas, no prefix sharing, preemption by recompute) runs there, with the same clock
        and the same decisions; where it meets a request that can never run it hands the run back, and this
        engine starts it over."""
        from kinsim.engine.lean import LeanRun, Unsupported, unsupported

        if not unsupported(self):
            try:
                return LeanRun(self).run()
            except Unsupported:
                self._restart()
        return self._run_events()

    def _restart(self) -> None:
        """Forget what an abandoned run recorded (:mod:`kinsim.engine.lean` handed it back)."""
        self.records = self._fresh_records(self.records)
        self._live, self._ended = {}, 0

    def _fresh_records(self, old: Records) -> Records:
        """Empty records of the kinds ``old`` keeps, with its replicas' GPUs, links and roles."""
        records = Records(replica_gpus=old.replica_gpus, replica_links=old.replica_links,
                          replica_roles=old.replica_roles)
        if self.records_mode != "full":
            records.segments = SegmentTotals(len(self.replicas))
        if self.records_mode == "none":
            records.sequences = RequestTotals(self.requests, getattr(self.workload.requests, "warmup", 0))
        else:
            records.sequences = RequestRecords(self.requests)
        for replica in self.replicas:  # the replicas append to the new tables
            replica._record = records.segments.append
            replica._record_op = records.ops.append
        return records

    def _run_events(self) -> Records:
        """:meth:`run` on SimPy's events, every feature of the engine."""
        env = self.env
        env.process(self._arrivals())
        events = 0
        last_report = 0
        total = self.served_total()
        while (next_tick := env.peek()) != float("inf"):
            if next_tick > MAX_TICKS:  # past it float64 rounds ticks: refuse rather than report rounded times
                raise self.past_clock()
            env.step()
            events += 1
            if self.progress is not None and events - last_report >= 2000:
                last_report = events
                self.progress(Progress(to_seconds(env.now), self._ended, total))
        return self.finish_records(events, to_seconds(env.now), self.replica_counters())

    def served_total(self) -> int:
        """Requests this simulation serves (all, or those of :meth:`serve_only`)."""
        return len(self.requests) if self._serving is None else int(self._serving.sum())

    def past_clock(self) -> SpecError:
        """The error of a run whose clock would pass :data:`~kinsim.engine.clock.MAX_TICKS`."""
        return SpecError(f"the simulated time would pass {MAX_RUN_WORDS}", file=self.workload_file,
                         hint="simulate fewer or shorter requests")

    def finish_records(self, events: int, now_s: float, counters: list[dict[str, float]]) -> Records:
        """Close the records of a run that has ended at ``now_s`` after ``events`` events, with each replica's
        memory ``counters`` (:meth:`replica_counters`): what is still live or never placed gets its reason."""
        total = self.served_total()
        self.records.events = events
        self.records.memory = self.memory_totals(counters)
        if self._handoff is not None:
            self.records.disaggregation = self._handoff.stats.summary()
        outcomes = self.records.sequences
        for seq in self._live.values():
            seq.reason = f"still {seq.state} when the simulation ran out of events (a bug in kinsim)"
            outcomes.write(seq)
        if isinstance(outcomes, RequestRecords):
            lost = (outcomes.reason < 0) & np.isnan(outcomes.finish_s)
            if self._serving is not None:
                lost &= self._serving
            for i in np.flatnonzero(lost).tolist():
                outcomes.set_reason(i, "never reached a replica (a bug in kinsim)")
            outcomes.sort_reasons()
        else:
            outcomes.never_placed(total - self._ended - len(self._live))
        if isinstance(self.records.segments, SegmentTable):
            self.records.segments = SegmentTable.in_end_order([self.records.segments])
        if self.progress is not None:
            self.progress(Progress(now_s, self._ended, total))
        return self.records

    def replica_counters(self) -> list[dict[str, float]]:
        """Each replica's counters of the KV memory hierarchy, host copies and speculative decoding (the lean
        engine's, where it ran the simulation)."""
        if self.lean_counters is not None:
            return self.lean_counters
        return [{**replica.scheduler.memory_counters(), **replica.host_stats, **replica.spec_stats}
                for replica in self.replicas]

    def memory_totals(self, counters: list[dict[str, float]]) -> dict[str, float]:
        """:attr:`Records.memory`: the replicas' ``counters`` (:meth:`replica_counters`, in replica order)
        summed, peaks the most on any replica, and the host capacity of a replica in blocks."""
        memory: dict[str, float] = {}
        for replica in counters:
            for name, value in replica.items():
                if name not in memory:
                    memory[name] = value
                elif name.endswith("_peak_blocks"):  # the most on any replica, as kv.peak_bytes
                    memory[name] = max(memory[name], value)
                else:
                    memory[name] += value
        memory["host_capacity_blocks"] = self.replicas[-1].scheduler.host_blocks if self.replicas else 0
        return memory

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
    on = hardware_words(hardware, hardware_file)
    if deployment.disaggregation is not None:
        _check_disaggregation(workload, hardware, on, workload_file)
    else:
        _check_gpus(workload, hardware, on, workload_file)
    if offloads(workload.attention) and deployment.preemption == "swap":
        raise SpecError("must be recompute with attention.offload: the KV already lives in host memory",
                        path="deployment.preemption", value=deployment.preemption, file=workload_file)
    check_speculative_deployment(workload, workload_file)
    if deployment.max_num_batched_tokens < deployment.max_num_seqs:
        raise SpecError(f"must be at least deployment.max_num_seqs ({deployment.max_num_seqs}) so that "
                        "every decoding sequence fits in a step", path="deployment.max_num_batched_tokens",
                        value=deployment.max_num_batched_tokens, file=workload_file)


def _role_hardware(workload: WorkloadSpec, role: RolePlan, workload_file: str | None) -> HardwareSpec:
    """The hardware file of a role on its own GPUs, loaded; its GPUs must hold the role's replicas."""
    from kinsim.hardware.load import load_hardware

    hw = load_hardware(role.hardware_file)
    need = role.replicas * role.tensor_parallel
    if need > hw.total_gpus:
        raise SpecError(f"the {role.name} role needs {need} GPUs ({role.replicas} replicas x {role.tensor_parallel}) "
                        f"but {hardware_words(hw, role.hardware_file)} has {hw.total_gpus}",
                        path=f"deployment.disaggregation.{role.name}.replicas", value=role.replicas, file=workload_file)
    return hw


def _prefixed_copy(copy, prefix: str):
    """A host-copy model (:func:`~kinsim.engine.host_tier.host_copy_model`) whose resource names carry
    ``prefix`` (a role on its own hardware)."""
    if not prefix:
        return copy

    def prefixed(out_blocks: int, in_blocks: int):
        seconds, usage = copy(out_blocks, in_blocks)
        return seconds, {prefix + name: share for name, share in usage.items()}

    return prefixed


def _check_gpus(workload: WorkloadSpec, hardware: HardwareSpec, on: str, workload_file: str | None) -> None:
    """Replicas of ``tensor_parallel`` GPUs, ``data_parallel`` of them, must fit the hardware's GPUs."""
    deployment = workload.deployment
    tp, dp, total = deployment.tensor_parallel, deployment.data_parallel, hardware.total_gpus
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


def _check_disaggregation(workload: WorkloadSpec, hardware: HardwareSpec, on: str, workload_file: str | None) -> None:
    """A disaggregated deployment's GPUs must exist, and it must use what its handoff supports."""
    deployment = workload.deployment
    total = hardware.total_gpus
    here = [(getattr(deployment.disaggregation, role), tp) for role, (tp, _) in
            zip(("prefill", "decode"), workload.deployment_tensor_parallels())
            if getattr(deployment.disaggregation, role).hardware is None]  # roles on this hardware
    need = sum(spec.replicas * tp for spec, tp in here)
    if need > total:
        parts = " + ".join(f"{spec.replicas} x {tp}" for spec, tp in here)
        raise SpecError(f"needs {need} GPUs (prefill and decode replicas x their tensor_parallel: {parts}) "
                        f"but {on} has {total}", path="deployment.disaggregation", file=workload_file,
                        hint="fewer replicas, or more nodes with hw.cluster.nodes")
    if offloads(workload.attention):
        raise SpecError("is not supported with attention.offload (the KV in host memory would have to move between "
                        "hosts)", path="deployment.disaggregation", file=workload_file)


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
