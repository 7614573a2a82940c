"""The lean engine: the common case of :class:`~kinsim.engine.simulation.Simulation` in plain Python.

Most runs use a few of the engine's mechanisms: open arrivals or a closed loop of clients routed to
data-parallel replicas that share nothing, single requests or Best-of-N groups sharing their prompt's blocks,
continuous batching with chunked or whole prefills, greedy or no-evict admission, planned at a step boundary or
a step ahead, dense attention that the calibrated pricing prices in its direct form, and preemption by
recompute when the KV cache runs out. The general engine
(:mod:`kinsim.engine.replica`, :mod:`kinsim.engine.scheduler`) serves every feature through SimPy events,
NumPy arrays and objects that describe a step, about 100 us of Python a segment whatever it does. This module
runs the common case on one heap of events and Python numbers, and decides, prices and records it as the
general engine does:

* **The clock.** A decode step is priced alone by the direct pricing's own operations on Python floats
  (:meth:`~kinsim.engine.pricer._DirectDecodeAttention.step_terms`, the same bits as its arrays) and rounded
  to a whole tick as the general engine rounds it; a mixed step is the column of
  :meth:`~kinsim.engine.pricer.StepPricer.dense_column`, its parts added in the same order. Within one split of
  the KV and one side of the compute/memory ridge a step's time is affine in its index, so a segment's ticks are
  read off the line through its first and last steps' exact values, and the exact operations decide any step
  near a half tick (:meth:`_Replica._start_run`). Every step ends on the general engine's tick.
* **The decisions.** Planning (decodes first, prefills in progress, then first-come-first-served admission
  under the token budget, the seats and the free blocks less the watermark, or no-evict's promised blocks; a
  step ahead, only what had arrived when the last step started; the newest resident preempted by recompute
  where the decodes' blocks do not fit), a segment's length (the first finish, the
  blocks left, 2,048 steps, one step where a skipped admission would act next), the cut at an arrival, a
  closed loop's releases and the order of events at one instant (by time, priority and scheduling order as
  SimPy keeps them: ends, then arrivals, then decisions, superseded timers included, which decide whether a
  replica plans at once or after the instant's arrivals) are the general engine's, rule for rule.
* **The records.** Requests, segments (the same segments) and each sequence's GPU time, from the same
  figures summed in another order: equal to the general engine's to about 1e-15 relative, not to the bit.
  ``engine.events`` counts this engine's events (SimPy's less its process's start and end).

Where the install can, the module is compiled by Cython: its decode runs' per-step loops on C numbers, its
replica an extension type of C fields (:mod:`kinsim.engine.native`; the same bits, ``tests/test_native.py``).

``tests/test_lean.py`` runs both engines on chat workloads (one to six replicas, chunked and whole prefills,
small budgets, few seats, a small cache, preemptions, a step ahead, no-evict, closed loops, Best-of-N
groups, and Hypothesis-generated runs over all of them) and compares every request's timestamps exactly and the rest to
1e-12; ``--exact-steps`` runs the general engine step by step, so the fast = exact property compares the two
engines.

What it does not take (:func:`unsupported` names the first that applies, and the general engine runs):
exact steps, disaggregation, op-level slices, replicas that share links, speculative decoding, offloaded or
sparse attention, sliding-window layers,
data-parallel attention, pricing without the direct decode form (a cost model without a calibration profile),
prefix caching or shared reads, and swap. A run that ends a request as impossible (a prompt beyond the cache
or a whole-prompt budget) raises :class:`Unsupported` where it gets there, and the general engine starts the
run over (:meth:`Simulation.run`).
"""

from __future__ import annotations

import bisect
import gc
import heapq
import math
import warnings
from itertools import accumulate
from operator import attrgetter
from pathlib import Path

import numpy as np

try:  # C types for the hot loops' numbers where the module is compiled (kinsim/engine/native.py)
    import cython
except ImportError:  # (as Python without Cython installed: the declarations change nothing)
    from kinsim.engine import cython_shim as cython

from kinsim.engine.attribution import step_coefficients
from kinsim.engine.clock import TICKS_PER_S, to_seconds
from kinsim.engine.native import stale_build
from kinsim.engine.pricer import _ATTENTION_S
from kinsim.engine.replica import MAX_SEGMENT_STEPS
from kinsim.engine.request_records import RequestRecords
from kinsim.engine.row_buffer import RowBuffer
from kinsim.engine.scheduler import _key
from kinsim.engine.sequence import DECODE, FINISHED, PREFILL, WAITING, GroupState, Sequence
from kinsim.ops.attention import PrefillChunk
from kinsim.ops.lower import StepBatch
from kinsim.workload.spec import ClosedLoopArrivals, DenseAttention

#: Whether this module runs compiled (kinsim/engine/native.py): the same bits either way, about 30% faster.
COMPILED: bool = cython.compiled
if COMPILED:  # (an in-place build runs itself, not the source edited since: say so)
    _STALE = stale_build(__file__, Path(__file__).with_name("lean.py"))
    if _STALE:
        warnings.warn(_STALE, RuntimeWarning, stacklevel=2)
