"""A request's state inside a replica, and the state a replica keeps per group of requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from kinsim.workload.request import Request

WAITING, PREFILL, DECODE, FINISHED, UNFINISHED = "waiting", "prefill", "decode", "finished", "unfinished"
#: A decoding sequence preempted by swapping: its KV waits in host memory to be copied back.
SWAPPED = "swapped"
#: Disaggregation: prefilled on a prefill replica, its KV held there until it has moved to a decode replica
#: (``HANDOFF`` on the prefill side); on the decode side waiting for blocks (``INCOMING``), then holding blocks
#: while its KV is in flight (``LANDING``).
HANDOFF, INCOMING, LANDING = "handoff", "incoming", "landing"


@dataclass(eq=False)
class GroupState:
    """A group (a Best-of-N problem) on one replica.

    Attributes:
        index: small integer naming the group within the replica (for the prefix-shared-read kernel).
        prompt_tokens: the group's prompt length, tokens.
        shared_tokens: prompt tokens held in shared blocks (whole blocks only).
        holders: resident members holding the shared blocks; the blocks are freed when it drops to 0.
        waiting: members waiting for admission (some may have left; check their state).
        keys: names of the prompt's whole blocks in the replica's prefix cache (empty without one).
        carrier: see the field.
    """

    index: int
    prompt_tokens: int
    shared_tokens: int
    holders: int = 0
    waiting: list[Sequence] = field(default_factory=list)
    keys: tuple = ()
    #: Disaggregation, decode side: the KV transfer in flight that carries the group's shared prompt blocks
    #: (members landing by other transfers wait for it), or None.
    carrier: object | None = None


@dataclass(eq=False, slots=True)
class Sequence:
    """One request being served.

    Token accounting: a sequence that has generated ``generated`` tokens holds ``kv_tokens = prompt +
    generated - 1`` tokens in its KV cache while decoding (the newest token's K and V are written by the
    next step). A prefill of ``prompt + generated`` tokens (the whole prompt, or prompt and output again
    after a preemption) produces the next token.
    """

    request: Request
    order: int
    group: GroupState
    arrival_s: float
    state: str = WAITING
    generated: int = 0
    kv_tokens: int = 0
    private_blocks: int = 0
    prefill_target: int = 0
    prefill_done: int = 0
    prefill_cached: int = 0
    followers: list[Sequence] = field(default_factory=list)
    admitted_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0
    #: KV blocks it holds in host memory: while swapped; or, for offloaded KV, the pages taken at admission
    #: (the prefill's tokens; a decoding sequence holds the pages of its cached tokens, counted in the batch)
    host_blocks: int = 0
    holds_shared: bool = False  #: swapped while other members held the group's shared blocks: it keeps its hold
    reason: str | None = None
    replica: int = -1
    #: Speculative decoding: verify steps done so far (kept through preemptions: it fixes where the sequence
    #: is on its integer trajectory of advances), and its expected tokens per verify step x 2**20
    #: (:mod:`kinsim.engine.speculation`); 0 without speculation.
    verify_steps: int = 0
    tau_q: int = 0
    #: Its share of the GPU time of the steps it took part in so far, GPU-seconds
    #: (:mod:`kinsim.engine.attribution`).
    gpu_s: float = 0.0
    #: When the engine of its replica saw it (seconds: its arrival plus the serving frontend's time), which an
    #: engine that plans a step ahead compares with when it planned (``Scheduler.admit_before``).
    seen_s: float = 0.0

    @property
    def key(self) -> tuple[float, int]:
        """FCFS priority: earlier arrival first, then generation order."""
        return (self.arrival_s, self.order)

    @property
    def remaining_output(self) -> int:
        return self.request.output_tokens - self.generated

    @property
    def prefill_left(self) -> int:
        """Prefill tokens still to compute (for a sequence that leads a prefill)."""
        return self.prefill_target - self.prefill_cached - self.prefill_done
