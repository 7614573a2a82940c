"""A replica: a tensor-parallel group of GPUs running the scheduler's steps on its resources.

A replica whose resources (GPUs and the links between them) no other replica shares runs each step or
segment on one timer: nothing can change its speed. Otherwise a step is one flow of the fluid network over
the replica's resources: for each of its GPUs the compute units and HBM, and the
links between its GPUs; its usage of each is the share of the step's time that resource is busy (the cost
model's terms). The GPUs of a tensor-parallel group run in lock-step, collectives included, so one flow
stands for all of them.

**Exact fast-forward.** When the next step is decode-only, nothing can change the batch until a sequence
finishes, the KV cache runs out or a request arrives. The replica then asks the scheduler how many steps
that leaves, prices them at once and runs them as one flow. An arrival that could be admitted (the
waiting queue was empty) cuts the segment at the first step boundary at or after the arrival, exactly
where the step-by-step simulation (``exact_steps``) would have seen it. Segments run only on replicas
whose resources no other replica shares, so no other flow can change their speed mid-segment; replicas
that share a link run step by step.

**Host transfers.** A step that swaps KV to or from host memory (``preemption: swap``) or loads prefix
blocks from the host tier (``kv_offload``) first copies them over the GPUs' host links (each direction a
resource of its own, :func:`~kinsim.hardware.topology.host_link_resource`), as vLLM's swap runs before the
forward pass; the step starts when the copies are done. On a private replica the copy and the step run on
one timer; otherwise the copy is a flow of the fluid network on the host links, so replicas behind one
link (``host_link.shared_by``) divide its bandwidth.

**Speculative decoding.** With ``deployment.speculative`` every step is a speculative step, priced by
:class:`~kinsim.engine.speculation.SpeculativePricer` from the ``(steps, n)`` matrix of contexts (each
sequence's cached tokens plus its advances so far); the replica counts its verify steps, drafted and
accepted tokens and draft seconds (:attr:`Replica.spec_stats`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy

from kinsim.engine.attribution import decode_coefficients, decode_shares, step_coefficients, step_shares
from kinsim.engine.clock import TICKS_PER_S, to_seconds, to_tick, to_ticks
from kinsim.engine.fluid import Flow, FluidNetwork
from kinsim.engine.pricer import ROWS, StepFigures, StepPricer
from kinsim.engine.records import OpRecord
from kinsim.engine.scheduler import Plan, Scheduler
from kinsim.engine.sequence import Sequence
from kinsim.ops.attention import decode_tokens_read, token_cap
from kinsim.ops.lower import StepBatch, lower_step
from kinsim.ops.op import OP_CLASSES

_ATTENTION_ROW = ROWS.index("attention_s")
#: Where a segment record's fields sit in :data:`ROWS`: per op class its seconds, FLOPs and bytes, then the
#: busy terms in the record's order.
_CLASS_ROWS, _FLOPS_ROWS, _BYTES_ROWS = (slice(ROWS.index(f"{OP_CLASSES[0]}_{kind}"),
                                               ROWS.index(f"{OP_CLASSES[-1]}_{kind}") + 1)
                                         for kind in ("s", "flops", "bytes"))
_BUSY_ROWS = slice(ROWS.index("compute_s"), ROWS.index("host_link_bytes") + 1)
assert ROWS[_BUSY_ROWS] == ("compute_s", "memory_s", "network_s", "host_link_s", "host_link_bytes")
assert all(ROWS[rows] == tuple(f"{c}_{kind}" for c in OP_CLASSES)
           for rows, kind in ((_CLASS_ROWS, "s"), (_FLOPS_ROWS, "flops"), (_BYTES_ROWS, "bytes")))

#: Most steps priced in one segment (bounds the memory of the per-step arrays).
MAX_SEGMENT_STEPS = 2048


@dataclass
class _InFlight:
    plan: Plan
    figures: StepFigures
    occupied: np.ndarray  # KV blocks allocated during each step
    durations: np.ndarray  # clock ticks of each step
    batch_of: Callable[[int], StepBatch]
    start: float  # clock ticks
    ends: np.ndarray  # clock ticks at the end of each step
    steps: int
    flow: Flow | None  # on a shared resource; None on a timer


class Replica:
    """One data-parallel replica: its scheduler, and the events that run its steps.

    The replica is driven by callbacks rather than a SimPy process (one generator resumption less per
    segment): a *decision* (at the :data:`DECIDE` priority) plans and prices the next step or segment and
    starts it; its *end* applies it and asks for the next decision. A replica whose resources no other
    replica shares runs its segment on one timer; one that shares a resource runs it as a flow of the
    fluid network, whose speed other flows change. ``host_links`` are the host-link resources its GPUs use
    (KV offloaded to host memory), shared with the replicas whose GPUs sit behind the same link."""

    def __init__(self, index: int, env: simpy.Environment, network: FluidNetwork, scheduler: Scheduler,
                 pricer: StepPricer, gpus: list[str], links: list[str], segments_allowed: bool,
                 decide: Callable[[], simpy.Event], record: Callable[..., None],
                 record_op: Callable[[OpRecord], None] | None = None,
                 op_window: tuple[float, float] | None = None, private: bool = False,
                 host_copy: Callable[[int, int], tuple[float, dict[str, float]]] | None = None,
                 host_links: list[str] = (),
                 start_landings: Callable[[int, list], None] | None = None) -> None:
        """``host_copy(out_blocks, in_blocks)``: seconds a step's copies to and from host memory take alone,
        and their usage of the host-link resources (None: the replica never copies). ``start_landings(index,
        landings)``: a decode replica of a disaggregated deployment has admitted sequences whose KV is to
        move to it (:meth:`kinsim.engine.disagg.KVHandoff.start`)."""
        self.index, self.env, self.network, self.scheduler, self.pricer = index, env, network, scheduler, pricer
        self._host_copy = host_copy
        self._start_landings = start_landings
        #: Host copies so far: seconds the replica waited on them.
        self.host_stats = {"stall_s": 0.0}
        self.gpus, self.links = gpus, links
        self.host_links = list(host_links)  # host-link resources (host to GPU) its GPUs fetch KV over
        self.segments_allowed = segments_allowed
        self.private = private  # no other replica shares its resources: segments run on plain timers
        self._decide, self._record, self._record_op = decide, record, record_op
        self.op_window = op_window  # (start, end) in clock ticks: record op-level slices of steps inside it
        self._idle = True  # no step running and no decision pending
        #: Start (ticks) of the step that just ended, for an engine that plans a step while the previous one
        #: runs (``Scheduler.schedules_ahead``): the next plan sees the requests that had arrived by then. None
        #: when the next decision follows idleness (it sees every request).
        self._planned_at: float | None = None
        self._in_flight: _InFlight | None = None
        self._generation = 0  # of the running segment's end timer; a cut supersedes the old timer
        #: Speculative decoding's counters (empty without it): sequence-steps verified, tokens drafted,
        #: accepted and advanced, and seconds of draft passes (per GPU of the replica).
        self.spec_stats: dict[str, float] = {}
        #: Split each segment's GPU time among its sequences (``Sequence.gpu_s``); off when no request
        #: table is kept (``--records none``).
        self.attribute = True
        self._cap = token_cap(pricer.policy)
        if pricer.speculative is not None:
            self.spec_stats = {"spec_verify_steps": 0, "spec_drafted": 0, "spec_accepted": 0, "spec_advanced": 0,
                               "spec_draft_s": 0.0}

    def enqueue(self, seq: Sequence) -> None:
        """Take a newly arrived request (called at the arrival's time)."""
        seq.replica = self.index
        seq.seen_s = to_seconds(self.env.now)
        head_was_empty = self.scheduler._peek_waiting() is None
        self.scheduler.enqueue(seq)
        if self._idle:
            self._ask_decision()
        elif head_was_empty and self._in_flight is not None:
            self._cut()

    def receive(self, seq: Sequence) -> None:
        """Take a sequence prefilled on another replica (disaggregation), at the time of its handoff: as an
        arrival, it cuts a running segment when nothing was waiting for blocks before it."""
        head_was_empty = not self.scheduler.incoming
        self.scheduler.receive(seq)
        if self._idle:
            self._ask_decision()
        elif head_was_empty and self._in_flight is not None:
            self._cut()

    def landed(self) -> None:
        """KV of sequences admitted here has arrived: they join the batch at the next step boundary."""
        if self._idle:
            self._ask_decision()
        elif self._in_flight is not None:
            self._cut()

    def wake(self) -> None:
        """KV blocks held for a transfer were freed: an idle replica looks at its queue again."""
        if self._idle and self.scheduler.has_work:
            self._ask_decision()

    def _ask_decision(self) -> None:
        self._idle = False
        self._decide().callbacks.append(self._on_decide)

    def _cut(self) -> None:
        """End the running segment at the first step boundary at or after now (an engine that plans each step
        while the previous one runs: at the boundary after it, the first plan that sees what arrived now)."""
        run = self._in_flight
        if run.steps == 1:
            return
        j = int(np.searchsorted(run.ends, self.env.now, side="left")) + (1 if self.scheduler.schedules_ahead else 0)
        if j + 1 < run.steps:
            run.steps = j + 1
            if run.flow is not None:
                self.network.resize(run.flow, float(run.ends[j] - run.start))
            else:
                self._end_timer(float(run.ends[j]) - self.env.now)

    def _end_timer(self, delay: float) -> None:
        self._generation += 1
        generation = self._generation
        timer = self.env.timeout(delay)
        timer.callbacks.append(lambda _event: self._on_end() if generation == self._generation else None)

    def _on_decide(self, _event=None) -> None:
        """Plan the next step or segment and start it (or go idle)."""
        env, scheduler = self.env, self.scheduler
        while True:
            if not scheduler.has_work:
                self._idle = True
                self._planned_at = None
                return
            aborted = scheduler.aborted
            if scheduler.schedules_ahead:
                planned = self._planned_at
                scheduler.admit_before = to_seconds(env.now if planned is None else planned)
            plan = scheduler.plan(to_seconds(env.now))
            if self._start_landings is not None:
                landings = scheduler.take_landings()
                if landings:
                    self._start_landings(self.index, landings)
            if not plan.empty:
                break
            if plan.admission_skipped and self._planned_at is not None:
                # nothing to run but what arrived during the last step: with no step to overlap, the engine
                # plans at once, and sees it
                self._planned_at = None
                continue
            if scheduler.resident:
                raise RuntimeError(f"replica {self.index}: resident sequences but nothing to run")
            if scheduler.aborted == aborted and (scheduler.held or scheduler.landing):
                # waiting for KV blocks held for transfers, or for KV in flight: a handoff's end wakes it
                self._idle = True
                self._planned_at = None
                return
            # planning ended requests that can never run; look again
        figures, occupied, batch_of = self._price(plan)
        stall, copy_usage = 0.0, {}
        if self._host_copy is not None:
            out_blocks, in_blocks = scheduler.take_transfers()
            if out_blocks or in_blocks:
                copy_s, copy_usage = self._host_copy(out_blocks, in_blocks)
                stall = float(to_ticks(np.array([copy_s]))[0])
        if self.private or not stall:
            self._start(plan, figures, occupied, batch_of, stall)
        else:  # the copy shares the host links with other replicas: a flow of its own, then the step
            copy = self.network.start(f"replica{self.index}.host_copy", stall, copy_usage)
            started = env.now
            copy.done.callbacks.append(
                lambda _event: self._start(plan, figures, occupied, batch_of, 0.0, waited=env.now - started))

    def _start(self, plan: Plan, figures: StepFigures, occupied: np.ndarray, batch_of, stall: float,
               waited: float = 0.0) -> None:
        """Start the step or segment now, after ``stall`` ticks of host copies on its own timer (a
        private replica) or after a copy flow that took ``waited`` ticks."""
        env = self.env
        self.host_stats["stall_s"] += to_seconds(stall + waited)
        start = env.now + stall
        if figures.steps == 1:  # one step (every mixed step): to_ticks in Python floats, the same rounding
            work = max(to_tick(float(figures.matrix[0, 0])), 1.0)
            durations, ends = np.array([work]), np.array([start + work])
        else:
            durations = to_ticks(figures.time_s)
            ends = np.cumsum(durations)  # whole ticks below 2**53: exact sums, in any order
            work = float(ends[-1])
            ends += start
        run = _InFlight(plan, figures, occupied, durations, batch_of, start, ends, figures.steps, None)
        self._in_flight = run
        if self.private:
            self._end_timer(stall + work)
        else:
            totals = figures.totals(figures.steps)
            run.flow = self.network.start(f"replica{self.index}", work, self._usage(totals, totals["time_s"]))
            run.flow.done.callbacks.append(lambda _event: self._on_end())

    def _on_end(self) -> None:
        """The running step or segment has ended: record it, apply it, ask for the next decision."""
        run, env = self._in_flight, self.env
        self._in_flight = None
        steps = run.steps
        self._planned_at = run.start if steps == 1 else float(run.ends[steps - 2])
        matrix = run.figures.matrix
        # each row of ROWS summed over the steps (one step: its column, the same numbers)
        totals = matrix[:, 0].tolist() if steps == 1 else matrix[:, :steps].sum(axis=1).tolist()
        self._record_segment(run.plan, totals, run.occupied, run.durations, steps, run.start, env.now)
        if self.attribute:
            self._attribute(run, steps, to_seconds(env.now) - to_seconds(run.start))
        if self.spec_stats:
            self._count_speculation(run.plan, run.figures, steps)
        if self.op_window is not None:
            self._record_ops(run.batch_of, run.ends, run.start, steps)
        self.scheduler.apply(run.plan, steps, to_seconds(env.now))
        if env.peek() > env.now:  # nothing else happens at this instant: decide now (one SimPy event less)
            self._idle = False
            self._on_decide()
        else:  # after the other events of this instant (arrivals, other replicas' ends)
            self._ask_decision()

    def _attribute(self, run: _InFlight, steps: int, busy_s: float) -> None:
        """Add each sequence's share of the segment's ``busy_s`` seconds on the replica's GPUs to its
        ``gpu_s`` (:mod:`kinsim.engine.attribution`): the decode batch's in its float column, a prefill
        chunk's to the sequences waiting on it."""
        plan, figures = run.plan, run.figures
        kind, context, *rest = plan.owed
        matrix = figures.matrix
        if steps == 1:  # a single step (every mixed step): scalars where they do
            clock_s = float(run.durations[0]) / TICKS_PER_S
            step_s = None
        else:
            step_s = run.durations[:steps] / TICKS_PER_S
            clock_s = float(step_s.sum())
        if clock_s <= 0.0:
            return
        gpu_s = len(self.gpus) * busy_s / clock_s  # GPU-seconds per second of the steps' durations
        # dense attention, one token a step: every decoding sequence owes an affine function of its cached
        # tokens, which the batch owes lazily (DecodeBatch.credit)
        lazy = self._cap is None and kind != "speculative"
        if kind == "step" or (kind == "speculative" and rest[0]):  # one step, prefill chunks in it
            chunks, tokens = rest
            ctx = context if kind == "step" else context[0]
            chunk_attended, chunk_tokens = [c.cached + c.tokens for c in chunks], [c.tokens for c in chunks]
            if lazy:
                n = len(ctx)
                weight, constant, chunk_shares = step_coefficients(
                    float(matrix[0, 0]), float(matrix[_ATTENTION_ROW, 0]), n, float(int(ctx.sum()) + n), tokens,
                    chunk_attended, chunk_tokens)
            else:
                shares, chunk_shares = step_shares(
                    float(matrix[0, 0]), float(matrix[_ATTENTION_ROW, 0]), decode_tokens_read(self.pricer.policy, ctx),
                    tokens, chunk_attended, chunk_tokens)
            for (lead, _take), share in zip(plan.chunks, chunk_shares):
                party = (lead, *lead.followers)
                for seq in party:
                    seq.gpu_s += share * clock_s * gpu_s / len(party)
            scale = clock_s * gpu_s
        else:
            if step_s is None:
                step_s = run.durations[:1] / TICKS_PER_S
            time_s, attention_s = matrix[0, :steps], matrix[_ATTENTION_ROW, :steps]
            if kind == "decode":
                if lazy:
                    weight, constant = decode_coefficients(time_s, attention_s, step_s, len(context),
                                                           figures.attended[:steps])
                else:
                    shares = decode_shares(time_s, attention_s, step_s, context, self._cap, figures.attended[:steps])
            else:  # speculative decode steps: context is the (steps, n) matrix
                shares = self._speculative_shares(time_s, attention_s, step_s, context[:steps])
            scale = gpu_s
        if lazy:
            if len(context):
                self.scheduler.batch.credit(weight * scale, constant * scale)
        elif len(shares):
            self.scheduler.batch.gpu_s[:] += shares * scale

    def _speculative_shares(self, time_s: np.ndarray, attention_s: np.ndarray, step_s: np.ndarray,
                            context: np.ndarray) -> np.ndarray:
        """:func:`~kinsim.engine.attribution.decode_shares` of speculative steps, from the ``(steps, n)``
        matrix of contexts (each sequence's advances differ, so no closed form)."""
        n = context.shape[1]
        if n == 0:
            return np.zeros(0)
        scale = np.divide(step_s, time_s, out=np.zeros(len(time_s)), where=time_s > 0)
        attended = decode_tokens_read(self.pricer.policy, context)
        total = attended.sum(axis=1)
        w = np.divide(attention_s * scale, total, out=np.zeros(len(time_s)), where=total > 0)
        return float(np.dot(time_s - attention_s, scale)) / n + (w[:, None] * attended).sum(axis=0)

    def _count_speculation(self, plan: Plan, figures: StepFigures, steps: int) -> None:
        """Add the first ``steps`` speculative steps of ``plan`` to :attr:`spec_stats`."""
        stats = self.spec_stats
        verified = plan.decode_seqs * steps  # sequence-steps
        advanced = int(plan.advanced[steps - 1]) if verified else 0
        stats["spec_verify_steps"] += verified
        stats["spec_drafted"] += verified * self.pricer.speculative.k
        stats["spec_advanced"] += advanced
        stats["spec_accepted"] += advanced - verified  # one token a sequence-step is the target's own
        stats["spec_draft_s"] += float(figures.draft_s[:steps].sum())

    def _price(self, plan: Plan) -> tuple[StepFigures, np.ndarray, Callable[[int], StepBatch]]:
        """The figures of the next step or segment, its KV blocks per step, and each step's batch."""
        if self.pricer.speculative is not None:
            return self._price_speculative(plan)
        scheduler = self.scheduler
        batch = scheduler.batch
        context = batch.kv.copy()
        if self.pricer.deployment.prefix_shared_read:  # the only reader of the shared prompts and groups
            shared, groups = batch.shared.astype(float), batch.group.copy()
        else:
            shared = groups = None
        if plan.chunks:
            chunks = plan.prefill_chunks()
            step = StepBatch(decode_context=context.astype(float), prefill=chunks,
                             shared_prefix=shared, group_index=groups)
            occupied = np.array([scheduler.used_blocks + plan.decode_blocks])
            if self.attribute:
                plan.owed = ("step", context, chunks, 1.0)
            return self.pricer.step(step), occupied, lambda k: step
        longest = MAX_SEGMENT_STEPS if self.segments_allowed else 1
        segment = scheduler.decode_segment(longest, admission_pending=plan.admission_skipped, need=plan.decode_blocks)
        figures = self.pricer.decode_run(context, segment.steps, shared, groups)
        if self.attribute:
            plan.owed = ("decode", context)
        return (figures, segment.occupied_blocks,
                lambda k: StepBatch(decode_context=(context + k).astype(float), shared_prefix=shared,
                                    group_index=groups))

    def _price_speculative(self, plan: Plan) -> tuple[StepFigures, np.ndarray, Callable[[int], StepBatch]]:
        """:meth:`_price` of speculative steps; sets ``plan.advanced`` (tokens the batch has advanced after
        each step)."""
        scheduler = self.scheduler
        batch = scheduler.batch
        kv, shared, groups = batch.kv.copy(), batch.shared.astype(float), batch.group.copy()
        if plan.chunks:
            steps = 1
            occupied = np.array([scheduler.used_blocks + plan.decode_blocks])
        else:
            longest = MAX_SEGMENT_STEPS if self.segments_allowed else 1
            segment = scheduler.decode_segment(longest, admission_pending=plan.admission_skipped)
            steps, occupied = segment.steps, segment.occupied_blocks
        advanced = scheduler.advances(steps)
        context = kv[None, :] + advanced[:-1]
        chunks = plan.prefill_chunks()
        plan.advanced = advanced[1:].sum(axis=1)
        figures = self.pricer.speculative.price(context, chunks, shared, groups)
        if self.attribute:
            plan.owed = ("speculative", context, chunks, self.pricer.speculative.k + 1.0)
        return figures, occupied, lambda k: StepBatch(decode_context=context[k].astype(float), prefill=chunks,
                                                      shared_prefix=shared, group_index=groups)

    def _record_ops(self, batch_of: Callable[[int], StepBatch], ends: np.ndarray, start: float, steps: int) -> None:
        """Op records of the steps that overlap the op window (ticks)."""
        low, high = self.op_window
        begins = np.concatenate(([start], ends[:steps - 1]))
        spec = self.pricer.speculative
        for k in np.nonzero((ends[:steps] > low) & (begins < high))[0]:
            at = to_seconds(float(begins[k]))
            batch = batch_of(int(k))
            if spec is not None:
                ops = spec.step_ops(batch.decode_context, batch.prefill, batch.shared_prefix, batch.group_index)
            else:
                ops = lower_step(self.pricer.model, self.pricer.deployment, self.pricer.policy, batch).ops
            for op in ops:
                duration = float(op.count * np.sum(self.pricer.cost_model.op_cost(op).time_s))
                self._record_op(OpRecord(self.index, at, duration, op.name, op.op_class, op.count))
                at += duration
            fetch = self.pricer.fetch_s(batch.decode_context)
            if fetch > 0.0:  # the KV fetched over the host link before each layer's attention, all layers
                self._record_op(OpRecord(self.index, at, fetch, "kv_fetch", "attention", self.pricer.model.layers))
                at += fetch
            host = self.pricer.host_s(batch.logit_rows) if spec is None else spec.host_s(batch.logit_rows)
            if host > 0.0:  # the serving engine's host time, after the kernels (kinsim.cost.engine_overhead)
                self._record_op(OpRecord(self.index, at, host, "engine_host", "other", 1))

    def _usage(self, totals: dict[str, float], work: float) -> dict[str, float]:
        if work <= 0.0:
            return {}
        compute = min(totals["compute_s"] / work, 1.0)
        memory = min(totals["memory_s"] / work, 1.0)
        network = min(totals["network_s"] / work, 1.0)
        usage = {}
        for gpu in self.gpus:
            usage[f"{gpu}.compute"] = compute
            usage[f"{gpu}.hbm"] = memory
        for link in self.links:
            usage[link] = network
        if self.host_links:  # host_link_s is already the busy time of one link, all the replica's GPUs behind it
            host = min(totals["host_link_s"] / work, 1.0)
            for link in self.host_links:
                usage[link] = host
        return usage

    def _record_segment(self, plan: Plan, totals: list[float], occupied: np.ndarray, durations: np.ndarray,
                        steps: int, start: float, end: float) -> None:
        """Record the segment; ``totals``: each row of :data:`~kinsim.engine.pricer.ROWS` summed over its steps."""
        chunks = plan.chunks
        completed = sum(1 + len(lead.followers) for lead, take in chunks if take == lead.prefill_left) if chunks else 0
        class_flops = totals[_FLOPS_ROWS]
        class_bytes = totals[_BYTES_ROWS]
        if steps == 1:  # one step: its figures, without array calls (the same numbers)
            peak = int(occupied[0])
            block_ticks = float(occupied[0]) * float(durations[0])
        else:
            peak = int(occupied[:steps].max())
            block_ticks = float(np.dot(occupied[:steps], durations[:steps]))
        # the fields of SegmentRecord, positionally (SegmentTable.append: one call per segment, no object)
        self._record(
            self.index, to_seconds(start), to_seconds(end), steps,
            plan.decode_seqs,  # decode_seqs
            sum(take for _, take in chunks) if chunks else 0,  # prefill_tokens
            (plan.decode_seqs * steps if plan.advanced is None else int(plan.advanced[steps - 1]))
            + completed,  # tokens_out
            peak,  # kv_peak_blocks
            to_seconds(block_ticks),  # kv_block_s
            totals[_CLASS_ROWS], class_flops, class_bytes,
            sum(class_flops), sum(class_bytes),  # flops, hbm_bytes
            *totals[_BUSY_ROWS],  # compute_s, memory_s, network_s, host_link_s, host_link_bytes
        )
