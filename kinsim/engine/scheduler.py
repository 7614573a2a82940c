"""Continuous batching for one replica, in the manner of vLLM's scheduler.

Each step, in this order:

1. **Decode first.** Every decoding sequence gets one token in the step; its KV block for that token is
   allocated now. When the free blocks do not cover them, the newest resident sequence (latest arrival,
   then latest in generation order) is preempted by *recompute* (vLLM V1 preempts the one it admitted
   last, ``self.running.pop()``: the same sequence here, since first-come-first-served admission with
   head-of-line blocking, a swapped sequence's priority and readmission ahead of newer arrivals keep the
   residents' admission order their arrival order): its blocks are freed and it returns to
   the waiting queue, to prefill its prompt and the tokens generated so far again when readmitted. With
   ``preemption: swap`` a decoding victim is *swapped* instead, while the host share has room: its blocks
   are copied to host memory (with the group's shared blocks when it held them last) and freed. A
   sequence alone that still does not fit is ended unfinished.
1b. **Swap-in.** In a step that preempted nothing, swapped sequences come back oldest first while the
   free blocks (less the watermark and the decodes' new blocks) cover their blocks and the batch has room;
   they decode in this very step. While any sequence is swapped, no new request is admitted (vLLM's
   rule: swapped sequences come first). The step's copies each way are read by the replica
   (:meth:`Scheduler.take_transfers`), which runs them on the host link before the step.
2. **Prefills in progress** continue, oldest first, within the step's token budget
   (``max_num_batched_tokens`` minus the decoding sequences); with ``chunked_prefill`` a prompt is split
   across steps, without it a prompt runs whole or waits.
3. **Admission** from the waiting queue, first come first served with head-of-line blocking, while the
   step has budget, the batch has room (``max_num_seqs``) and the free blocks minus a watermark cover the
   newcomer's blocks. Not in a step that preempted. With ``admission: no_evict`` (TensorRT-LLM's
   ``GUARANTEED_NO_EVICT``) the free blocks must also cover, beyond the watermark, the blocks every resident
   sequence may still take until its last token and the newcomer's own at its full length, so decodes
   never run out of blocks and nothing is preempted for them (host pages of offloaded KV still may); a
   request whose full length exceeds the cache ends unfinished. The full length is the prompt plus the
   generation cap the request was sent with (the workload's ``max_output_tokens``, as a client's
   ``max_tokens``), or its own output where no cap is set. Free blocks less those promised stay constant
   while a batch decodes (each block a decode takes was promised), so admission can only become possible
   when something ends, as with greedy admission. A newcomer that has generated nothing takes the
   other waiting members of its group with it: one prefill of the prompt, then every member decodes on
   the shared prompt blocks (see :mod:`kinsim.engine.kv`). When the group's prompt blocks are still
   resident, only the rest is computed (a prefix-cache hit). With ``prefix_caching`` the whole prompt
   blocks stay cached after their last holder ends, named by content, until the space is needed
   (:mod:`kinsim.engine.prefix_cache`): a later request whose prompt starts with them skips their prefill.

With block top-k over offloaded KV (``attention.offload``) every resident sequence also holds its full KV
in host memory (``host_blocks`` pages of ``kv_block_size`` tokens for the replica): admission needs room
there for the prompt, each decode step's new tokens take pages there, and when the host share runs out the
newest sequence is preempted (by recompute) as when HBM does.

A sequence finishes at the end of the step that produces its last token.

**Roles** (``deployment.disaggregation``, :mod:`kinsim.engine.disagg`). A ``prefill`` replica's sequences
leave it when their prompt completes (the step that produces the first token): their KV stays allocated
(:attr:`Scheduler.held`) until it has moved, and :attr:`Scheduler.on_handoff` tells the simulation. A
``decode`` replica takes such sequences into :attr:`Scheduler.incoming`; each step, after the decodes' blocks
and before prefills, it admits them first come first served while a seat and the free blocks (less the
watermark) cover their KV, allocates the blocks and starts the transfer (:meth:`Scheduler.take_landings`);
they join the decode batch at the first step after their KV has arrived (:meth:`Scheduler.land`). A sequence
preempted on a decode replica is recomputed there (or swapped); while KV lands, a resident sequence alone
that does not fit is preempted, not ended: the landing KV's blocks are not its own.

With speculative decoding (``deployment.speculative``, :mod:`kinsim.engine.speculation`) a decoding
sequence advances in a step by its next advance on its integer trajectory (one or more tokens) instead of
one, and takes the blocks of those tokens (the verify pass's ``k + 1`` slots are scratch the step frees);
it counts ``k + 1`` tokens of the step's budget (vLLM's lookahead slots).
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kinsim.engine.decode_batch import DecodeBatch
from kinsim.engine.kv import KVLayout
from kinsim.engine.prefix_cache import PrefixCache, prompt_block_keys
from kinsim.engine.sequence import (
    DECODE,
    FINISHED,
    HANDOFF,
    INCOMING,
    LANDING,
    PREFILL,
    SWAPPED,
    UNFINISHED,
    WAITING,
    GroupState,
    Sequence,
)
from kinsim.engine.speculation import cumulative_advances, next_advance, request_tau_q, steps_to_finish
from kinsim.ops.attention import PrefillChunk
from kinsim.workload.spec import DeploymentSpec


def _key(seq: Sequence) -> tuple[float, int]:
    return seq.key


class HeadDecision(NamedTuple):
    """Admission's first decision about the waiting queue's head (all sizes in KV blocks or tokens)."""

    abort: str  #: why the head can never run (it ends unfinished), or "" when it can
    take: int  #: prompt tokens its first chunk would prefill now; 0 when it must wait
    target: int  #: tokens it will hold: prompt plus those generated before a preemption
    cached: int  #: of those, already cached by its group's shared prompt blocks
    lead_blocks: int  #: its private blocks
    blocks: int  #: blocks it needs now (with the group's shared blocks when no member holds them)
    seats: int  #: sequences that may still become resident
    available: int  #: free blocks not promised to decodes, less the watermark
    shared_tokens: int  #: prompt tokens the group holds in shared blocks once admitted
    hit_blocks: int  #: of the shared blocks, those found computed (resident or cached, in HBM or host memory)
    load_blocks: int  #: of those, found in host memory: loaded before the step


@dataclass
class Plan:
    """What the next step computes: every decoding sequence (the scheduler's :class:`DecodeBatch`, of which
    ``decode_seqs`` is the size) and the prefill chunks."""

    decode_seqs: int = 0
    chunks: list[tuple[Sequence, int]] = field(default_factory=list)
    #: Admission was not tried (the step preempted, or the queue's head arrived after the step was planned by
    #: an engine that schedules ahead), so the next step may admit: no segment beyond it.
    admission_skipped: bool = False
    #: KV blocks the decoding sequences add in the step (their next token each: ``decode_need`` when planned).
    decode_blocks: int = 0
    #: Speculative decoding: tokens the decode batch has advanced in all after each step (set when priced).
    advanced: np.ndarray | None = None
    #: What the replica needs to split the step's time among its sequences (set when priced;
    #: :meth:`kinsim.engine.replica.Replica._attribute`).
    owed: tuple | None = None

    @property
    def empty(self) -> bool:
        return not self.decode_seqs and not self.chunks

    def prefill_chunks(self) -> tuple[PrefillChunk, ...]:
        return tuple(PrefillChunk(tokens=take, cached=lead.prefill_cached + lead.prefill_done,
                                  completes_prompt=take == lead.prefill_left) for lead, take in self.chunks)


@dataclass
class DecodeSegment:
    """``steps`` decode steps of the fixed batch (the scheduler's :class:`DecodeBatch`: at step ``k`` each
    sequence has its current ``kv`` plus ``k`` tokens cached).

    Attributes:
        occupied_blocks: blocks allocated during each step, shape ``(steps,)``.
    """

    steps: int
    occupied_blocks: np.ndarray


class Scheduler:
    """The waiting queue, the resident sequences and the KV blocks of one replica."""

    def __init__(self, layout: KVLayout, deployment: DeploymentSpec,
                 on_finish: Callable[[Sequence], None] = lambda s: None, host_blocks: int = 0,
                 role: str = "both", on_handoff: Callable[[Sequence], None] | None = None,
                 max_tokens: int | None = None) -> None:
        """``host_blocks``: KV blocks of this replica that host memory holds for swapped sequences. ``role``:
        ``both`` (prefill and decode), ``prefill`` or ``decode`` (a disaggregated deployment; see the module
        docstring); ``on_handoff(seq)``: a prefill replica's sequence has its first token and leaves.
        ``max_tokens``: the generation cap every request is sent with (the workload's ``max_output_tokens``),
        which no-evict admission reserves; None: each request's own output length."""
        self.layout = layout
        self.role = role
        self.on_handoff = on_handoff
        #: Prefill role: sequences handed off, with the group and the private blocks whose KV they hold here
        #: until it has moved (:meth:`release_held`).
        self.held: dict[Sequence, tuple[GroupState, int]] = {}
        #: Decode role: sequences prefilled elsewhere, waiting for blocks (FCFS); holding blocks while their KV
        #: is in flight; arrived, to join the batch at the next step; admitted by the step being planned.
        self.incoming: list[Sequence] = []
        self.landing: list[Sequence] = []
        self.landed: list[Sequence] = []
        self._new_landings: list[tuple[Sequence, int, bool]] = []
        self.aborted = 0  # sequences ended unfinished here (planning that ends one has changed something)
        self.host_blocks = host_blocks
        self.host_used = 0  # blocks swapped sequences hold in host memory
        self.swapped: list[Sequence] = []  # FCFS order
        self._swap = deployment.preemption == "swap"
        #: The full KV lives in host memory (offloaded block top-k): host pages are a second pool.
        self._host_kv = layout.host_bytes_per_token > 0
        self._host_reserved = 0  # host pages promised to the decodes of the step being planned
        self._out_blocks = self._in_blocks = 0  # copies of the step being planned, each way
        #: Preemptions so far, by kind, and KV blocks copied to and from host memory.
        self.swap_stats = {"preempt_recompute": 0, "preempt_swap": 0, "swap_out_blocks": 0, "swap_in_blocks": 0,
                           "host_peak_blocks": 0}
        self.deployment = deployment
        #: No-evict admission (``deployment.admission``): the growth of resident sequences is promised ahead.
        #: A prefill replica's sequences never decode there, so it promises nothing beyond their prompts.
        self._no_evict = deployment.admission == "no_evict" and role != "prefill"
        self._max_tokens = max_tokens
        #: Speculative decoding (or None), and the tokens of the step's budget a decoding sequence takes.
        self._spec = deployment.speculative
        self._decode_tokens = 1 if self._spec is None else self._spec.tokens + 1
        self.on_finish = on_finish
        #: The engine plans each step while the previous one runs (``deployment.schedule_ahead``): planning
        #: admits only requests it had seen (``Sequence.seen_s``) by :attr:`admit_before` (seconds), the start of
        #: the step that just ended (set by the replica); a preempted sequence was seen long before. A decode
        #: replica's sequences come from prefill replicas, not arrivals.
        self.schedules_ahead = bool(deployment.schedule_ahead) and role != "decode"
        self.admit_before = math.inf
        self.used_blocks = 0
        self.resident: list[Sequence] = []  # admitted and not ended, in FCFS order (arrival, then order)
        #: Sequences admitted to prefill (lead a prefill), in FCFS order; planning drops those whose prefill
        #: has since completed or that left (a superset of the resident leads, so a plan does not scan resident).
        self._leads: list[Sequence] = []
        self.batch = DecodeBatch(deployment.max_num_seqs)  # the resident sequences that decode
        self._waiting: list[tuple[float, int, Sequence]] = []
        self._waiting_count = 0
        # the sequences waiting here: the heap deletes lazily, and a sequence that left for another replica
        # (a prefill replica's hand-off) may wait again there, in a state this heap's stale entry would take
        # for its own
        self._waiting_here: set[Sequence] = set()
        self.groups: dict[int | str, GroupState] = {}
        self._group_count = 0  # groups ever seen: numbers them uniquely while some are forgotten
        #: The prefix cache (``deployment.prefix_caching``), or None: blocks are freed with their last holder.
        self.cache = PrefixCache(host_tier=deployment.kv_offload != "none") if deployment.prefix_caching else None
        #: Prefills started (by a group's lead) and the prompt they would compute with nothing cached, in
        #: tokens and whole blocks, and what of it was found computed (hits) and skipped.
        self.prefix_stats = {"prefills": 0, "queried_tokens": 0, "hit_tokens": 0, "queried_blocks": 0,
                             "hit_blocks": 0, "host_hit_blocks": 0}

    # ------------------------------------------------------------------------------ queue
    @property
    def free_blocks(self) -> int:
        return self.layout.total_blocks - self.used_blocks

    @property
    def has_work(self) -> bool:
        return (bool(self.resident) or self._waiting_count > 0 or bool(self.swapped) or bool(self.incoming)
                or bool(self.landed))

    @property
    def outstanding(self) -> int:
        """Requests placed here and not yet ended (a prefill replica's handed-off ones have left)."""
        return (len(self.resident) + self._waiting_count + len(self.swapped) + len(self.incoming)
                + len(self.landing) + len(self.landed))

    @property
    def seated(self) -> int:
        """Sequences that take a seat of ``max_num_seqs``: resident, and KV landing from a prefill replica."""
        return len(self.resident) + len(self.landing) + len(self.landed)

    def group_state(self, group_id: int | str, prompt_tokens: int, hash_ids: bytes | None = None,
                    hash_block_tokens: int = 0) -> GroupState:
        """The state of group ``group_id`` on this replica (made on its first request). ``hash_ids`` and
        ``hash_block_tokens`` name its prompt's blocks for the prefix cache (else the group names them)."""
        group = self.groups.get(group_id)
        if group is None:
            self._group_count += 1
            layout = self.layout
            group = GroupState(self._group_count, prompt_tokens, layout.shared_tokens(prompt_tokens))
            if self.cache is not None and layout.shares_prompt:
                group.keys = prompt_block_keys(prompt_tokens, layout.block_size, group=group_id, hash_ids=hash_ids,
                                               hash_block_tokens=hash_block_tokens)
                group.shared_tokens = len(group.keys) * layout.block_size
            self.groups[group_id] = group
        return group

    def forget_group(self, group_id: int | str) -> None:
        """The group has ended everywhere: drop its state (its blocks were freed with its last member)."""
        self.groups.pop(group_id, None)

    def enqueue(self, seq: Sequence) -> None:
        seq.state = WAITING
        if self._spec is not None and not seq.tau_q:
            seq.tau_q = request_tau_q(self._spec, seq.request)
        heapq.heappush(self._waiting, (seq.arrival_s, seq.order, seq))
        seq.group.waiting.append(seq)
        self._waiting_count += 1
        self._waiting_here.add(seq)

    def _peek_waiting(self) -> Sequence | None:
        while self._waiting and (self._waiting[0][2].state != WAITING or self._waiting[0][2] not in self._waiting_here):
            heapq.heappop(self._waiting)
        return self._waiting[0][2] if self._waiting else None

    def _leave_waiting(self, seq: Sequence) -> None:
        self._waiting_count -= 1
        self._waiting_here.discard(seq)
        seq.group.waiting = [s for s in seq.group.waiting if s is not seq]

    def memory_counters(self) -> dict[str, int]:
        """This replica's counters of the KV memory hierarchy: the prefix statistics of its prefills
        (:attr:`prefix_stats`) and ``evicted_blocks`` (cached blocks evicted to make room)."""
        cache = self.cache
        return {**self.prefix_stats, **self.swap_stats, "evicted_blocks": 0 if cache is None else cache.evictions,
                "offload_blocks": 0 if cache is None else cache.offloaded}

    def _note_host_peak(self) -> None:
        host = self.host_used + (self.cache.host_cached if self.cache is not None else 0)
        self.swap_stats["host_peak_blocks"] = max(self.swap_stats["host_peak_blocks"], host)

    def take_transfers(self) -> tuple[int, int]:
        """KV blocks the last planned step copies to host memory and from it (swap-out, swap-in); reset."""
        moved = (self._out_blocks, self._in_blocks)
        self._out_blocks = self._in_blocks = 0
        return moved

    # ------------------------------------------------------------------------------ KV blocks
    def _private(self, tokens: int, group: GroupState) -> int:
        return self.layout.private_blocks_of(tokens, group.shared_tokens)

    def _shared_blocks(self, group: GroupState) -> int:
        return group.shared_tokens // self.layout.block_size

    def _hold_shared(self, group: GroupState, members: int) -> None:
        if group.holders == 0:
            if self.cache is None:
                self.used_blocks += self._shared_blocks(group)
            else:
                self.used_blocks += self.cache.acquire(group.keys[:self._shared_blocks(group)])
        group.holders += members

    def _evict_to_fit(self) -> None:
        """Evict cached unreferenced blocks that the used blocks now need (the cache counts them as free)."""
        cache = self.cache
        if cache is not None:
            over = self.used_blocks + cache.evictable - self.layout.total_blocks
            if over > 0:
                cache.evict(over, host_room=self.host_blocks - self.host_used)
                self._note_host_peak()

    def _release(self, seq: Sequence) -> None:
        """Free a resident sequence's blocks and its hold on the shared prompt blocks."""
        if seq.state == DECODE:
            self.batch.remove(seq)
        if self._host_kv:  # pages for the tokens it holds, or for the prompt it was admitted to prefill
            self.host_used -= max(seq.host_blocks, self._host_pages(seq.kv_tokens))
            seq.host_blocks = 0
        self.used_blocks -= seq.private_blocks
        seq.private_blocks = 0
        seq.kv_tokens = 0
        self._drop_hold(seq.group)
        self.resident.remove(seq)

    def _drop_hold(self, group: GroupState) -> None:
        """One holder less of the group's shared blocks; the last one frees them (or leaves them cached)."""
        group.holders -= 1
        if group.holders == 0:
            if self.cache is None:
                self.used_blocks -= self._shared_blocks(group)
            else:
                self.used_blocks -= self.cache.release(group.keys[:self._shared_blocks(group)])

    def decode_need(self) -> int:
        """Blocks the decoding sequences must add for one more token each (speculative: for their next
        advance each)."""
        batch = self.batch
        if not batch.n:
            return 0
        grown = batch.kv + (1 if self._spec is None else self.advances(1)[1])
        return int((self.layout.private_blocks(grown, batch.shared) - batch.blocks).sum())

    def advances(self, steps: int) -> np.ndarray:
        """Speculative decoding: tokens each decoding sequence has advanced after ``m`` more steps, ``m =
        0..steps``, shape ``(steps + 1, n)`` (:func:`~kinsim.engine.speculation.cumulative_advances`)."""
        batch = self.batch
        return cumulative_advances(batch.verify_steps, batch.tau_q, batch.output - batch.generated, steps)

    def _next_tokens(self, seq: Sequence) -> int:
        """Tokens a sequence not in the decode batch adds in its next decode step."""
        if self._spec is None:
            return 1
        return next_advance(seq.verify_steps, seq.tau_q, seq.remaining_output)

    def host_need(self) -> int:
        """Host pages the decoding sequences must add for one more token each (offloaded KV; else 0):
        those whose cached tokens fill their last page."""
        if not self._host_kv or not self.batch.n:
            return 0
        return int(np.count_nonzero(self.batch.kv % self.layout.block_size == 0))

    def _host_pages(self, tokens: int) -> int:
        """Host pages of ``tokens`` tokens of full KV (offloaded KV; else 0)."""
        return -(-tokens // self.layout.block_size) if self._host_kv else 0

    # ------------------------------------------------------------------------------ planning
    def plan(self, now: float) -> Plan:
        """Decide the next step (admitting and preempting as needed)."""
        preempted = False
        if self.landed:
            self._join_landed()
        need, host_need = self.decode_need(), self.host_need()
        while need > self.free_blocks or host_need > self.host_blocks - self.host_used:
            victim = self.resident[-1]  # the newest: resident is kept in FCFS order
            if len(self.resident) == 1 and not self.landing:  # alone, no KV in flight holding blocks: never fits
                hbm = need > self.free_blocks
                where = ("KV-cache blocks than the replica holds" if hbm else
                         "host memory pages than the replica's host share holds")
                total = f"{self.layout.total_blocks} blocks" if hbm else f"{self.host_blocks} pages"
                tokens = self.batch.kv_of(victim) if victim.state == DECODE else victim.kv_tokens
                grown = (tokens + (int(self.advances(1)[1, 0]) if self._spec is not None else 1)
                         if victim.state == DECODE else tokens + 1)
                self._abort(victim, now, f"needs more {where} ({total} of {self.layout.block_size} tokens) at "
                            f"{grown} tokens")
            else:
                self._preempt(victim)
                preempted = True
            need, host_need = self.decode_need(), self.host_need()
        self._host_reserved = host_need
        if self.swapped and not preempted:
            need = self._swap_in(need, now)
        if self.incoming and not preempted and not self.swapped:  # swapped sequences come back first
            self._admit_incoming(need, now)
        budget = self.deployment.max_num_batched_tokens - self.batch.n * self._decode_tokens
        plan = Plan(decode_seqs=self.batch.n)
        if self._leads:
            self._leads = [s for s in self._leads if s.state == PREFILL and s.prefill_target]
        for lead in self._leads:
            take = self._chunk(lead.prefill_left, budget)
            if take:
                plan.chunks.append((lead, take))
                budget -= take
        if preempted:
            plan.admission_skipped = True
        elif not self.swapped:  # swapped sequences come back before anything new is admitted
            self._admit(plan, budget, now, reserved=need)
        self._evict_to_fit()
        plan.decode_blocks = need
        return plan

    def _chunk(self, left: int, budget: int) -> int:
        if self.deployment.chunked_prefill:
            return min(left, budget)
        return left if left <= budget else 0

    def _admit(self, plan: Plan, budget: int, now: float, reserved: int) -> None:
        """Admit from the waiting queue; ``reserved`` blocks are already promised to this step's decodes."""
        while budget > 0:
            head = self._peek_waiting()
            if head is None:
                return
            if head.seen_s > self.admit_before:  # it reached the engine after this step was planned: the next
                plan.admission_skipped = True
                return
            decision = self._head_decision(head, self.free_blocks, reserved, budget)
            if decision.abort:
                self._abort(head, now, decision.abort)
                continue
            if not decision.take:
                return
            group = head.group
            target, cached, lead_blocks = decision.target, decision.cached, decision.lead_blocks
            blocks, seats, available, take = decision.blocks, decision.seats, decision.available, decision.take
            if group.holders == 0:  # the blocks it shares this time (with a prefix cache, up to what it finds)
                group.shared_tokens = decision.shared_tokens
            stats = self.prefix_stats
            stats["prefills"] += 1
            stats["queried_tokens"] += target
            stats["hit_tokens"] += cached
            stats["queried_blocks"] += group.prompt_tokens // self.layout.block_size
            stats["hit_blocks"] += decision.hit_blocks
            stats["host_hit_blocks"] += decision.load_blocks
            followers = []
            if head.generated == 0:
                follower_blocks = self._private(group.prompt_tokens, group)
                host_left = self.host_blocks - self.host_used - self._host_reserved - self._host_pages(target)
                follower_pages = self._host_pages(group.prompt_tokens)
                for other in group.waiting:
                    need = follower_blocks + (self._growth(other, follower_blocks) if self._no_evict else 0)
                    if len(followers) + 1 >= seats or blocks + need > available or follower_pages > host_left:
                        break
                    if other is not head and other.state == WAITING and other.generated == 0:
                        followers.append(other)
                        blocks += need
                        host_left -= follower_pages
            self._hold_shared(group, 1 + len(followers))
            if decision.load_blocks:  # loaded from the host tier before the step: ready when it starts
                loaded = group.keys[decision.hit_blocks - decision.load_blocks:decision.hit_blocks]
                self.cache.mark_ready(loaded)
                self.cache.touch_host(loaded)
                self._in_blocks += decision.load_blocks
            for seq, private, tokens in [(head, lead_blocks, cached)] + [
                    (f, self._private(group.prompt_tokens, group), 0) for f in followers]:
                self._leave_waiting(seq)
                seq.state = PREFILL
                seq.private_blocks = private
                seq.kv_tokens = tokens
                self.used_blocks += private
                if self._host_kv:  # its full KV's pages in host memory: the prompt (and output so far)
                    seq.host_blocks = self._host_pages(target if seq is head else group.prompt_tokens)
                    self.host_used += seq.host_blocks
                if seq.admitted_s is None:
                    seq.admitted_s = now
                bisect.insort(self.resident, seq, key=_key)
            head.prefill_target, head.prefill_cached, head.prefill_done = target, cached, 0
            bisect.insort(self._leads, head, key=_key)
            head.followers = followers
            plan.chunks.append((head, take))
            budget -= take

    def _head_decision(self, head: Sequence, free_blocks: int, reserved: int, budget: int,
                       host_free: int | None = None) -> HeadDecision:
        """What admission does first with the queue's head, given ``free_blocks`` free, ``reserved`` of them
        promised to this step's decodes and ``budget`` tokens left (and ``host_free`` host pages for
        offloaded KV; None: what is free now less this step's decodes' new pages). Changes nothing, so that
        :meth:`_admit` and the fast path's dry run (:meth:`admission_would_act`) share one rule."""
        layout, deployment, cache = self.layout, self.deployment, self.cache
        group = head.group
        target = group.prompt_tokens + head.generated
        shared_tokens = group.shared_tokens
        if group.holders > 0:  # the group's shared blocks are resident
            cached = min(shared_tokens, target - 1) if shared_tokens > 0 else 0
            resident_cached = cached
            hit_blocks = shared_tokens // layout.block_size
            load_blocks = 0
            lead_blocks = layout.private_blocks_of(target, shared_tokens)
            blocks = lead_blocks
        elif cache is None:
            cached = resident_cached = hit_blocks = load_blocks = 0
            lead_blocks = layout.private_blocks_of(target, shared_tokens)
            blocks = lead_blocks + shared_tokens // layout.block_size
        else:  # what the prefix cache holds of its prompt decides what it shares and skips
            keys = group.keys
            gpu_hits, load_blocks = cache.lookup(keys)
            hit_blocks = gpu_hits + load_blocks
            shared = cache.shareable(keys, hit_blocks)
            shared_tokens = shared * layout.block_size
            cached = min(hit_blocks * layout.block_size, target - 1)
            resident_cached = 0  # cached blocks may be evicted before it is admitted
            lead_blocks = layout.private_blocks_of(target, shared_tokens)
            blocks = lead_blocks + cache.unreferenced(keys[:shared])
        empty_need = shared_tokens // layout.block_size + lead_blocks
        seats = deployment.max_num_seqs - self.seated
        available = free_blocks - reserved - layout.watermark_blocks
        if self._no_evict:  # its whole length, and what every resident sequence still takes, must fit
            growth = self._growth(head, lead_blocks, shared_tokens)
            blocks += growth
            empty_need += growth
            # Free blocks less those promised are the same at every step of a decode segment (a block a
            # decode takes was promised), so the fast path's dry run at a later step reads them now.
            available = self.free_blocks - self._promised_blocks() - layout.watermark_blocks
        host_pages = self._host_pages(target)
        if host_free is None:
            host_free = self.host_blocks - self.host_used - self._host_reserved
        abort = ""
        if empty_need > layout.total_blocks - layout.watermark_blocks:
            tokens = (f"{group.prompt_tokens + self._reserved_output(head) - 1} tokens at full length "
                      "(admission: no_evict)") if self._no_evict else f"{target} tokens"
            abort = (f"its {tokens} need {empty_need} KV-cache blocks; the replica holds "
                     f"{layout.total_blocks} (less a {layout.watermark_blocks}-block watermark)")
        elif host_pages > self.host_blocks:
            abort = (f"its {target} tokens of offloaded KV need {host_pages} host memory pages; the replica's "
                     f"host share holds {self.host_blocks} (deployment.host_kv_fraction)")
        elif not deployment.chunked_prefill and target - resident_cached > deployment.max_num_batched_tokens:
            abort = (f"its prefill of {target - resident_cached} tokens exceeds deployment.max_num_batched_tokens "
                     f"({deployment.max_num_batched_tokens}) and chunked_prefill is off")
        take = 0
        if not abort and seats >= 1 and blocks <= available and (not host_pages or host_pages <= host_free):
            take = self._chunk(target - cached, budget)
        return HeadDecision(abort, take, target, cached, lead_blocks, blocks, seats, available, shared_tokens,
                            hit_blocks if cached else 0, load_blocks if cached else 0)

    def _reserved_output(self, seq: Sequence) -> int:
        """Output tokens no-evict admission reserves for ``seq``: the generation cap it was sent with, else its
        own output length."""
        return seq.request.output_tokens if self._max_tokens is None else self._max_tokens

    def _growth(self, seq: Sequence, blocks: int, shared_tokens: int | None = None) -> int:
        """Private blocks ``seq`` takes beyond ``blocks`` until its last reserved token, whose KV it never
        writes: ``prompt + reserved output - 1`` tokens (``shared_tokens`` of the prompt in the group's shared
        blocks; None: the group's)."""
        group = seq.group
        shared = group.shared_tokens if shared_tokens is None else shared_tokens
        final = group.prompt_tokens + self._reserved_output(seq) - 1
        return max(0, self.layout.private_blocks_of(final, shared) - blocks)

    def _promised_blocks(self) -> int:
        """No-evict admission: the blocks every resident sequence may still take until its last reserved
        token (the decoding batch's at once, in the batch's columns; a prefilling sequence holds its
        prompt's)."""
        batch = self.batch
        promised = 0
        if batch.n:
            output = batch.output if self._max_tokens is None else self._max_tokens
            final = self.layout.private_blocks(batch.kv + (output - batch.generated), batch.shared)
            promised = int((final - batch.blocks).sum())
        for seq in self.resident:
            if seq.state != DECODE:
                promised += self._growth(seq, seq.private_blocks)
        return promised

    def admission_would_act(self, free_blocks: int, reserved: int, budget: int, host_free: int | None = None) -> bool:
        """Whether planning with ``free_blocks`` free, ``reserved`` of them promised to decodes and
        ``budget`` tokens left (``host_free`` host pages, for offloaded KV) would admit the queue's head or
        end it as impossible."""
        head = self._peek_waiting()
        if head is None or budget <= 0:
            return False
        decision = self._head_decision(head, free_blocks, reserved, budget, host_free)
        return bool(decision.abort or decision.take)

    # ------------------------------------------------------------------------------ swapping
    def _swap_in_blocks(self, seq: Sequence) -> tuple[int, int]:
        """GPU blocks ``seq`` needs to resume decoding (its KV plus its next token's, with the group's
        shared blocks when no member holds them), and of those the blocks copied from host memory."""
        group = seq.group
        shared = self._shared_blocks(group) if group.holders == 0 else 0  # never while it holds them itself
        held = self.layout.private_blocks_of(seq.kv_tokens, group.shared_tokens)
        grown = self.layout.private_blocks_of(seq.kv_tokens + self._next_tokens(seq), group.shared_tokens)
        return shared + grown, shared + held

    def swap_in_would_act(self, free_blocks: int, reserved: int) -> bool:
        """Whether planning with ``free_blocks`` free, ``reserved`` of them promised to decodes, would swap
        the oldest swapped sequence back in."""
        if not self.swapped or self.seated >= self.deployment.max_num_seqs:
            return False
        need, _ = self._swap_in_blocks(self.swapped[0])
        return (need <= free_blocks - reserved - self.layout.watermark_blocks
                or not self.resident and not self.landing)

    def _swap_in(self, need: int, now: float) -> int:
        """Bring swapped sequences back, oldest first, while they fit; return the decodes' new blocks."""
        layout = self.layout
        while self.swapped and self.seated < self.deployment.max_num_seqs:
            seq = self.swapped[0]
            blocks, copied = self._swap_in_blocks(seq)
            room = self.free_blocks - need - (layout.watermark_blocks if self.resident else 0)
            if blocks > room:
                if not self.resident and not self.landing:  # nothing else holds blocks: it can never resume
                    self._abort(seq, now, f"needs {blocks} KV-cache blocks to resume from swap; the replica "
                                          f"holds {layout.total_blocks}")
                    continue
                break
            self.swapped.pop(0)
            self.host_used -= seq.host_blocks
            seq.host_blocks = 0
            group = seq.group
            if not seq.holds_shared:
                brought = group.holders == 0  # it carries the group's shared blocks back from host memory
                self._hold_shared(group, 1)
                if self.cache is not None:  # the shared blocks came back whole from host memory
                    self.cache.mark_ready(group.keys[:self._shared_blocks(group)])
                if brought:  # swapped members that let go of them when they left hold them again (the mirror
                    for other in self.swapped:  # of _swap_out): they come back without copying them
                        if other.group is group and not other.holds_shared:
                            other.holds_shared = True
                            group.holders += 1
            seq.holds_shared = False
            seq.private_blocks = layout.private_blocks_of(seq.kv_tokens, group.shared_tokens)
            self.used_blocks += seq.private_blocks
            seq.state = DECODE
            bisect.insort(self.resident, seq, key=_key)
            self.batch.add(seq)
            self._in_blocks += copied
            self.swap_stats["swap_in_blocks"] += copied
            need = self.decode_need()
        self._evict_to_fit()
        return need

    def _swap_out(self, victim: Sequence) -> bool:
        """Swap decoding ``victim`` out to host memory if the host share has room; whether it did. Its
        private blocks go, and the group's shared blocks with them when it held them last; otherwise it
        keeps its hold on them (they stay on the GPU for the members still there, and for its return)."""
        group = victim.group
        # the last of its group on the GPU (swapped members may still hold the shared blocks: they let go);
        # members whose KV is landing hold them too
        last = not any(seq.group is group for seq in [*self.resident, *self.landing] if seq is not victim)
        self.batch.remove(victim)  # writes its counters back
        carried = victim.private_blocks + (self._shared_blocks(group) if last else 0)
        if self.host_used + carried > self.host_blocks:
            self.batch.add(victim)
            return False
        cache = self.cache
        if cache is not None:  # swapped sequences come before offloaded prefix blocks in host memory
            cache.drop_host(self.host_used + cache.host_cached + carried - self.host_blocks)
        kv = victim.kv_tokens
        victim.state = SWAPPED
        if last:
            for other in self.swapped:  # the shared blocks leave with the victim; the others copy them back
                if other.group is group and other.holds_shared:
                    other.holds_shared = False
                    group.holders -= 1
            self._release(victim)
        else:
            self.used_blocks -= victim.private_blocks
            victim.private_blocks = 0
            self.resident.remove(victim)
            victim.holds_shared = True
        victim.kv_tokens = kv
        victim.host_blocks = carried
        self.host_used += carried
        self._note_host_peak()
        victim.preemptions += 1
        bisect.insort(self.swapped, victim, key=_key)
        self._out_blocks += carried
        self.swap_stats["swap_out_blocks"] += carried
        self.swap_stats["preempt_swap"] += 1
        return True

    def _preempt(self, victim: Sequence) -> None:
        if self._swap and victim.state == DECODE and self._swap_out(victim):
            return
        self.swap_stats["preempt_recompute"] += 1
        passengers = [victim]
        if victim.state == PREFILL:
            for lead in self.resident:
                if victim in lead.followers:
                    lead.followers.remove(victim)
            passengers += victim.followers
        for seq in passengers:
            self._release(seq)
            seq.preemptions += 1
            seq.prefill_target = seq.prefill_done = seq.prefill_cached = 0
            seq.followers = []
            self.enqueue(seq)

    def _abort(self, seq: Sequence, now: float, reason: str) -> None:
        if seq.state == SWAPPED:
            self.swapped.remove(seq)
            self.host_used -= seq.host_blocks
            seq.host_blocks = 0
            if seq.holds_shared:
                seq.holds_shared = False
                self._drop_hold(seq.group)
        elif seq.state == WAITING:
            heapq.heappop(self._waiting)  # it is the head
            self._leave_waiting(seq)
        elif seq.state == INCOMING:
            self.incoming.remove(seq)  # it holds nothing here yet
        else:
            for lead in self.resident:
                if seq in lead.followers:
                    lead.followers.remove(seq)
            for follower in list(seq.followers):
                self._release(follower)
                follower.state = WAITING
                follower.prefill_target = follower.prefill_done = follower.prefill_cached = 0
                self.enqueue(follower)
            seq.followers = []
            self._release(seq)
        seq.state, seq.reason, seq.finish_s = UNFINISHED, reason, now
        self.aborted += 1
        self.on_finish(seq)

    # ------------------------------------------------------------------------------ decode segments
    def decode_segment(self, max_steps: int, admission_pending: bool = False, need: int | None = None) -> DecodeSegment:
        """How many steps the decode-only batch can run before its first sequence finishes or the KV cache
        runs out (at most ``max_steps``), with the blocks allocated during each.

        ``admission_pending``: this step did not try admission (it preempted), so the segment stops after
        one step if the next step's admission would act; if it would not, it never will within the
        segment (blocks only get scarcer). ``need``: :meth:`decode_need` if known (the plan's
        ``decode_blocks``), so as not to count it again."""
        batch = self.batch
        remaining = batch.output - batch.generated
        if self._spec is not None:
            remaining = steps_to_finish(batch.verify_steps, batch.tau_q, remaining)
        limit = min(int(remaining.min()), max_steps)
        extra = self._blocks_added(limit, need)
        steps = max(min(int(np.searchsorted(extra, self.free_blocks, side="right")), limit), 1)
        host_free_then = None
        if self._host_kv:  # and before the host share runs out
            host = self._host_pages_added(limit)
            steps = max(min(int(np.searchsorted(host, self.host_blocks - self.host_used, side="right")), steps), 1)
            host_free_then = self.host_blocks - self.host_used - int(host[min(1, limit - 1)])
        if admission_pending and steps > 1:
            free_then = self.layout.total_blocks - (self.used_blocks + int(extra[0]))
            reserved = int(extra[1] - extra[0])
            if self.swapped:
                acts = self.swap_in_would_act(free_then, reserved)
            else:
                budget = self.deployment.max_num_batched_tokens - batch.n * self._decode_tokens
                acts = self.admission_would_act(free_then, reserved, budget, host_free_then)
            if acts or self.incoming_would_act(free_then, reserved):
                steps = 1
        return DecodeSegment(steps, self.used_blocks + extra[:steps])

    def _host_pages_added(self, steps: int) -> np.ndarray:
        """Host pages the batch holds beyond its current ones after each of the next ``steps`` steps
        (offloaded KV: every cached token, no window), by :meth:`_blocks_added`'s histogram."""
        size = self.layout.block_size
        kv = self.batch.kv
        counts = np.bincount(kv % size, minlength=size)
        grows = counts[_growth_index(steps, size)]
        return int(counts[0]) + np.concatenate(([0], np.cumsum(grows)))

    def _blocks_added(self, steps: int, first: int | None = None) -> np.ndarray:
        """Blocks the batch holds beyond its current ones after each of the next ``steps`` steps (shape
        ``(steps,)``, non-decreasing); ``first``: the first of them (:meth:`decode_need`) if known.

        Without a window, sequence ``i`` with ``x`` private tokens needs a new block at each step ``k``
        where ``(x + k) % block == 0``, so the count per step is a histogram of ``x % block`` read
        cyclically: ``O(n + steps)``. A window caps each sequence's blocks, so it is counted on the
        ``(steps, n)`` matrix."""
        batch = self.batch
        layout = self.layout
        if self._spec is not None:  # each step's advances differ: counted on the (steps, n) matrix
            tokens = batch.kv[None, :] + self.advances(steps)[1:]
            return (layout.private_blocks(tokens, batch.shared[None, :]) - batch.blocks[None, :]).sum(axis=1)
        if layout.window_blocks is not None:
            tokens = batch.kv[None, :] + np.arange(steps, dtype=np.int64)[:, None]
            return (layout.private_blocks(tokens + 1, batch.shared[None, :]) - batch.blocks[None, :]).sum(axis=1)
        size = layout.block_size
        private = batch.kv - batch.shared
        if first is None:
            first = int((-(-(private + 1) // size) - batch.blocks).sum())
        added = np.full(steps, first, dtype=np.int64)
        if steps > 1:
            counts = np.bincount(private % size, minlength=size)
            added[1:] += np.cumsum(counts[_growth_index(steps, size)])
        return added

    # ------------------------------------------------------------------------------ applying steps
    def apply(self, plan: Plan, steps: int, end_s: float) -> list[Sequence]:
        """Account for ``steps`` steps of ``plan`` ending at ``end_s``; return the sequences that finished."""
        batch = self.batch
        ended: list[Sequence] = []
        if plan.decode_seqs:
            if plan.decode_seqs != batch.n:
                raise RuntimeError(f"the decode batch changed between planning ({plan.decode_seqs} sequences) "
                                   f"and applying ({batch.n})")
            kv, generated, blocks = batch.kv, batch.generated, batch.blocks
            if self._host_kv:
                size = self.layout.block_size
                self.host_used += int((-(-(kv + steps) // size) + (-kv // size)).sum())
                self._note_host_peak()
            if self._spec is None:
                kv += steps
                generated += steps
                batch.advance(steps)
            else:  # each sequence's advances over the steps, on its integer trajectory
                advanced = self.advances(steps)[steps]
                kv += advanced
                generated += advanced
                batch.verify_steps[:] += steps
            now = self.layout.private_blocks(kv, batch.shared)
            self.used_blocks += int((now - blocks).sum())
            blocks[:] = now
            self._evict_to_fit()  # the blocks were taken during the steps, before any sequence ended
            done = generated >= batch.output
            if done.any():
                ended = batch.remove_where(done)
        handed: list[Sequence] = []
        for lead, take in plan.chunks:
            lead.prefill_done += take
            lead.kv_tokens = lead.prefill_cached + lead.prefill_done
            if lead.prefill_left:
                continue
            if self.cache is not None:  # its prompt's shared blocks are computed: later prompts may hit them
                self.cache.mark_ready(lead.group.keys[:self._shared_blocks(lead.group)])
            for seq in [lead, *lead.followers]:
                seq.kv_tokens = seq.group.prompt_tokens + seq.generated
                seq.generated += 1
                if seq.first_token_s is None:
                    seq.first_token_s = end_s
                if seq.generated >= seq.request.output_tokens:
                    ended.append(seq)
                elif self.role == "prefill":
                    handed.append(seq)
                else:
                    seq.state = DECODE
                    batch.add(seq)
            lead.followers = []
            lead.prefill_target = lead.prefill_done = lead.prefill_cached = 0
            # no longer one of this replica's prefills: a sequence handed to a decode replica may prefill
            # again there (recomputed after a preemption), and a stale entry here would revive with it
            self._leads.remove(lead)
        for seq in ended:
            seq.state = FINISHED  # before the release: it is no longer in the decode batch
            self._release(seq)
            seq.finish_s = end_s
            self.on_finish(seq)
        for seq in handed:
            self._hand_off(seq)
        return ended

    # ------------------------------------------------------------------------------ disaggregation
    def _hand_off(self, seq: Sequence) -> None:
        """Prefill role: ``seq`` has its first token; it leaves, its KV stays allocated until it has moved."""
        seq.state = HANDOFF
        self.held[seq] = (seq.group, seq.private_blocks)
        seq.private_blocks = 0
        self.resident.remove(seq)
        self.on_handoff(seq)

    def release_held(self, seq: Sequence) -> None:
        """Prefill role: ``seq``'s KV has moved to its decode replica (or it ended): free its blocks here."""
        group, private = self.held.pop(seq)
        self.used_blocks -= private
        self._drop_hold(group)

    def receive(self, seq: Sequence) -> None:
        """Decode role: take ``seq``, prefilled elsewhere (its ``group`` is this replica's state of its group,
        its ``kv_tokens`` and ``generated`` as the prefill left them), to admit when its KV fits."""
        seq.state = INCOMING
        self.incoming.append(seq)

    def _incoming_blocks(self, seq: Sequence) -> tuple[int, int]:
        """Blocks incoming ``seq`` needs: the group's shared prompt blocks when no member holds them, and its
        private blocks."""
        group = seq.group
        shared = self._shared_blocks(group) if group.holders == 0 else 0
        return shared, self.layout.private_blocks_of(seq.kv_tokens, group.shared_tokens)

    def incoming_would_act(self, free_blocks: int, reserved: int) -> bool:
        """Whether planning with ``free_blocks`` free, ``reserved`` of them promised to decodes, would admit
        the first incoming sequence (or end it as impossible)."""
        if not self.incoming or self.swapped:
            return False
        shared, private = self._incoming_blocks(self.incoming[0])
        layout = self.layout
        if shared + private > layout.total_blocks - layout.watermark_blocks:
            return True
        return (self.seated < self.deployment.max_num_seqs
                and shared + private <= free_blocks - reserved - layout.watermark_blocks)

    def _admit_incoming(self, need: int, now: float) -> None:
        """Admit incoming sequences FCFS while a seat and the free blocks (less the ``need`` of this step's
        decodes and the watermark) cover their KV; each then holds its blocks while its KV lands."""
        layout = self.layout
        while self.incoming:
            seq = self.incoming[0]
            shared, private = self._incoming_blocks(seq)
            if shared + private > layout.total_blocks - layout.watermark_blocks:
                self._abort(seq, now, f"its {seq.kv_tokens} tokens of KV from the prefill replica need "
                                      f"{shared + private} KV-cache blocks; the decode replica holds "
                                      f"{layout.total_blocks} (less a {layout.watermark_blocks}-block watermark)")
                continue
            if (self.seated >= self.deployment.max_num_seqs
                    or shared + private > self.free_blocks - need - layout.watermark_blocks):
                return
            self.incoming.pop(0)
            self._hold_shared(seq.group, 1)
            seq.private_blocks = private
            self.used_blocks += private
            seq.state = LANDING
            if seq.admitted_s is None:
                seq.admitted_s = now
            self.landing.append(seq)
            self._new_landings.append((seq, shared + private, shared > 0))
            self._evict_to_fit()

    def take_landings(self) -> list[tuple[Sequence, int, bool]]:
        """Sequences the last planned step admitted from :attr:`incoming`: ``(seq, blocks, carries_shared)``,
        the blocks its transfer fills and whether they include the group's shared prompt blocks; reset."""
        landings, self._new_landings = self._new_landings, []
        return landings

    def land(self, seq: Sequence) -> None:
        """Decode role: ``seq``'s KV has arrived; it joins the decode batch at the next step. The group's shared
        prompt blocks are complete here now: a later prompt (or a recompute) may hit them in the prefix cache."""
        self.landing.remove(seq)
        self.landed.append(seq)
        if self.cache is not None:
            self.cache.mark_ready(seq.group.keys[:self._shared_blocks(seq.group)])

    def _join_landed(self) -> None:
        for seq in self.landed:
            seq.state = DECODE
            bisect.insort(self.resident, seq, key=_key)
            self.batch.add(seq)
        self.landed = []


@functools.lru_cache(maxsize=8)
def _growth_residues(size: int, length: int) -> np.ndarray:
    """``(-k) % size`` for ``k = 1 .. length``, read-only (:func:`_growth_index`)."""
    index = (-np.arange(1, length + 1, dtype=np.int64)) % size
    index.flags.writeable = False
    return index


def _growth_index(steps: int, size: int) -> np.ndarray:
    """``(-k) % size`` for ``k = 1 .. steps - 1``: the residue of a sequence's private tokens that takes a
    new block at step ``k`` (:meth:`Scheduler._blocks_added`); a view of a cached array."""
    length = 4096 if steps <= 4097 else steps - 1
    return _growth_residues(size, length)[:steps - 1]
