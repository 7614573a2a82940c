"""Continuous batching for one replica, in the manner of vLLM's scheduler.

Each step, in this order:

1. **Decode first.** Every decoding sequence gets one token in the step; its KV block for that token is
   allocated now. When the free blocks do not cover them, the newest resident sequence (latest arrival,
   then latest in generation order) is preempted by *recompute*: its blocks are freed and it returns to
   the waiting queue, to prefill its prompt and the tokens generated so far again when readmitted. A
   sequence alone that still does not fit is ended unfinished.
2. **Prefills in progress** continue, oldest first, within the step's token budget
   (``max_num_batched_tokens`` minus the decoding sequences); with ``chunked_prefill`` a prompt is split
   across steps, without it a prompt runs whole or waits.
3. **Admission** from the waiting queue, first come first served with head-of-line blocking, while the
   step has budget, the batch has room (``max_num_seqs``) and the free blocks minus a watermark cover the
   newcomer's blocks. Not in a step that preempted. A newcomer that has generated nothing takes the
   other waiting members of its group with it: one prefill of the prompt, then every member decodes on
   the shared prompt blocks (see :mod:`kinsim.engine.kv`). When the group's prompt blocks are still
   resident, only the rest is computed (a prefix-cache hit).

A sequence finishes at the end of the step that produces its last token.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kinsim.engine.kv import KVLayout
from kinsim.engine.sequence import DECODE, FINISHED, PREFILL, UNFINISHED, WAITING, GroupState, Sequence
from kinsim.ops.attention import PrefillChunk
from kinsim.workload.spec import DeploymentSpec

#: Steps examined before the whole of a decode segment (see :meth:`Scheduler.decode_segment`).
SEGMENT_PROBE_STEPS = 64


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


@dataclass
class Plan:
    """What the next step computes: the decoding sequences (in FCFS order) and the prefill chunks."""

    decode: list[Sequence] = field(default_factory=list)
    chunks: list[tuple[Sequence, int]] = field(default_factory=list)
    #: Admission was not tried (the step preempted), so the next step may admit: no segment beyond it.
    admission_skipped: bool = False

    @property
    def empty(self) -> bool:
        return not self.decode and not self.chunks

    def prefill_chunks(self) -> tuple[PrefillChunk, ...]:
        return tuple(PrefillChunk(tokens=take, cached=lead.prefill_cached + lead.prefill_done,
                                  completes_prompt=take == lead.prefill_left) for lead, take in self.chunks)


@dataclass
class DecodeSegment:
    """Up to ``steps`` decode steps of a fixed batch, with per-step arrays.

    Attributes:
        context: cached tokens per step and sequence, shape ``(steps, n)``.
        occupied_blocks: blocks allocated during each step, shape ``(steps,)``.
    """

    steps: int
    context: np.ndarray
    occupied_blocks: np.ndarray


class Scheduler:
    """The waiting queue, the resident sequences and the KV blocks of one replica."""

    def __init__(self, layout: KVLayout, deployment: DeploymentSpec,
                 on_finish: Callable[[Sequence], None] = lambda s: None) -> None:
        self.layout = layout
        self.deployment = deployment
        self.on_finish = on_finish
        self.used_blocks = 0
        self.resident: list[Sequence] = []  # admitted and not ended, in FCFS order (arrival, then order)
        self._waiting: list[tuple[float, int, Sequence]] = []
        self._waiting_count = 0
        self.groups: dict[str, GroupState] = {}

    # ------------------------------------------------------------------------------ queue
    @property
    def free_blocks(self) -> int:
        return self.layout.total_blocks - self.used_blocks

    @property
    def has_work(self) -> bool:
        return bool(self.resident) or self._waiting_count > 0

    @property
    def outstanding(self) -> int:
        """Requests placed here and not yet ended."""
        return len(self.resident) + self._waiting_count

    def group_state(self, group_id: str, prompt_tokens: int) -> GroupState:
        group = self.groups.get(group_id)
        if group is None:
            group = GroupState(len(self.groups), prompt_tokens, self.layout.shared_tokens(prompt_tokens))
            self.groups[group_id] = group
        return group

    def enqueue(self, seq: Sequence) -> None:
        seq.state = WAITING
        heapq.heappush(self._waiting, (seq.arrival_s, seq.order, seq))
        seq.group.waiting.append(seq)
        self._waiting_count += 1

    def _peek_waiting(self) -> Sequence | None:
        while self._waiting and self._waiting[0][2].state != WAITING:
            heapq.heappop(self._waiting)
        return self._waiting[0][2] if self._waiting else None

    def _leave_waiting(self, seq: Sequence) -> None:
        self._waiting_count -= 1
        seq.group.waiting = [s for s in seq.group.waiting if s is not seq]

    # ------------------------------------------------------------------------------ KV blocks
    def _private(self, tokens: int, group: GroupState) -> int:
        return self.layout.private_blocks_of(tokens, group.shared_tokens)

    def _shared_blocks(self, group: GroupState) -> int:
        return group.shared_tokens // self.layout.block_size

    def _hold_shared(self, group: GroupState, members: int) -> None:
        if group.holders == 0:
            self.used_blocks += self._shared_blocks(group)
        group.holders += members

    def _release(self, seq: Sequence) -> None:
        """Free a resident sequence's blocks and its hold on the shared prompt blocks."""
        self.used_blocks -= seq.private_blocks
        seq.private_blocks = 0
        seq.kv_tokens = 0
        group = seq.group
        group.holders -= 1
        if group.holders == 0:
            self.used_blocks -= self._shared_blocks(group)
        self.resident.remove(seq)

    def _decode_need(self, decode: list[Sequence]) -> int:
        """Blocks the decoding sequences must add for one more token each."""
        if self.layout.window_blocks is not None:
            return sum(self._private(s.kv_tokens + 1, s.group) - s.private_blocks for s in decode)
        block = self.layout.block_size  # the arithmetic of KVLayout.private_blocks_of, inlined (hot path)
        return sum(-((s.group.shared_tokens - s.kv_tokens - 1) // block) - s.private_blocks for s in decode)

    # ------------------------------------------------------------------------------ planning
    def plan(self, now: float) -> Plan:
        """Decide the next step (admitting and preempting as needed)."""
        preempted = False
        decode = self._decoding()
        need = self._decode_need(decode)
        while need > self.free_blocks:
            victim = self.resident[-1]  # the newest: resident is kept in FCFS order
            if len(self.resident) == 1:
                self._abort(victim, now, "needs more KV-cache blocks than the replica holds "
                            f"({self.layout.total_blocks} blocks of {self.layout.block_size} tokens) at "
                            f"{victim.kv_tokens + 1} tokens")
            else:
                self._preempt(victim)
                preempted = True
            decode = self._decoding()
            need = self._decode_need(decode)
        budget = self.deployment.max_num_batched_tokens - len(decode)
        plan = Plan(decode=decode)
        for lead in [s for s in self.resident if s.state == PREFILL and s.prefill_target]:
            take = self._chunk(lead.prefill_left, budget)
            if take:
                plan.chunks.append((lead, take))
                budget -= take
        if preempted:
            plan.admission_skipped = True
        else:
            self._admit(plan, budget, now, reserved=need)
        return plan

    def _decoding(self) -> list[Sequence]:
        return [s for s in self.resident if s.state == DECODE]  # resident is kept in FCFS order

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
            decision = self._head_decision(head, self.free_blocks, reserved, budget)
            if decision.abort:
                self._abort(head, now, decision.abort)
                continue
            if not decision.take:
                return
            group = head.group
            target, cached, lead_blocks = decision.target, decision.cached, decision.lead_blocks
            blocks, seats, available, take = decision.blocks, decision.seats, decision.available, decision.take
            followers = []
            if head.generated == 0:
                follower_blocks = self._private(group.prompt_tokens, group)
                for other in group.waiting:
                    if len(followers) + 1 >= seats or blocks + follower_blocks > available:
                        break
                    if other is not head and other.state == WAITING and other.generated == 0:
                        followers.append(other)
                        blocks += follower_blocks
            self._hold_shared(group, 1 + len(followers))
            for seq, private, tokens in [(head, lead_blocks, cached)] + [
                    (f, self._private(group.prompt_tokens, group), 0) for f in followers]:
                self._leave_waiting(seq)
                seq.state = PREFILL
                seq.private_blocks = private
                seq.kv_tokens = tokens
                self.used_blocks += private
                if seq.admitted_s is None:
                    seq.admitted_s = now
                bisect.insort(self.resident, seq, key=_key)
            head.prefill_target, head.prefill_cached, head.prefill_done = target, cached, 0
            head.followers = followers
            plan.chunks.append((head, take))
            budget -= take

    def _head_decision(self, head: Sequence, free_blocks: int, reserved: int, budget: int) -> HeadDecision:
        """What admission does first with the queue's head, given ``free_blocks`` free, ``reserved`` of them
        promised to this step's decodes and ``budget`` tokens left. Changes nothing, so that
        :meth:`_admit` and the fast path's dry run (:meth:`admission_would_act`) share one rule."""
        layout, deployment = self.layout, self.deployment
        group = head.group
        target = group.prompt_tokens + head.generated
        cached = min(group.shared_tokens, target - 1) if group.holders > 0 and group.shared_tokens > 0 else 0
        lead_blocks = self._private(target, group)
        empty_need = self._shared_blocks(group) + lead_blocks
        blocks = lead_blocks + (self._shared_blocks(group) if group.holders == 0 else 0)
        seats = deployment.max_num_seqs - len(self.resident)
        available = free_blocks - reserved - layout.watermark_blocks
        abort = ""
        if empty_need > layout.total_blocks - layout.watermark_blocks:
            abort = (f"its {target} tokens need {empty_need} KV-cache blocks; the replica holds "
                     f"{layout.total_blocks} (less a {layout.watermark_blocks}-block watermark)")
        elif not deployment.chunked_prefill and target - cached > deployment.max_num_batched_tokens:
            abort = (f"its prefill of {target - cached} tokens exceeds deployment.max_num_batched_tokens "
                     f"({deployment.max_num_batched_tokens}) and chunked_prefill is off")
        take = 0
        if not abort and seats >= 1 and blocks <= available:
            take = self._chunk(target - cached, budget)
        return HeadDecision(abort, take, target, cached, lead_blocks, blocks, seats, available)

    def admission_would_act(self, free_blocks: int, reserved: int, budget: int) -> bool:
        """Whether planning with ``free_blocks`` free, ``reserved`` of them promised to decodes and
        ``budget`` tokens left would admit the queue's head or end it as impossible."""
        head = self._peek_waiting()
        if head is None or budget <= 0:
            return False
        decision = self._head_decision(head, free_blocks, reserved, budget)
        return bool(decision.abort or decision.take)

    def _preempt(self, victim: Sequence) -> None:
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
        if seq.state == WAITING:
            heapq.heappop(self._waiting)  # it is the head
            self._leave_waiting(seq)
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
        self.on_finish(seq)

    # ------------------------------------------------------------------------------ decode segments
    def decode_segment(self, decode: list[Sequence], max_steps: int, admission_pending: bool = False) -> DecodeSegment:
        """How many steps the decode-only batch ``decode`` can run before its first sequence finishes or
        the KV cache runs out (at most ``max_steps``), with the per-step contexts and block occupancy.

        ``admission_pending``: this step did not try admission (it preempted), so the segment stops after
        one step if the next step's admission would act; if it would not, it never will within the
        segment (blocks only get scarcer)."""
        kv = np.fromiter((s.kv_tokens for s in decode), dtype=np.int64, count=len(decode))
        shared = np.fromiter((s.group.shared_tokens for s in decode), dtype=np.int64, count=len(decode))
        held = np.fromiter((s.private_blocks for s in decode), dtype=np.int64, count=len(decode))
        limit = min(min(s.remaining_output for s in decode), max_steps)
        # When the cache may run out, look a little ahead first: the segment is then often short, and the
        # arrays for the whole limit would be mostly wasted. Each sequence adds at most limit // block + 1
        # blocks over the limit, so with that many free the cache cannot run out.
        roomy = self.free_blocks >= len(decode) * (limit // self.layout.block_size + 1)
        for horizon in ((limit,) if roomy else (min(limit, SEGMENT_PROBE_STEPS), limit)):
            offsets = np.arange(horizon, dtype=np.int64)[:, None]
            tokens = kv[None, :] + offsets
            extra = (self.layout.private_blocks(tokens + 1, shared[None, :]) - held[None, :]).sum(axis=1)
            steps = int(np.searchsorted(extra, self.free_blocks, side="right"))
            if steps < horizon:
                break
        steps = max(min(steps, horizon), 1)
        if admission_pending and steps > 1:
            free_then = self.layout.total_blocks - (self.used_blocks + int(extra[0]))
            if self.admission_would_act(free_then, int(extra[1] - extra[0]),
                                        self.deployment.max_num_batched_tokens - len(decode)):
                steps = 1
        return DecodeSegment(steps, tokens[:steps].astype(float), self.used_blocks + extra[:steps])

    # ------------------------------------------------------------------------------ applying steps
    def apply(self, plan: Plan, steps: int, end_s: float) -> list[Sequence]:
        """Account for ``steps`` steps of ``plan`` ending at ``end_s``; return the sequences that finished."""
        ended = []
        private = self._private
        block = self.layout.block_size
        windowed = self.layout.window_blocks is not None
        added = 0
        for seq in plan.decode:
            seq.kv_tokens += steps
            seq.generated += steps
            # KVLayout.private_blocks_of, inlined without a window (hot path)
            blocks = private(seq.kv_tokens, seq.group) if windowed else \
                -((seq.group.shared_tokens - seq.kv_tokens) // block)
            added += blocks - seq.private_blocks
            seq.private_blocks = blocks
            if seq.generated >= seq.request.output_tokens:
                ended.append(seq)
        self.used_blocks += added
        for lead, take in plan.chunks:
            lead.prefill_done += take
            lead.kv_tokens = lead.prefill_cached + lead.prefill_done
            if lead.prefill_left:
                continue
            for seq in [lead, *lead.followers]:
                seq.kv_tokens = seq.group.prompt_tokens + seq.generated
                seq.generated += 1
                seq.state = DECODE
                if seq.first_token_s is None:
                    seq.first_token_s = end_s
                if seq.generated >= seq.request.output_tokens:
                    ended.append(seq)
            lead.followers = []
            lead.prefill_target = lead.prefill_done = lead.prefill_cached = 0
        for seq in ended:
            self._release(seq)
            seq.state, seq.finish_s = FINISHED, end_s
            self.on_finish(seq)
        return ended
