"""A replica: a tensor-parallel group of GPUs running the scheduler's steps as flows on its resources.

A step is one flow over the replica's resources: for each of its GPUs the compute units and HBM, and the
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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy

from kinsim.engine.clock import to_seconds, to_ticks
from kinsim.engine.fluid import Flow, FluidNetwork
from kinsim.engine.pricer import StepFigures, StepPricer
from kinsim.engine.records import OpRecord, SegmentRecord
from kinsim.engine.scheduler import Plan, Scheduler
from kinsim.engine.sequence import Sequence
from kinsim.ops.lower import StepBatch, lower_step
from kinsim.ops.op import OP_CLASSES

#: Most steps priced in one segment (bounds the memory of the per-step arrays).
MAX_SEGMENT_STEPS = 2048


@dataclass
class _InFlight:
    start: float  # clock ticks
    ends: np.ndarray  # clock ticks at the end of each step
    flow: Flow
    steps: int


class Replica:
    """One data-parallel replica: its scheduler and the SimPy process that runs its steps."""

    def __init__(self, index: int, env: simpy.Environment, network: FluidNetwork, scheduler: Scheduler,
                 pricer: StepPricer, gpus: list[str], links: list[str], segments_allowed: bool,
                 decide: Callable[[], simpy.Event], record: Callable[[SegmentRecord], None],
                 record_op: Callable[[OpRecord], None] | None = None,
                 op_window: tuple[float, float] | None = None) -> None:
        self.index, self.env, self.network, self.scheduler, self.pricer = index, env, network, scheduler, pricer
        self.gpus, self.links = gpus, links
        self.segments_allowed = segments_allowed
        self._decide, self._record, self._record_op = decide, record, record_op
        self.op_window = op_window  # (start, end) in clock ticks: record op-level slices of steps inside it
        self._wake: simpy.Event | None = None
        self._in_flight: _InFlight | None = None

    def enqueue(self, seq: Sequence) -> None:
        """Take a newly arrived request (called at the arrival's time)."""
        seq.replica = self.index
        head_was_empty = self.scheduler._peek_waiting() is None
        self.scheduler.enqueue(seq)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif head_was_empty and self._in_flight is not None:
            self._cut()

    def _cut(self) -> None:
        """End the running segment at the first step boundary at or after now."""
        run = self._in_flight
        if run.steps == 1:
            return
        j = int(np.searchsorted(run.ends, self.env.now, side="left"))
        if j + 1 < run.steps:
            run.steps = j + 1
            self.network.resize(run.flow, float(run.ends[j] - run.start))

    def process(self):
        """The replica's SimPy process."""
        env, scheduler = self.env, self.scheduler
        while True:
            if not scheduler.has_work:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                yield self._decide()
                continue
            plan = scheduler.plan(to_seconds(env.now))
            if plan.empty:
                if scheduler.resident:
                    raise RuntimeError(f"replica {self.index}: resident sequences but nothing to run")
                continue  # planning ended requests that can never run; look again
            figures, occupied, batch_of = self._price(plan)
            start = env.now
            durations = to_ticks(figures.time_s)
            ends = np.cumsum(np.concatenate(([start], durations)))[1:]
            work = float(ends[-1] - start)
            totals = figures.totals(figures.steps)
            usage = self._usage(totals, totals["time_s"])
            flow = self.network.start(f"replica{self.index}", work, usage)
            self._in_flight = _InFlight(start, ends, flow, figures.steps)
            yield flow.done
            steps = self._in_flight.steps
            self._in_flight = None
            if steps < figures.steps:  # cut short by an arrival
                totals = figures.totals(steps)
            self._record_segment(plan, totals, occupied, durations, steps, start, env.now)
            if self.op_window is not None:
                self._record_ops(batch_of, ends, start, steps)
            scheduler.apply(plan, steps, to_seconds(env.now))
            yield self._decide()

    def _price(self, plan: Plan) -> tuple[StepFigures, np.ndarray, Callable[[int], StepBatch]]:
        """The figures of the next step or segment, its KV blocks per step, and each step's batch."""
        decode = plan.decode
        shared = np.array([s.group.shared_tokens for s in decode], dtype=float)
        groups = np.array([s.group.index for s in decode], dtype=int)
        if plan.chunks:
            context = np.array([s.kv_tokens for s in decode], dtype=float)
            batch = StepBatch(decode_context=context, prefill=plan.prefill_chunks(), shared_prefix=shared,
                              group_index=groups)
            occupied = np.array([self.scheduler.used_blocks + self.scheduler._decode_need(decode)])
            return self.pricer.step(batch), occupied, lambda k: batch
        longest = MAX_SEGMENT_STEPS if self.segments_allowed else 1
        segment = self.scheduler.decode_segment(decode, longest, admission_pending=plan.admission_skipped)
        return (self.pricer.decode_segment(segment.context, shared, groups), segment.occupied_blocks,
                lambda k: StepBatch(decode_context=segment.context[k], shared_prefix=shared, group_index=groups))

    def _record_ops(self, batch_of: Callable[[int], StepBatch], ends: np.ndarray, start: float, steps: int) -> None:
        """Op records of the steps that overlap the op window (ticks)."""
        low, high = self.op_window
        begins = np.concatenate(([start], ends[:steps - 1]))
        for k in np.nonzero((ends[:steps] > low) & (begins < high))[0]:
            at = to_seconds(float(begins[k]))
            batch = batch_of(int(k))
            for op in lower_step(self.pricer.model, self.pricer.deployment, self.pricer.policy, batch).ops:
                duration = float(op.count * np.sum(self.pricer.cost_model.op_cost(op).time_s))
                self._record_op(OpRecord(self.index, at, duration, op.name, op.op_class, op.count))
                at += duration
            host = self.pricer.host_s(batch.logit_rows)
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
        return usage

    def _record_segment(self, plan: Plan, totals: dict[str, float], occupied: np.ndarray, durations: np.ndarray,
                        steps: int, start: float, end: float) -> None:
        completed = sum(1 + len(lead.followers) for lead, take in plan.chunks if take == lead.prefill_left)
        class_flops = tuple(totals[f"{c}_flops"] for c in OP_CLASSES)
        class_bytes = tuple(totals[f"{c}_bytes"] for c in OP_CLASSES)
        # the fields of SegmentRecord, positionally (SegmentTable.append: one call per segment, no object)
        self._record(
            self.index, to_seconds(start), to_seconds(end), steps,
            len(plan.decode),  # decode_seqs
            sum(take for _, take in plan.chunks),  # prefill_tokens
            len(plan.decode) * steps + completed,  # tokens_out
            int(occupied[:steps].max()),  # kv_peak_blocks
            to_seconds(float(np.dot(occupied[:steps], durations[:steps]))),  # kv_block_s
            tuple(totals[f"{c}_s"] for c in OP_CLASSES), class_flops, class_bytes,
            sum(class_flops), sum(class_bytes),  # flops, hbm_bytes
            totals["compute_s"], totals["memory_s"], totals["network_s"],
        )