#: Event kinds, and their priorities at one instant (SimPy's: a timer 1; the general engine's arrivals 2 and
#: decisions 3, :mod:`kinsim.engine.simulation`).
_END, _ARRIVAL, _DECIDE = 1, 2, 3
#: The replica field of a closed loop's release (an arrival event of the heap; open arrivals are kept beside it,
#: :attr:`LeanRun.arrival_at`).
_RELEASE = -2
#: Planned decode steps from which a segment's clock is computed as arrays rather than step by step (this one
#: and :data:`_ARRAY_END_STEPS` chosen by ``benchmarks/bench_instructions.py``: 48 and 64 against 32 and 128,
#: Best-of-32 1.771 G -> 1.704 G instructions, chat 1.660 G -> 1.653 G; 32 / 64 and 48 / 88 did no better;
#: with the cheaper array sums of :meth:`_Replica._run_sums`, 48 / 48: Best-of-32 1.566 -> 1.559 G, chat
#: 1.648 -> 1.646 G, and 32 / 48 the same).
_ARRAY_STEPS = 48
#: Step indices as floats (read-only), cut to a segment's length.
_STEP_INDEX = np.arange(MAX_SEGMENT_STEPS, dtype=float)
_STEP_INDEX.flags.writeable = False
#: The same as whole numbers.
_STEP_COUNT = np.arange(MAX_SEGMENT_STEPS)
_STEP_COUNT.flags.writeable = False
_PERIODS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _periods(block: int) -> tuple[np.ndarray, np.ndarray]:
    """Each step index's whole periods of ``block`` steps (``k // block``, floats) and its place in the period
    (``k % block``), read-only, kept per block size."""
    periods = _PERIODS.get(block)
    if periods is None:
        periods = _PERIODS[block] = ((_STEP_COUNT // block).astype(float), _STEP_COUNT % block)
        for array in periods:
            array.flags.writeable = False
    return periods


#: Executed decode steps from which a run's end (its blocks, block-ticks and GPU-time shares) is summed as arrays.
_ARRAY_END_STEPS = 48
#: Steps after which the lazily owed GPU time of the decode batch is settled (as
#: :data:`kinsim.engine.decode_batch.REBASE_STEPS`).
_REBASE_STEPS = 4096
#: A sequence's first-come-first-served key, :attr:`Sequence.key` (arrival, then order) without the property.
_FCFS_KEY = attrgetter("arrival_s", "order")
#: Finished requests kept before they are written to the request table at once.
_ENDED_ROWS = 8192


class Unsupported(Exception):
    """The run needs what the lean engine does not do (ending a request that can never run): the general
    engine runs it."""


def unsupported(sim) -> str:
    """Why :class:`LeanRun` cannot run ``sim`` (a :class:`~kinsim.engine.simulation.Simulation` not yet
    run), or ``""``."""
    workload, deployment = sim.workload, sim.workload.deployment
    if sim.exact_steps:
        return "exact steps"
    if len(sim.roles) > 1:
        return "disaggregated serving"
    if sim._op_window is not None:
        return "op-level slices"
    if not all(replica.private for replica in sim.replicas):
        return "replicas that share links"
    pricer = sim._pricer
    if pricer.speculative is not None or pricer.offload or pricer.window is not None:
        return "speculative decoding, offloaded KV or sliding-window layers"
    if not isinstance(workload.attention, DenseAttention) or pricer.direct_of(1) is None:
        return "decode attention without its direct pricing"
    if (deployment.prefix_caching or deployment.prefix_shared_read or deployment.preemption != "recompute"
            or deployment.kv_offload != "none" or deployment.attention_data_parallel != 1):
        return "a scheduling feature of the general engine"
    if sim._layouts[0].window_blocks is not None or not sim._layouts[0].shares_prompt:
        return "a KV layout of the general engine"
    return ""


def _exact(direct, first: float, n: int, k: int) -> tuple[float, float, float, tuple]:
    """Decode step ``k``'s attention seconds (all layers), compute and memory seconds (one layer) and the split's
    terms (:meth:`~kinsim.engine.pricer._DirectDecodeAttention._structure`), for ``n`` sequences attending
    ``first`` tokens at step 0: :meth:`~kinsim.engine.pricer._DirectDecodeAttention.step_terms`, the same bits
    as the general engine's."""
    attended = first + n * k
    structure = direct._structure(attended)
    time, _, _, compute, memory = direct.step_terms(attended, attended, structure)
    return time, compute, memory, structure


def _exact_s(direct, first: float, n: int, k: int) -> float:
    """:func:`_exact`'s attention seconds alone."""
    attended = first + n * k
    return direct.step_terms(attended, attended)[0]


def _blocks_last(residues: list[int], block: int, s: int, n: int, room: int, limit: int) -> int:
    """The first step ``k`` in ``1 .. limit - 1`` by whose end a batch of ``n`` decoding members, ``residues[r]``
    of them holding private tokens (less the step counter) of ``r`` modulo the ``block``, at step counter ``s``,
    have taken more than ``room`` blocks beyond the first step's (:meth:`Scheduler._blocks_added`'s cut), else
    ``limit``. Step ``j`` takes a block for each member at a multiple of the block then,
    ``residues[-(s + j) % block]``; over any ``block`` consecutive steps that is every member once, so by step
    ``k = q x block + r`` they have taken ``q x n + partial[r]`` blocks, ``partial[r]`` those of steps 1 to
    ``r``. For each ``r`` the fewest whole periods ``q(r)`` past the room follow from a division (at least 1 for
    ``r = 0``: step 0 is not a step of the run); ``partial`` grows with ``r``, so ``q(r)`` shrinks, and a smaller
    ``q`` always means an earlier step: the answer is the first ``r`` at the last ``r``'s ``q``, found by
    bisection. Whole numbers throughout (``tests/test_lean.py`` checks it against the count step by step)."""
    partial = [0, *accumulate(_period(residues, block, s)[:block - 1])]  # steps 1 .. r, r < block
    last = partial[-1]
    if last > room:  # q = 0 from the first r past the room (r = 0 takes 1 period at least)
        first = bisect.bisect_right(partial, room, 1)
    else:
        q = (room - last) // n + 1
        first = q * block + bisect.bisect_right(partial, room - q * n)
    return first if first < limit else limit


def _period(residues: list[int], block: int, s: int) -> list[int]:
    """The members that take a block at each of the next ``block`` decode steps at step counter ``s``, in order:
    step ``k`` (from 1) takes those at residue ``-(s + k)`` modulo the block, ``residues[-(s + k) % block]``,
    and the pattern repeats every ``block`` steps."""
    j = -(s + 1) % block
    return residues[j::-1] + residues[:j:-1]


class _TableRequest:
    """Request ``index`` of a table without scores, hash ids or acceptance rates, as a
    :class:`~kinsim.workload.request.Request` reads (the engine reads its lengths; its names are made when
    asked for): a frozen dataclass with its two names made up front cost about 1.5 us a request, this 0.4."""

    __slots__ = ("table", "index", "arrival_s", "prompt_tokens", "output_tokens")
    score = hash_ids = acceptance = None
    hash_block_tokens = 0

    def __init__(self, table, index: int, arrival_s: float, prompt_tokens: int, output_tokens: int) -> None:
        self.table, self.index = table, index
        self.arrival_s, self.prompt_tokens, self.output_tokens = arrival_s, prompt_tokens, output_tokens

    @property
    def request_id(self) -> str:
        return self.table.request_id(self.index)

    @property
    def group_id(self) -> str:
        return self.table.group_id(int(self.table.group[self.index]))


@cython.final
@cython.cclass
class _Replica:
    """One replica's scheduler and steps (the subset of :class:`~kinsim.engine.scheduler.Scheduler` and
    :class:`~kinsim.engine.replica.Replica` that :func:`unsupported` leaves).

    **The decode batch** is kept relative to its step counter ``s`` (steps applied to the batch), as
    :class:`~kinsim.engine.decode_batch.DecodeBatch` keeps the GPU time owed: a member that joined at ``s0``
    with ``kv`` cached tokens holds ``kv - s0 + s`` now, so applying steps moves ``s`` alone. A member's
    entry: the sequence, its cached tokens and private tokens less ``s`` at joining, the ``s`` at which it
    generates its last token, its group's shared prompt tokens, and the running sums and GPU time it was
    settled at.
    A histogram of the private tokens less ``s`` modulo the block size counts the members that take a block
    at each step (those at a multiple of the block), a heap orders their finishes, and the batch's cached
    tokens are one sum. The general engine keeps the batch in FCFS order; nothing here depends on it
    (pricing reads sums, a finished sequence's record is its own)."""

    # (compiled, an extension type whose fields are C numbers and typed references: kinsim/engine/native.py)
    index = cython.declare(cython.Py_ssize_t, visibility="public")
    gpus = cython.declare(cython.Py_ssize_t, visibility="public")
    block = cython.declare(cython.Py_ssize_t, visibility="public")
    total_blocks = cython.declare(cython.Py_ssize_t, visibility="public")
    watermark = cython.declare(cython.Py_ssize_t, visibility="public")
    max_seqs = cython.declare(cython.Py_ssize_t, visibility="public")
    max_tokens = cython.declare(cython.Py_ssize_t, visibility="public")
    used_blocks = cython.declare(cython.Py_ssize_t, visibility="public")
    waiting_count = cython.declare(cython.Py_ssize_t, visibility="public")
    resident = cython.declare(cython.Py_ssize_t, visibility="public")
    kv0_sum = cython.declare(cython.Py_ssize_t, visibility="public")
    s = cython.declare(cython.Py_ssize_t, visibility="public")
    groups = cython.declare(cython.Py_ssize_t, visibility="public")
    preempted = cython.declare(cython.Py_ssize_t, visibility="public")
    generation = cython.declare(cython.Py_ssize_t, visibility="public")
    chunked = cython.declare(cython.bint, visibility="public")
    ahead = cython.declare(cython.bint, visibility="public")
    no_evict = cython.declare(cython.bint, visibility="public")
    idle = cython.declare(cython.bint, visibility="public")
    weight = cython.declare(cython.double, visibility="public")
    constant = cython.declare(cython.double, visibility="public")
    run = cython.declare(object, visibility="public")
    layout = cython.declare(object, visibility="public")
    planned_at = cython.declare(object, visibility="public")
    cap = cython.declare(object, visibility="public")
    pricer = cython.declare(object, visibility="public")
    waiting = cython.declare(list, visibility="public")
    queued = cython.declare(set, visibility="public")
    leads = cython.declare(list, visibility="public")
    group_states = cython.declare(dict, visibility="public")
    members = cython.declare(dict, visibility="public")
    finishes = cython.declare(list, visibility="public")
    newest = cython.declare(object, visibility="public")
    residues = cython.declare(list, visibility="public")
    prefix_stats = cython.declare(dict, visibility="public")
    static = cython.declare(dict, visibility="public")
    batch_terms = cython.declare(dict, visibility="public")
    flight = cython.declare(object, visibility="public")

    def __init__(self, run: LeanRun, index: int, gpus: int) -> None:
        sim = run.sim
        self.run, self.index, self.gpus = run, index, gpus
        self.layout = sim._layouts[0]
        self.block = self.layout.block_size
        self.total_blocks = self.layout.total_blocks
        self.watermark = self.layout.watermark_blocks
        deployment = sim.workload.deployment
        self.max_seqs, self.max_tokens = deployment.max_num_seqs, deployment.max_num_batched_tokens
        self.chunked = deployment.chunked_prefill
        #: The engine plans each step while the previous one runs (``deployment.schedule_ahead``): the start of
        #: the step that just ended (ticks), or None after idleness; no-evict admission and the generation cap it
        #: reserves (the workload's ``max_output_tokens``, else each request's output).
        self.ahead = bool(deployment.schedule_ahead)
        self.planned_at: float | None = None
        self.no_evict = deployment.admission == "no_evict"
        self.cap = getattr(sim.workload.requests, "max_output_tokens", None)
        self.pricer = sim._pricer
        self.used_blocks = 0
        #: The waiting queue, FCFS: a heap of (arrival, order, sequence), entries of sequences admitted since
        #: dropped when they reach the top (as the scheduler's), and which sequences have an entry.
        self.waiting: list[tuple[float, int, Sequence]] = []
        self.queued: set[int] = set()
        self.waiting_count = 0
        self.leads: list[Sequence] = []  # leading a prefill, FCFS (their followers prefill with them)
        self.group_states: dict[int, GroupState] = {}  # the groups with members here
        self.resident = 0  # prefilling and decoding sequences
        self.members: dict[int, list] = {}  # by request order: [seq, kv0, private0, last, shared tokens,
        #                                       weight at, constant at, settled GPU-seconds]
        self.finishes: list[tuple[int, int]] = []  # heap of (last step, request order)
        self.newest: list[tuple] | None = None  # heap of members by FCFS order, last first (_newest_member)
        self.residues = [0] * self.block  # members by private0 modulo the block
        self.kv0_sum = 0
        self.s = 0  # steps applied to the batch since the last rebase
        self.weight = self.constant = 0.0  # DecodeBatch.credit's running sums
        self.prefix_stats = {"prefills": 0, "queried_tokens": 0, "hit_tokens": 0, "queried_blocks": 0,
                             "hit_blocks": 0, "host_hit_blocks": 0}
        self.groups = 0
        self.preempted = 0  # preemptions by recompute
        self.static: dict[int, list[float]] = {}  # decode_static(n) as a list, per n
        self.batch_terms: dict[int, tuple] = {}  # _batch_terms(n), per n
        self.idle = True
        self.generation = 0
        # the step or segment in flight: [prefill chunks (None for decode steps), the decodes' new blocks, start
        # tick, each planned step's end tick (a list; an array for a long plan), steps to run, the step's figures
        # (a column) or the decode steps' attention seconds, the decoding sequences, and where the decode steps were
        # priced one by one, each one's FLOPs, bytes, compute and memory seconds (else None)]
        self.flight = None

    # ------------------------------------------------------------------------------ queue
    @property
    def outstanding(self) -> int:
        return self.resident + self.waiting_count

    @cython.ccall
    def group_state(self, group: int, prompt_tokens: int) -> GroupState:
        """The state of ``group`` here, made on its first request (:meth:`Scheduler.group_state`)."""
        state = self.group_states.get(group)
        if state is None:
            self.groups += 1
            state = self.group_states[group] = GroupState(self.groups, prompt_tokens,
                                                          self.layout.shared_tokens(prompt_tokens))
        return state

    @cython.ccall
    def head(self) -> Sequence | None:
        """The waiting queue's head (entries of sequences admitted since are dropped)."""
        waiting = self.waiting
        while waiting and waiting[0][2].state != WAITING:
            self.queued.discard(heapq.heappop(waiting)[1])
        return waiting[0][2] if waiting else None

    @cython.ccall
    def _wait(self, seq: Sequence) -> None:
        """``seq`` waits (:meth:`Scheduler.enqueue`): an entry unless it still has one (same place)."""
        seq.state = WAITING
        if seq.order not in self.queued:
            self.queued.add(seq.order)
            heapq.heappush(self.waiting, (seq.arrival_s, seq.order, seq))
        seq.group.waiting.append(seq)
        self.waiting_count += 1

    @cython.ccall
    def _leave_waiting(self, seq: Sequence) -> None:
        self.waiting_count -= 1
        seq.group.waiting = [other for other in seq.group.waiting if other is not seq]

    @cython.ccall
    def enqueue(self, seq: Sequence, now: float) -> None:
        seq.replica = self.index
        seq.seen_s = now / TICKS_PER_S
        head_was_empty = self.head() is None
        self._wait(seq)
        if self.idle:
            self.ask_decision(now)
        elif head_was_empty and self.flight is not None:
            self.cut(now)

    @cython.ccall
    def ask_decision(self, now: float) -> None:
        self.idle = False
        self.run.push(now, _DECIDE, self.index, 0)

    @cython.ccall
    def cut(self, now: float) -> None:
        """End the running segment at the first step boundary at or after ``now``."""
        flight = self.flight
        steps = flight[4]
        if steps == 1:
            return
        ends = flight[3]  # (a list, or an array for a long plan)
        j = bisect.bisect_left(ends, now, 0, steps) + self.ahead  # a step ahead: at the boundary after it
        if j + 1 < steps:
            flight[4] = j + 1
            self.generation += 1
            self.run.push(float(ends[j]), _END, self.index, self.generation)

    # ------------------------------------------------------------------------------ planning
    @cython.ccall
    def on_decide(self, now: float) -> None:
        """Plan the next step or segment and start it (or go idle): :meth:`Replica._on_decide` and
        :meth:`Scheduler.plan`. An engine that plans a step ahead admits only the requests it had seen when the
        step that just ended started (``planned_at``); with nothing else to run, it plans again at once."""
        while True:
            if not self.resident and not self.waiting_count:
                self.idle = True
                self.planned_at = None
                return
            members = self.members
            need = self.residues[-self.s % self.block] if members else 0  # members at a multiple of the block
            preempted = False
            while need > self.total_blocks - self.used_blocks:  # decodes first: the newest resident makes room
                if self.resident == 1:
                    raise Unsupported("a request that can never run")
                self._preempt()
                preempted = True
                need = self.residues[-self.s % self.block] if members else 0
            budget = self.max_tokens - len(members)
            chunks = []
            for lead in self.leads:
                left = lead.prefill_target - lead.prefill_cached - lead.prefill_done
                take = (left if left <= budget else budget) if self.chunked else (left if left <= budget else 0)
                if take:
                    chunks.append((lead, take))
                    budget -= take
            skipped = preempted  # a step that preempted does not admit (as vLLM): the next may
            if not preempted and self.waiting_count:
                admit_before = math.inf
                if self.ahead:
                    admit_before = (now if self.planned_at is None else self.planned_at) / TICKS_PER_S
                skipped = self._admit(chunks, budget, now / TICKS_PER_S, need, admit_before)
            if chunks:
                self._start_step(chunks, need, now)
                return
            if members:
                self._start_run(need, now, skipped)
                return
            if not (skipped and self.planned_at is not None):
                raise Unsupported("nothing to run with requests waiting")
            self.planned_at = None  # nothing to overlap: it plans at once, and sees what arrived

    @cython.ccall
    def _preempt(self) -> None:
        """Preempt the newest resident sequence by recompute (:meth:`Scheduler._preempt`): it (with the
        followers of a prefill it leads) frees its blocks and waits again, to prefill its prompt and what it
        generated so far."""
        newest = self._newest_member()
        for lead in self.leads:  # (keys are unique: the order of comparisons does not matter)
            for seq in (lead, *lead.followers):
                if newest is None or _FCFS_KEY(seq) > _FCFS_KEY(newest):
                    newest = seq
        passengers = [newest]
        if newest.state == DECODE:
            self._leave(newest.order)
        elif newest in self.leads:
            self.leads.remove(newest)
            passengers += newest.followers
        else:  # a follower: out of its lead's prefill
            for lead in self.leads:
                if newest in lead.followers:
                    lead.followers.remove(newest)
        self.preempted += 1
        for seq in passengers:
            self._release(seq)
            seq.preemptions += 1
            seq.prefill_target = seq.prefill_done = seq.prefill_cached = 0
            seq.followers = []
            self._wait(seq)

    @cython.ccall
    def _blocks_last(self, room: int, limit: int) -> int:
        """:func:`_blocks_last` of this batch."""
        return _blocks_last(self.residues, self.block, self.s, len(self.members), room, limit)

    @cython.ccall
    def _period(self) -> list[int]:
        """:func:`_period` of this batch."""
        return _period(self.residues, self.block, self.s)

    @cython.ccall
    def _newest_member(self) -> Sequence | None:
        """The decoding sequence last in first-come-first-served order, or None: the top of a heap of the members
        by that order, made at the replica's first preemption and kept from then on (entries of members that
        have left are dropped when they reach the top), so that a replica that preempts often does not scan its
        batch each time."""
        heap, members = self.newest, self.members
        if heap is None:
            heap = self.newest = [(-entry[0].arrival_s, -order, entry) for order, entry in members.items()]
            heapq.heapify(heap)
        while heap:
            _, negative_order, entry = heap[0]
            if members.get(-negative_order) is entry:
                return entry[0]
            heapq.heappop(heap)
        return None

    @cython.ccall
    def _release(self, seq: Sequence) -> None:
        """Free a resident sequence's blocks and its hold on its group's shared prompt blocks."""
        self.used_blocks -= seq.private_blocks
        seq.private_blocks = seq.kv_tokens = 0
        group = seq.group
        group.holders -= 1
        if group.holders == 0:
            self.used_blocks -= group.shared_tokens // self.block
        self.resident -= 1

    @cython.ccall
    def _head(self, head: Sequence, free_blocks: int, reserved: int, budget: int) -> tuple:
        """:meth:`Scheduler._head_decision` without a prefix cache: (whether it can never run, the prompt tokens
        it would prefill now (0: it waits), its tokens, the tokens its group's resident prompt blocks hold of
        them, its private blocks, the blocks it needs now, the blocks available)."""
        block = self.block
        group = head.group
        target = group.prompt_tokens + head.generated
        shared_tokens = group.shared_tokens
        lead_blocks = -(-(target - shared_tokens) // block)
        if group.holders > 0:  # the group's shared blocks are resident: its prompt's whole blocks are computed
            cached = min(shared_tokens, target - 1) if shared_tokens > 0 else 0
            blocks = lead_blocks
        else:
            cached = 0
            blocks = lead_blocks + shared_tokens // block
        empty_need = shared_tokens // block + lead_blocks
        available = free_blocks - reserved - self.watermark
        if self.no_evict:  # its whole length, and what every resident sequence may still take, must fit
            growth = self._growth(head, lead_blocks)
            blocks += growth
            empty_need += growth
            available = self.total_blocks - self.used_blocks - self._promised() - self.watermark
        abort = (empty_need > self.total_blocks - self.watermark
                 or (not self.chunked and target - cached > self.max_tokens))
        take = 0
        if not abort and self.resident < self.max_seqs and blocks <= available:
            left = target - cached
            take = (left if left <= budget else budget) if self.chunked else (left if left <= budget else 0)
        return abort, take, target, cached, lead_blocks, blocks, available

    @cython.ccall
    def _growth(self, seq: Sequence, blocks: int) -> int:
        """No-evict admission: private blocks ``seq`` takes beyond ``blocks`` until its last reserved token
        (:meth:`Scheduler._growth`)."""
        group = seq.group
        final = group.prompt_tokens + (seq.request.output_tokens if self.cap is None else self.cap) - 1
        return max(0, -(-(final - group.shared_tokens) // self.block) - blocks)

    @cython.ccall
    def _promised(self) -> int:
        """No-evict admission: the blocks every resident sequence may still take until its last reserved token
        (:meth:`Scheduler._promised_blocks`)."""
        block, s, cap = self.block, self.s, self.cap
        promised = 0
        for seq, _kv0, private0, last, *_ in self.members.values():
            output = seq.request.output_tokens
            left = last - s  # tokens it still generates
            reserved = left if cap is None else cap - (output - left)
            promised += -(-(private0 + s + reserved) // block) - -(-(private0 + s) // block)
        for lead in self.leads:
            for seq in (lead, *lead.followers):
                promised += self._growth(seq, seq.private_blocks)
        return promised

    @cython.ccall
    def _admit(self, chunks: list, budget: int, now_s: float, reserved: int, admit_before: float) -> bool:
        """First-come-first-served admission with head-of-line blocking (:meth:`Scheduler._admit` without a prefix
        cache): a request that has generated nothing takes its group's other waiting members with it, one
        prefill of their prompt; whether it stopped at a request that arrived after ``admit_before``
        (seconds)."""
        block = self.block
        skipped = False
        while budget > 0:
            head = self.head()
            if head is None:
                break
            if head.seen_s > admit_before:  # it reached the engine after this step was planned
                skipped = True
                break
            abort, take, target, cached, lead_blocks, blocks, available = self._head(
                head, self.total_blocks - self.used_blocks, reserved, budget)
            if abort:
                raise Unsupported("a request that can never run")
            if not take:
                break
            group = head.group
            stats = self.prefix_stats
            stats["prefills"] += 1
            stats["queried_tokens"] += target
            stats["hit_tokens"] += cached
            stats["queried_blocks"] += group.prompt_tokens // block
            if cached:
                stats["hit_blocks"] += group.shared_tokens // block
            followers = []
            if head.generated == 0:
                follower_blocks = -(-(group.prompt_tokens - group.shared_tokens) // block)
                seats = self.max_seqs - self.resident
                for other in group.waiting:
                    need = follower_blocks + (self._growth(other, follower_blocks) if self.no_evict else 0)
                    if len(followers) + 1 >= seats or blocks + need > available:
                        break
                    if other is not head and other.state == WAITING and other.generated == 0:
                        followers.append(other)
                        blocks += need
            if group.holders == 0:
                self.used_blocks += group.shared_tokens // block
            group.holders += 1 + len(followers)
            for seq, private, tokens in [(head, lead_blocks, cached)] + [(f, follower_blocks, 0) for f in followers]:
                self._leave_waiting(seq)
                seq.state = PREFILL
                seq.private_blocks = private
                seq.kv_tokens = tokens
                self.used_blocks += private
                if seq.admitted_s is None:
                    seq.admitted_s = now_s
                self.resident += 1
            head.prefill_target, head.prefill_cached, head.prefill_done = target, cached, 0
            bisect.insort(self.leads, head, key=_key)
            head.followers = followers
            chunks.append((head, take))
            budget -= take
        return skipped

    # ------------------------------------------------------------------------------ starting
    def _start_step(self, chunks: list, need: int, now: float) -> None:
        """One mixed step: the decodes and the prefill chunks, priced as the general engine prices them."""
        prefill = tuple((take, lead.prefill_cached + lead.prefill_done,
                         take == lead.prefill_target - lead.prefill_cached - lead.prefill_done)
                        for lead, take in chunks)  # (tokens, cached, completes_prompt): PrefillChunk's fields
        n = len(self.members)
        if n:
            column = self.pricer.dense_column(n, self.kv0_sum + n * self.s, prefill)
        else:
            batch = StepBatch(prefill=tuple(PrefillChunk(*chunk) for chunk in prefill))
            column = self.pricer.step(batch).matrix[:, 0].tolist()
        work = max(float(round(column[0] * TICKS_PER_S)), 1.0)
        self.flight = [chunks, need, now, [now + work], 1, column, n, None]
        self.generation += 1
        self.run.push(now + work, _END, self.index, self.generation)

    @cython.locals(x=cython.double, x0=cython.double, x1=cython.double, slope=cython.double, near=cython.double,
                   tick=cython.double, at=cython.double, base0=cython.double, k=cython.Py_ssize_t,
                   limit=cython.Py_ssize_t, n=cython.Py_ssize_t)
    @cython.ccall
    def _start_run(self, need: int, now: float, pending: bool = False) -> None:
        """Decode steps of the fixed batch until its first finish, the blocks left or the longest segment, each
        ending on the general engine's tick: priced alone by the direct pricing's operations
        (:func:`_exact`), or read off the line through the first and last steps' exact values where the run
        stays within one split and one side of the ridge (the exact operations deciding any step near a half
        tick); a long run's line as arrays."""
        n = len(self.members)
        direct, base0, _ = self._batch_terms(n)
        s, block = self.s, self.block
        limit = min(self._next_finish() - s, MAX_SEGMENT_STEPS)
        free = self.total_blocks - self.used_blocks
        if need + n * (limit // block + 1) > free:  # the blocks may run out first (Scheduler._blocks_added)
            limit = min(limit, self._blocks_last(free - need, limit))
        head = self.head() if pending and limit > 1 else None
        if head is not None:
            # this plan skipped admission (it preempted, or a request the step ahead had not seen): one step if
            # the next plan's admission would act (Scheduler.decode_segment); if not, it never will in the segment
            reserved = self.residues[-(s + 1) % block]  # the second step's new blocks
            budget = self.max_tokens - n
            if budget > 0:
                abort, take = self._head(head, free - need, reserved, budget)[:2]
                if abort or take:
                    limit = 1
        first = float(self.kv0_sum + n * s + n)
        ends = []
        at = now
        affine = False
        if limit >= 4:
            # Within one split of the KV and one side of the compute/memory ridge a step's time is affine in its
            # tokens, so in its index: the clock's value of step k is read off the line through the first and
            # last steps', within 1e-14 of the exact operations' (whose rounding error is about 2e-15 of it),
            # and rounded to the tick where it is not within a margin ten times that of a half tick; a step
            # near one is priced exactly. Every tick is the exact pricing's.
            time0, compute0, memory0, split0 = _exact(direct, first, n, 0)
            time1, compute1, memory1, split1 = _exact(direct, first, n, limit - 1)
            ridge = 1e-12 * max(compute0, memory0, compute1, memory1)
            affine = (split0 == split1 and (compute0 - memory0 > ridge) == (compute1 - memory1 > ridge)
                      and abs(compute0 - memory0) > ridge and abs(compute1 - memory1) > ridge)
        terms = None
        if affine:
            x0 = (base0 + time0) * TICKS_PER_S
            x1 = (base0 + time1) * TICKS_PER_S
            slope = (x1 - x0) / (limit - 1)
            near = 0.5 - (1e-13 * max(x0, x1) + 1e-6)  # a value this far from a whole tick is near a half
            if limit >= _ARRAY_STEPS:  # many steps (a long segment, often cut early): as arrays
                line = x0 + slope * _STEP_INDEX[:limit]
                ticks = np.rint(line)
                off = np.subtract(line, ticks, out=line)  # (line is not read again)
                np.abs(off, out=off)
                if off.max() > near:
                    for k in np.flatnonzero(off > near).tolist():  # the exact operations decide
                        ticks[k] = round((base0 + _exact_s(direct, first, n, k)) * TICKS_PER_S)
                # each end: the start plus the ticks so far, whole numbers, so exact in any order of addition
                np.maximum(ticks, 1.0, out=ticks)
                ticks[0] += now
                ends = np.cumsum(ticks, out=ticks)
                at = float(ends[-1])  # (the plan stays an array: _end_run sums it, or lists the steps of one cut short)
            elif min(x0, x1) >= 1.5:  # every tick is at least 1 (2 at least): no floor to apply
                # x advances by the slope a step: within k ulps of x0 + slope * k, far inside the margin of
                # ``near``, so a tick read here is the line's, and one near a half goes to the exact operations
                # as there; (x + 0.5) // 1 is round(x) away from halves, without a call
                append, x = ends.append, x0
                for k in range(limit):
                    tick = (x + 0.5) // 1.0
                    if abs(x - tick) > near:  # the exact operations decide
                        tick = round((base0 + _exact_s(direct, first, n, k)) * TICKS_PER_S)
                    at += tick
                    append(at)
                    x += slope
            else:
                for k in range(limit):
                    x = x0 + slope * k
                    tick = round(x)
                    if abs(x - tick) > near:  # the exact operations decide
                        tick = round((base0 + _exact_s(direct, first, n, k)) * TICKS_PER_S)
                    at += tick if tick > 1 else 1
                    ends.append(at)
            attention = (time0, (time1 - time0) / (limit - 1), split0[1])
        else:
            attention, terms = [], []
            for k in range(limit):
                attended = first + n * k
                time, flops, nbytes, compute, memory = direct.step_terms(attended, attended)  # (_exact_s)
                tick = round((base0 + time) * TICKS_PER_S)
                at += tick if tick > 1 else 1
                ends.append(at)
                attention.append(time)
                terms.append((flops, nbytes, compute, memory))
        self.flight = [None, need, now, ends, limit, attention, n, terms]
        self.generation += 1
        self.run.push(at, _END, self.index, self.generation)

    # ------------------------------------------------------------------------------ ending
    @cython.ccall
    def on_end(self, now: float) -> None:
        """The running step or segment has ended: record it, apply it, plan the next."""
        flight = self.flight
        self.flight = None
        chunks, need, start, ends, steps, figures, n, terms = flight
        self.planned_at = start if steps == 1 else float(ends[steps - 2])  # the last step's start
        if chunks is not None:
            added = self._end_step(chunks, need, start, ends[0], figures, n)
        else:
            added = self._end_run(need, start, ends, steps, figures, n, terms)
        self._apply(chunks, steps, added, now / TICKS_PER_S)
        if self.run.peek() > now:  # nothing else happens at this instant: decide now
            self.idle = False
            self.on_decide(now)
        else:
            self.ask_decision(now)

    @cython.ccall
    def _end_step(self, chunks: list, need: int, start: float, end: float, column, n: int) -> int:
        """Record a mixed step and split its GPU time (:meth:`Replica._attribute`); return the blocks its
        decodes took."""
        run = self.run
        used = self.used_blocks
        completed = tokens = 0
        for lead, take in chunks:
            tokens += take
            if take == lead.prefill_target - lead.prefill_cached - lead.prefill_done:
                completed += 1 + len(lead.followers)
        totals = column
        work = end - start
        start_s, end_s = start / TICKS_PER_S, end / TICKS_PER_S
        run.rows.step(self.index, start_s, end_s, n, tokens, n + completed, used + need,
                      float(used + need) * work / TICKS_PER_S, totals)
        clock_s = work / TICKS_PER_S
        if run.attribute and clock_s > 0.0:
            gpu_s = self.gpus * (end_s - start_s) / clock_s
            chunk_attended = [lead.prefill_cached + lead.prefill_done + take for lead, take in chunks]
            chunk_tokens = [take for _, take in chunks]
            weight, constant, shares = step_coefficients(
                totals[0], totals[_ATTENTION_S], n, float(self.kv0_sum + n * self.s + n), 1.0, chunk_attended,
                chunk_tokens)
            for (lead, _take), share in zip(chunks, shares):
                party = (lead, *lead.followers)  # a prefill's share in equal parts to its sequences
                for seq in party:
                    seq.gpu_s += share * clock_s * gpu_s / len(party)
            self._credit(n, weight, constant, clock_s * gpu_s)
        return need

    @cython.locals(block_ticks=cython.double, clock_s=cython.double, weight=cython.double, constant=cython.double,
                   other=cython.double, previous=cython.double, end=cython.double, ticks=cython.double,
                   step_s=cython.double, u=cython.double, w=cython.double, seconds=cython.double,
                   seconds0=cython.double, growth=cython.double, first=cython.double, base0=cython.double,
                   time=cython.double, k=cython.Py_ssize_t, steps=cython.Py_ssize_t, n=cython.Py_ssize_t,
                   used=cython.Py_ssize_t, added=cython.Py_ssize_t, steps_left=cython.Py_ssize_t)
    @cython.ccall
    def _end_run(self, need: int, start: float, ends: list[float], steps: int, attention, n: int,
                 terms: list | None) -> int:
        """Record the decode steps that ran (of those planned; ``attention``: each one's attention seconds, or the
        first's and their growth a step; ``terms``: :meth:`_attention_sums`'), split their
        GPU time (:func:`~kinsim.engine.attribution.decode_coefficients`, summed step by step); return the
        blocks they took. One pass over the steps: each one's duration, the blocks it added, its share terms."""
        run = self.run
        used, block, s, residues = self.used_blocks, self.block, self.s, self.residues
        direct, base0, static = self._batch_terms(n)
        first = float(self.kv0_sum + n * s + n)
        attribute = run.attribute
        added, block_ticks = need, 0.0
        clock_s = weight = constant = other = 0.0
        previous = start
        line = type(attention) is tuple  # (first step's attention seconds, their growth a step), or each step's
        if line:
            seconds0, growth, _ = attention
        if steps >= _ARRAY_END_STEPS:  # a long run: the same sums as arrays
            previous, added, block_ticks, clock_s, weight, constant, other = self._run_sums(
                start, ends, steps, need, first, attention, base0, n)
            steps_left = 0
        else:
            steps_left = steps
            if type(ends) is not list:  # a long plan cut early
                ends = ends[:steps].tolist()
            if line and attribute and base0 + min(seconds0, seconds0 + growth * (steps - 1)) > 0.0:
                # the common run: the loop below with its branches taken once (every step's time is positive:
                # the line's least) and each step's new blocks read in order from the residues turned around
                took = self._period()
                if steps > block + 1:
                    took *= (steps - 2) // block + 1
                ticks = ends[0] - start
                block_ticks = (used + added) * ticks
                step_s = clock_s = ticks / TICKS_PER_S
                u = seconds0 * (step_s / (base0 + seconds0))
                weight = u / first
                other = step_s - u
                previous = ends[0]
                for k in range(1, steps):
                    end = ends[k]
                    ticks = end - previous
                    previous = end
                    added += took[k - 1]
                    block_ticks += (used + added) * ticks
                    step_s = ticks / TICKS_PER_S
                    clock_s += step_s
                    seconds = seconds0 + growth * k
                    u = seconds * (step_s / (base0 + seconds))
                    w = u / (first + n * k)
                    weight += w
                    constant += k * w
                    other += step_s - u
                steps_left = 0
            elif not attribute:  # (``--records none``) the blocks alone, read in order as above
                took = self._period()
                if steps > block + 1:
                    took *= (steps - 2) // block + 1
                previous = ends[0]
                block_ticks = (used + added) * (previous - start)
                for k in range(1, steps):
                    end = ends[k]
                    added += took[k - 1]
                    block_ticks += (used + added) * (end - previous)
                    previous = end
                steps_left = 0
        for k in range(steps_left):
            end = ends[k]
            ticks = end - previous
            previous = end
            if k:
                added += residues[-(s + k) % block]
            block_ticks += (used + added) * ticks
            if attribute:
                step_s = ticks / TICKS_PER_S
                clock_s += step_s
                seconds = seconds0 + growth * k if line else attention[k]
                time = base0 + seconds
                if time > 0.0:
                    u = seconds * (step_s / time)
                    w = u / (first + n * k)
                    weight += w
                    constant += k * w
                    other += step_s - u
        start_s, end_s = start / TICKS_PER_S, previous / TICKS_PER_S
        run.rows.run(self.index, start_s, end_s, steps, n, n * steps, used + added, block_ticks / TICKS_PER_S, static,
                     direct.layers, *self._attention_sums(direct, attention, steps, first, terms))
        if attribute and clock_s > 0.0:
            self._credit(n, weight, constant + other / n, self.gpus * (end_s - start_s) / clock_s)
        return added

    @cython.ccall
    def _batch_terms(self, n: int) -> tuple:
        """(direct pricing, static seconds of a decode step, the static column's number in the row buffer) of a
        batch of ``n`` sequences, kept per ``n``."""
        terms = self.batch_terms.get(n)
        if terms is None:
            direct = self.pricer.direct_of(n)
            if direct is None:
                raise Unsupported("a batch without the direct decode pricing")
            static = self._static(n)
            terms = self.batch_terms[n] = (direct, static[0], self.run.rows.static(static))
        return terms

    @cython.ccall
    def _static(self, n: int) -> list[float]:
        """:meth:`~kinsim.engine.pricer.StepPricer.decode_static` of ``n`` sequences as a list, kept per ``n``."""
        base = self.static.get(n)
        if base is None:
            base = self.static[n] = self.pricer.decode_static(n)[:, 0].tolist()
        return base

    @cython.ccall
    def _credit(self, n: int, weight: float, constant: float, scale: float) -> None:
        """Owe each decoding sequence ``(kv + 1) x weight + constant`` times ``scale`` GPU-seconds
        (``DecodeBatch.credit``)."""
        if n:
            weight, constant = weight * scale, constant * scale
            self.weight += weight
            self.constant += self.s * weight + constant

    @cython.ccall
    def _run_sums(self, start: float, ends, steps: int, need: int, first: float, attention, base0: float,
                  n: int) -> tuple:
        """:meth:`_end_run`'s pass over a long run's steps as arrays (``ends``: each planned step's end tick, a
        list or an array): (the last step's end tick, the blocks the decodes took, block-ticks, clock seconds,
        and the GPU-time share's weight, constant and other sums). The same terms; the sums add in another
        order (about 1e-16 of them apart)."""
        used, block = self.used_blocks, self.block
        ends_array = np.asarray(ends[:steps], dtype=float)
        ticks = np.empty(steps)  # each step's ticks (np.diff with the start prepended, without its copies)
        ticks[0] = ends_array[0] - start
        np.subtract(ends_array[1:], ends_array[:-1], out=ticks[1:])
        k = _STEP_INDEX[:steps]
        # the blocks the decodes have taken by step k (from need at step 0): step j >= 1 takes the members at
        # residue -(s + j) mod the block, every member once a period, so by step k = q x block + r they took
        # q x n plus the first r steps' share of a period (whole numbers: the same as adding them step by step)
        period = [0.0, *accumulate(self._period()[:block - 1])]
        periods, phases = _periods(block)
        added = np.array(period)[phases[:steps]]
        added += periods[:steps] * n
        added += need
        block_ticks = float(np.dot(used + added, ticks))  # whole numbers: exact in any order
        clock_s = weight = constant = other = 0.0
        if self.run.attribute:
            step_s = ticks / TICKS_PER_S
            clock_s = float(step_s.sum())
            seconds = attention[0] + attention[1] * k if type(attention) is tuple else np.array(attention[:steps])
            time = base0 + seconds
            if time.min() > 0.0:  # (the common run) every step's share, as below without the masks
                u = seconds * (step_s / time)
                left = step_s - u
            else:
                positive = time > 0.0
                u = seconds * np.divide(step_s, time, out=np.zeros(steps), where=positive)
                left = (step_s - u)[positive]
            w = u / (first + n * k)
            weight, constant = float(w.sum()), float(np.dot(k, w))
            other = float(left.sum())
        return float(ends_array[-1]), int(added[-1]), block_ticks, clock_s, weight, constant, other

    @cython.ccall
    def _attention_sums(self, direct, attention, steps: int, first: float, terms: list | None) -> tuple[float, ...]:
        """The decode attention of a run's first ``steps`` steps (``attention``: each planned step's seconds, or
        the first's and their growth a step; ``first``: tokens the first step attends; ``terms``: where the plan
        priced each step, each one's FLOPs, bytes, compute and memory seconds), summed over the steps: seconds
        of all layers, and FLOPs, HBM bytes, compute and memory seconds of one layer (the terms of
        :func:`~kinsim.engine.pricer.add_attention`)."""
        if type(attention) is tuple:  # one split of the KV: every term affine in the tokens attended, whose sum
            attended = steps * first + direct.n * (steps * (steps - 1) // 2)  # over the steps is a whole number
            flops = direct.flops_per_key * attended
            nbytes = direct.kv_bytes_per_token * attended + steps * (direct.query_bytes + direct.written_bytes)
            compute = flops / direct.peak_rate
            memory = nbytes / direct.memory_rate + nbytes / attention[2]
            return (steps * attention[0] + attention[1] * (steps * (steps - 1) // 2), flops, nbytes, compute,
                    memory)
        flops = nbytes = compute = memory = 0.0  # step by step, as the plan priced them
        for f, b, c, m in terms[:steps]:
            flops += f
            nbytes += b
            compute += c
            memory += m
        return math.fsum(attention[:steps]), flops, nbytes, compute, memory

    @cython.ccall
    def _apply(self, chunks, steps: int, added: int, now_s: float) -> None:
        """Account for the steps (:meth:`Scheduler.apply`; ``added``: the blocks the decodes took): decodes
        advance, finished sequences leave, completed prompts join the batch."""
        ended = []
        if self.members:
            self.used_blocks += added
            self.s = s = self.s + steps
            if s >= _REBASE_STEPS:
                self._rebase()
                s = 0
            finishes, members = self.finishes, self.members
            while finishes and finishes[0][0] <= s:
                last, order = heapq.heappop(finishes)
                entry = members.get(order)
                if entry is not None and entry[3] == last:  # (not one that left by preemption)
                    ended.append(self._leave(order))
        if chunks is not None:
            for lead, take in chunks:
                lead.prefill_done += take
                lead.kv_tokens = lead.prefill_cached + lead.prefill_done
                if lead.prefill_target - lead.prefill_cached - lead.prefill_done:
                    continue
                for seq in (lead, *lead.followers):  # the prompt is done: each has its first token
                    seq.kv_tokens = seq.group.prompt_tokens + seq.generated
                    seq.generated += 1
                    if seq.first_token_s is None:
                        seq.first_token_s = now_s
                    if seq.generated >= seq.request.output_tokens:
                        ended.append(seq)
                    else:
                        seq.state = DECODE
                        self._join(seq)
                lead.followers = []
                lead.prefill_target = lead.prefill_done = lead.prefill_cached = 0
                self.leads.remove(lead)
        for seq in ended:
            seq.state = FINISHED
            self._release(seq)
            seq.finish_s = now_s
            self.run.on_finish(seq)

    @cython.ccall
    def _join(self, seq: Sequence) -> None:
        """``seq`` starts decoding."""
        s = self.s
        kv0 = seq.kv_tokens - s
        private0 = kv0 - seq.group.shared_tokens
        last = s + seq.request.output_tokens - seq.generated
        self.members[seq.order] = [seq, kv0, private0, last, seq.group.shared_tokens, self.weight, self.constant,
                                   seq.gpu_s]
        self.residues[private0 % self.block] += 1
        self.kv0_sum += kv0
        heapq.heappush(self.finishes, (last, seq.order))
        newest = self.newest
        if newest is not None:  # (kept once the replica has preempted)
            heapq.heappush(newest, (-seq.arrival_s, -seq.order, self.members[seq.order]))
            if len(newest) > 2 * len(self.members) + 64:  # drop the entries of members that have left
                self.newest = None

    @cython.ccall
    def _owed(self, entry: list) -> float:
        """GPU-seconds a member has been owed so far, settled and lazily (as ``DecodeBatch.owed_gpu_s``)."""
        return entry[7] + ((entry[1] + 1) * (self.weight - entry[5]) + (self.constant - entry[6]))

    @cython.ccall
    def _leave(self, order: int) -> Sequence:
        """A member leaves the batch (its last token, or a preemption), its counters written back."""
        entry = self.members.pop(order)
        seq, kv0, private0, last = entry[0], entry[1], entry[2], entry[3]
        s = self.s
        self.residues[private0 % self.block] -= 1
        self.kv0_sum -= kv0
        seq.kv_tokens = kv0 + s
        seq.generated = seq.request.output_tokens - (last - s)
        seq.private_blocks = -(-(private0 + s) // self.block)
        seq.gpu_s = self._owed(entry)
        return seq

    @cython.ccall
    def _next_finish(self) -> int:
        """The step counter at which the batch's first finish falls (the heap's entries of members that left by
        preemption are dropped here)."""
        finishes, members = self.finishes, self.members
        while True:
            last, order = finishes[0]
            entry = members.get(order)
            if entry is not None and entry[3] == last:
                return last
            heapq.heappop(finishes)

    @cython.ccall
    def _rebase(self) -> None:
        """Settle every member's owed GPU time and restart the step counter and the running sums (as
        ``DecodeBatch.advance``)."""
        s, block = self.s, self.block
        residues = [0] * block
        for entry in self.members.values():
            entry[7] = self._owed(entry)
            entry[1] += s
            entry[2] += s
            entry[3] -= s
            entry[5] = entry[6] = 0.0
            residues[entry[2] % block] += 1
        self.residues = residues
        self.kv0_sum += s * len(self.members)
        self.finishes = [(last - s, order) for last, order in self.finishes]
        heapq.heapify(self.finishes)
        self.weight = self.constant = 0.0
        self.s = 0

    def counters(self) -> dict[str, float]:
        """The replica's memory counters, as :meth:`Simulation.replica_counters` gives the general engine's."""
        return {**self.prefix_stats, "preempt_recompute": self.preempted, "preempt_swap": 0, "swap_out_blocks": 0,
                "swap_in_blocks": 0, "host_peak_blocks": 0, "evicted_blocks": 0, "offload_blocks": 0,
                "stall_s": 0.0}


class LeanRun:
    """Runs a :class:`~kinsim.engine.simulation.Simulation` that :func:`unsupported` accepts; :meth:`run`
    returns its records."""

    def __init__(self, sim, link=None) -> None:
        self.sim = sim
        #: Where this process meets the others of a lockstep run (:mod:`kinsim.engine.lockstep`: its replicas are
        #: some of the run's, and the router reads the others' loads from them at each arrival), or None.
        self.link = link
        self.heap: list[tuple] = []
        self.counter = 0
        self.events = 0
        self.rows = RowBuffer(sim.records.segments)
        #: Finished requests not yet written to the request table (``RequestRecords.write_finished``, a block at
        #: a time), or None where the records are running totals (``--records summary``: written one by one).
        self.ended: list[tuple] | None = [] if isinstance(sim.records.sequences, RequestRecords) else None
        #: Whether steps' GPU time is split among the requests (not with ``--records none``).
        self.attribute = sim.records_mode != "none"
        self.replicas = [_Replica(self, r, len(gpus)) for r, gpus in enumerate(sim.records.replica_gpus)]
        self.router = type(sim.router)(sim.workload.deployment.router, len(self.replicas),
                                       lambda i: self.replicas[i].outstanding)
        if link is not None:  # the other processes' replicas: their loads as last heard plus the placements since
            own, remote = link.own, [0] * len(self.replicas)
            self.remote_load = remote
            self.router.load = lambda i: self.replicas[i].outstanding if own[i] else remote[i]
            self.placed = [-1] * len(sim.requests)  # every request's replica, as routed
        self.group_of = sim.requests.group
        self.group_size = list(sim._group_size)
        self.group_left = list(sim._group_left)  # members not yet ended, per group
        self.group_replicas: dict[int, set[int]] = {}
        arrival = getattr(sim.workload.requests, "arrival", None)
        #: The closed loop of clients, or None (open arrivals); its groups released so far, those of the round
        #: still running, and the releases in flight (their groups and send time, by event).
        self.closed = arrival if isinstance(arrival, ClosedLoopArrivals) else None
        self.released = self.round_left = 0
        self.releases: dict[int, tuple[list[int], float]] = {}
        self.now = 0.0
        #: The tick of the next instant of open arrivals (math.inf when none is left, or under a closed loop):
        #: kept beside the heap, not in it, since their times are known from the start.
        self.arrival_at = math.inf

    def push(self, tick: float, priority: int, replica: int, generation: int) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (tick, priority, self.counter, replica, generation))

    def peek(self) -> float:
        """The tick of the next event (an open arrival's included)."""
        heap = self.heap
        return min(heap[0][0], self.arrival_at) if heap else self.arrival_at

    def on_finish(self, seq: Sequence) -> None:
        """``seq`` has ended (:meth:`Simulation._on_end` for groups of one): its record, the router's load, and
        under a closed loop its client's next request."""
        sim = self.sim
        sim._ended += 1
        self.router.changed(seq.replica)
        del sim._live[seq.order]
        ended = self.ended
        if ended is None:
            sim.records.sequences.write(seq)
        else:
            ended.append((seq.order, seq.arrival_s, seq.admitted_s, seq.first_token_s, seq.finish_s, seq.generated,
                          seq.preemptions, seq.gpu_s, seq.replica))
            if len(ended) >= _ENDED_ROWS:
                sim.records.sequences.write_finished(ended)
                self.ended = []
        group = int(self.group_of[seq.order])
        self.group_left[group] -= 1
        if self.group_left[group]:
            return
        self.router.forget(group)  # nothing of the group is left to place or serve
        for r in self.group_replicas.pop(group, (seq.replica,)):
            self.replicas[r].group_states.pop(group, None)
        closed = self.closed
        if closed is not None:
            self.round_left -= 1
            if not closed.rounds:
                pause = 0.0
                if closed.stagger and group < closed.concurrency:  # Simulation._stagger_pause
                    pause = float(round((to_seconds(self.now) - seq.arrival_s) * group / closed.concurrency
                                        * TICKS_PER_S))
                self.release(1, pause)
            elif self.round_left == 0:  # the whole round has ended: the next one starts together
                self.release(closed.concurrency)

    def release(self, problems: int, pause: float = 0.0) -> None:
        """A closed loop's clients send the next ``problems`` groups ``pause`` ticks from now; the engine sees
        them the frontend's time later (:meth:`Simulation._release`)."""
        sim = self.sim
        groups = list(range(self.released, min(self.released + problems, sim.requests.groups)))
        self.released += len(groups)
        self.round_left += len(groups)
        if not groups:
            return
        self.releases[self.counter + 1] = (groups, to_seconds(self.now + pause))
        self.push(self.now + (pause + sim._frontend_ticks), _ARRIVAL, _RELEASE, self.counter + 1)

    def route(self, i: int, arrived: float) -> None:
        """Place request ``i``, sent at ``arrived`` seconds, on a replica (:meth:`Simulation._route`)."""
        requests, g = self.requests, int(self.group_of[i])
        placement = self.placement
        replica = self.replicas[self.router.place(g) if placement is None else int(placement[i])]
        link = self.link
        if link is not None:
            index = replica.index
            self.placed[i] = index
            if not link.own[index]:  # another process serves it: only the router's view of that replica changes
                self.remote_load[index] += 1
                self.router.forget(g)
                self.router.changed(index)
                return
        request = (_TableRequest(requests, i, float(requests.arrival_s[i]), int(requests.prompt_tokens[i]),
                                 int(requests.output_tokens[i])) if self.plain else requests[i])
        state = replica.group_state(g, request.prompt_tokens)
        seq = Sequence(request, i, state, arrived)
        if self.group_size[g] > 1:  # where its members went, to forget the group there when it ends
            self.group_replicas.setdefault(g, set()).add(replica.index)
        self.live[i] = seq
        replica.enqueue(seq, self.now)
        self.router.changed(replica.index)

    def _meet(self, instant: int) -> None:
        """Before the ``instant``-th instant of arrivals is routed (a lockstep run): tell the other processes
        the loads of this process's replicas that changed since the last one (the router marked them: every
        end since then, the last placement), and take theirs."""
        router, replicas, own = self.router, self.replicas, self.link.own
        changed = [(r, replicas[r].outstanding) for r in router.marked() if own[r]]
        remote = self.remote_load
        for r, load in self.link.meet(instant, changed):
            remote[r] = load
            router.changed(r)

    def run(self):
        """Run to the end; the records (:meth:`Simulation.finish_records`).

        Python's cyclic garbage collector is off meanwhile: a run makes no garbage cycles (a request's objects
        are freed by their reference counts when it ends; an admitted request's group drops its waiting list,
        the only cycle), and the collector's passes over a run's millions of short-lived objects cost about
        a tenth of its time."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if enabled:
                gc.enable()

    def _run(self):
        from kinsim.engine import simulation
        from kinsim.engine.simulation import Progress

        sim = self.sim
        requests = self.requests = sim.requests
        self.placement, self.live = sim._placement, sim._live  # (read per request)
        # the requests as the replicas need them, built from the table's columns (a table with scores, hash ids
        # or acceptance rates gives them whole); the columns stay arrays, read one scalar at a time, as lists
        # they would hold about 200 MB more at 10^6 requests
        self.plain = requests._scores is None and requests._hash_ids is None and requests.acceptance is None
        replicas = self.replicas
        max_ticks = simulation.MAX_TICKS  # (read at run time: tests move it)
        total = sim.served_total()
        progress, last_report = sim.progress, 0
        frontend = sim._frontend_ticks
        self.now = 0.0
        if self.closed is not None:  # the first round, together; then SimPy's process ends at this instant
            self.release(min(self.closed.concurrency, requests.groups))
            self.push(0.0, _END, -1, 0)
            order, ticks, bounds = [], np.zeros(0), np.zeros(0, int)
        else:
            arrival = requests.arrival_s
            order = np.argsort(arrival, kind="stable")
            if sim._serving is not None:
                order = order[sim._serving[order]]
            ticks = np.round(arrival[order] * TICKS_PER_S)
            bounds = np.append(np.flatnonzero(np.diff(ticks)) + 1, len(order)) if len(order) else np.zeros(0, int)
            if len(bounds):
                self.arrival_at = max(float(ticks[0]) + frontend, 0.0)
        first = 0  # the next group of open arrivals: order[first:bounds[group]]
        group = 0
        heap = self.heap
        while True:
            # the next event: the heap's, or the next open arrival where it comes first (at one instant an
            # arrival follows the ends and precedes the decisions, by the priorities above)
            if heap:
                top = heap[0]
                arriving = self.arrival_at < top[0] or (self.arrival_at == top[0] and top[1] == _DECIDE)
            elif self.arrival_at < math.inf:
                arriving = True
            else:
                break
            if arriving:
                tick, priority = self.arrival_at, _ARRIVAL
            else:
                tick, priority, _, index, generation = heapq.heappop(heap)
            if tick > max_ticks:
                raise sim.past_clock()
            self.now = now = tick
            self.events += 1
            if arriving:
                if self.link is not None:
                    self._meet(group + 1)
                end = int(bounds[group])
                arrived = to_seconds(float(ticks[first]))
                for i in order[first:end].tolist():
                    self.route(i, arrived)
                first = end
                group += 1
                if group < len(bounds):
                    self.arrival_at = max(float(ticks[first]) + frontend - now, 0.0) + now
                else:  # SimPy schedules the arrival process's own end now: it is an event at this instant
                    self.arrival_at = math.inf
                    self.push(now, _END, -1, 0)
            elif priority == _END:
                if index >= 0:  # (a replica's timer; -1: the arrival process ending, as SimPy schedules it)
                    replica = replicas[index]
                    if generation == replica.generation:
                        replica.on_end(now)
            elif priority == _DECIDE:
                replicas[index].on_decide(now)
            else:  # a closed loop's clients send (Simulation._route_groups, groups of one)
                groups, sent = self.releases.pop(generation)
                members, starts = sim._by_group, sim._group_start
                for g in groups:
                    for i in members[starts[g]:starts[g + 1]].tolist():
                        self.route(i, sent)
            if progress is not None and self.events - last_report >= 2000:
                last_report = self.events
                progress(Progress(to_seconds(now), sim._ended, total))
        self.rows.flush()
        if self.link is not None:  # the requests served here (the others are another process's records)
            placed = self.placed = np.array(self.placed, dtype=np.int64)
            sim._serving = (placed >= 0) & np.asarray(self.link.own, dtype=bool)[np.maximum(placed, 0)]
        if self.ended:
            sim.records.sequences.write_finished(self.ended)
            self.ended = []
        sim.lean_counters = [replica.counters() for replica in replicas]
        return sim.finish_records(self.events, to_seconds(self.now), sim.lean_counters)
