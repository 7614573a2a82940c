"""Workloads as frozen, validated data: which model, deployed how, with which attention policy, serving
which requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from kinsim.errors import SpecError
from kinsim.limits import MAX_REQUESTS, MAX_TIME_S, MAX_TIME_WORDS, MAX_TOKENS, MAX_TOTAL_GPUS
from kinsim.model.spec import ModelSpec
from kinsim.releases import release_number, release_of
from kinsim.schema import (
    at_least,
    at_most,
    check_fields,
    fraction,
    non_empty,
    non_negative,
    one_of,
    positive,
    spec_field,
)
from kinsim.workload.distributions import LengthDistribution, length_field

#: Values of a trace's ``format`` (kept in step with :data:`kinsim.workload.formats.FORMATS`).
TRACE_FORMATS = ("auto", "kinsim", "azure", "burstgpt", "mooncake")

#: Request placement policies of ``deployment.router`` (see :mod:`kinsim.engine.router`).
ROUTERS = ("group_affinity", "least_loaded", "round_robin")

#: Serving engines with a per-step overhead preset (see :mod:`kinsim.cost.engine_overhead`).
ENGINES = ("vllm", "sglang", "trtllm", "none")

#: Admission policies of ``deployment.admission`` (see :mod:`kinsim.engine.scheduler`).
ADMISSIONS = ("greedy", "no_evict")

#: Each engine's scheduling defaults, ``(chunked_prefill, admission)``, taken where a workload leaves them out.
#: vLLM V1 and SGLang split long prompts into chunks and admit a request as soon as its prompt's KV fits,
#: preempting the newest when the running ones outgrow the cache. TensorRT-LLM's PyTorch backend does not
#: chunk (``TorchLlmArgs.enable_chunked_prefill`` defaults to false) and admits a request only when it and
#: every running request can reach their full length without eviction (``SchedulerConfig.
#: capacity_scheduler_policy`` defaults to ``GUARANTEED_NO_EVICT``). SGLang's admission reserves a decaying
#: share of the running requests' remaining tokens (``new_token_ratio``); kinsim does not model that share and
#: admits greedily.
ENGINE_SCHEDULING: dict[str, tuple[bool, str]] = {
    "vllm": (True, "greedy"),
    "sglang": (True, "greedy"),
    "trtllm": (False, "no_evict"),
    "none": (True, "greedy"),
}

#: The first vLLM release that schedules asynchronously by default (v0.14.0, January 2026, whose release notes
#: say "Async scheduling is now enabled by default": vllm-project/vllm#27614): its engine core prepares step
#: n + 1 while the GPU runs step n.
VLLM_ASYNC_FROM = (0, 14)


def vllm_schedules_async(version: str | None) -> bool:
    """Whether vLLM release ``version`` schedules asynchronously by default (from :data:`VLLM_ASYNC_FROM`; no
    release given: the preset's, 0.12, does not)."""
    return version is not None and (release_of(version) or (0, 0)) >= VLLM_ASYNC_FROM


def schedules_ahead(engine: str, version: str | None = None) -> bool:
    """Whether ``engine`` at release ``version`` plans each step while the previous one runs on the GPU (the
    default of ``deployment.schedule_ahead``): vLLM from :data:`VLLM_ASYNC_FROM` (async scheduling), SGLang
    (its overlap scheduler, the default since 0.4) and TensorRT-LLM (its PyTorch backend's overlap scheduler,
    the default in 1.x); not vLLM before 0.14 (or with no release given, whose preset is 0.12's) nor ``none``."""
    if engine == "vllm":
        return vllm_schedules_async(version)
    return engine in ("sglang", "trtllm")


#: Caps on sizes (reasons in :mod:`kinsim.limits`).
_TOKENS = at_most(MAX_TOKENS, "tokens: kinsim's cap, 2**24")
_REQUESTS = at_most(MAX_REQUESTS, "kinsim's cap on requests")
_GPUS = at_most(MAX_TOTAL_GPUS, "kinsim's cap on GPUs")



def _finite_interval(rate: float) -> str | None:
    if rate * MAX_TIME_S >= 1:
        return None
    return (f"must be at least {1 / MAX_TIME_S:.3g} /s: the mean interval 1/rate must be at most "
            f"{MAX_TIME_S:,.0f} s, the latest arrival kinsim simulates")

# ------------------------------------------------------------------------------------- deployment


@dataclass(frozen=True, kw_only=True)
class RoleSpec:
    """The replicas of one role of a disaggregated deployment (prefill or decode)."""

    replicas: int = spec_field("Replicas of this role.", default=1, check=(at_least(1), _GPUS))
    tensor_parallel: int | None = spec_field("GPUs per replica of this role; none: deployment.tensor_parallel.",
                                             default=None, check=(at_least(1), _GPUS))
    hardware: str | None = spec_field(
        "Hardware file of this role's GPUs, relative to the workload file; none: the run's --hw. A role on its "
        "own hardware is a separate cluster: its KV reaches the other role over both clusters' networks "
        "(cluster.network of each file).", default=None, check=non_empty)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class DisaggregationSpec:
    """Prefill and decode on separate replicas (as vLLM's and SGLang's prefill/decode disaggregation,
    DistServe, Mooncake): a request is prefilled on a prefill replica, which produces its first token; its
    KV then moves to a decode replica over the links between their GPUs, and it decodes there. The prefill
    replicas come first in the GPU order, then the decode replicas."""

    prefill: RoleSpec = spec_field("Prefill replicas: count and tensor parallelism.", default=RoleSpec())
    decode: RoleSpec = spec_field("Decode replicas: count and tensor parallelism.", default=RoleSpec())

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class DeploymentSpec:
    """How the model is laid on the GPUs and how the serving engine batches."""

    tensor_parallel: int = spec_field("GPUs that split every layer (one replica).", default=1,
                                      check=(at_least(1), _GPUS))
    data_parallel: int = spec_field("Independent replicas; requests are routed among them.", default=1,
                                    check=(at_least(1), _GPUS))
    expert_parallel: int = spec_field("GPUs of a replica that split the experts of an MoE layer (1: "
                                      "experts are split like every other weight, by tensor "
                                      "parallelism).", default=1, check=(at_least(1), _GPUS))
    attention_data_parallel: int = spec_field(
        "Groups of a replica's tensor_parallel GPUs that each run attention and the layers other than the "
        "experts for their own share of the sequences, with the heads split over tensor_parallel / "
        "attention_data_parallel GPUs and those weights copied in each group, while the experts stay split "
        "over all the replica's GPUs (data-parallel attention, as vLLM and SGLang run MoE models; "
        "docs/cost-model.md). 1: attention is tensor-parallel over all of them.", default=1,
        check=(at_least(1), _GPUS))
    max_num_seqs: int = spec_field("Most sequences in one step's batch.", default=256, check=(at_least(1), _REQUESTS))
    max_num_batched_tokens: int = spec_field("Most tokens (prefill and decode) in one step.",
                                             default=8192, check=(at_least(1), _TOKENS))
    chunked_prefill: bool | None = spec_field(
        "Split long prompts into chunks mixed with decode steps; absent: the engine's default (true for vllm, "
        "sglang and none; false for trtllm, as TensorRT-LLM's enable_chunked_prefill).", default=None)
    admission: str | None = spec_field(
        "When a waiting request is admitted: greedy (as soon as the free KV blocks cover its prompt; running "
        "sequences that outgrow the cache preempt the newest, as vLLM and SGLang) or no_evict (only when the "
        "free blocks cover its whole length, prompt and output, and the rest of every running sequence's, "
        "so that nothing is ever preempted, as TensorRT-LLM's GUARANTEED_NO_EVICT; the whole length "
        "reserves the workload's max_output_tokens, the max_tokens a client sends, or a trace's own output "
        "length where it sets no cap). Absent: the engine's default (no_evict for trtllm, greedy "
        "otherwise).", default=None, check=one_of(*ADMISSIONS))
    schedule_ahead: bool | None = spec_field(
        "The engine plans each step while the previous one runs on the GPU (vLLM's async scheduling, SGLang's "
        "and TensorRT-LLM's overlap scheduler), so a request that arrives during a step joins the batch at the "
        "step after the next. Absent: the engine's default (true for sglang, trtllm and vllm from "
        "engine_version 0.14; false for vllm before, or without engine_version, and none).", default=None)
    kv_block_size: int = spec_field("Tokens per paged KV-cache block.", default=16, check=(at_least(1), _TOKENS))
    gpu_memory_fraction: float | None = spec_field(
        "Share of GPU memory the serving engine budgets, as the engine reads it: vllm's "
        "gpu_memory_utilization (weights, activations and KV), sglang's mem_fraction_static (weights and KV), "
        "trtllm's kv_cache_free_gpu_memory_fraction (KV, of what weights and activations leave); "
        "kinsim.engine.memory_budget. Absent: the engine's default (0.9; sglang's derived from the GPU's "
        "memory, about 0.83 on 80 GiB).", default=None, check=fraction)
    kv_cache_memory: float | None = spec_field(
        "KV-cache bytes per GPU, as read from a server's log (vLLM's 'Available KV cache memory', its "
        "--kv-cache-memory): replaces the engine's budget (gpu_memory_fraction and kinsim.engine.memory_budget's "
        "estimate of weights, activations and buffers). Absent: estimated.", unit="bytes", default=None,
        check=positive, example="40 GiB")
    router: str = spec_field(
        "How requests are placed on replicas: group_affinity (a group's requests share one replica), "
        "least_loaded (fewest outstanding requests) or round_robin.", default="group_affinity",
        check=one_of(*ROUTERS))
    prefix_shared_read: bool = spec_field(
        "Decode attention reads a shared prompt's KV once per group of sequences rather than once per "
        "sequence (common paged kernels read it per sequence).", default=False)
    prefix_caching: bool = spec_field(
        "Automatic prefix caching: a prompt's whole KV blocks stay cached, named by content (the trace's "
        "hash_ids, else the group), after their last request ends, and are evicted least recently used "
        "when the space is needed; a prompt that starts with cached blocks skips their prefill. Off: a "
        "group's prompt blocks are shared only while one of its requests is resident.", default=False)
    preemption: str = spec_field(
        "What a preempted decoding sequence does: recompute (its KV is dropped; it prefills prompt and output "
        "again when readmitted) or swap (its KV blocks are copied to host memory over the host link and back "
        "when it resumes, as vLLM's swap space; falls back to recompute when the host share is full).",
        default="recompute", check=one_of("recompute", "swap"))
    host_kv_fraction: float = spec_field(
        "Share of the node's host memory given to KV (swapped sequences, offloaded prefix blocks), split "
        "evenly among the node's GPUs.", default=0.5, check=fraction)
    kv_offload: str = spec_field(
        "Host memory as a second tier of the prefix cache: none, or lru (cached prompt blocks evicted from "
        "HBM are written to the host share, whose oldest blocks go first; a prompt that starts with blocks "
        "found there loads them over the host link instead of computing them, as LMCache's CPU offload). "
        "Needs prefix_caching.", default="none", check=one_of("none", "lru"))
    allreduce: str = spec_field(
        "Tensor-parallel all-reduce implementation: nccl, custom (the serving engine's one-shot/two-shot "
        "all-reduce) or auto (custom for buffers up to 8 MiB on 2, 4, 6 or 8 GPUs of one NVLink node, as "
        "vLLM chooses). Matters where the calibration profile has terms for it.", default="auto",
        check=one_of("nccl", "custom", "auto"))
    engine: str = spec_field(
        "Serving engine whose per-step host overhead (scheduling, sampling bookkeeping, detokenization) is "
        "added to every step: vllm, sglang, trtllm, or none.", default="vllm", check=one_of(*ENGINES))
    engine_version: str | None = spec_field(
        "Release of the serving engine, as a string ('0.18.0'): vllm from 0.14 on schedules asynchronously "
        "(the fixed host time of a step hidden behind the kernels), an overhead preset of its own "
        "(kinsim.cost.engine_overhead). Absent: the preset of the releases the engine's rows ran (vllm 0.12, "
        "sglang 0.5, trtllm 1.0).", default=None, check=release_number, example="0.18.0")
    frontend_s: float | None = spec_field(
        "Time a request spends in the serving frontend (HTTP, tokenization, hand-off) before the engine "
        "admits it, counted in its TTFT; absent: the engine's preset (vllm 6.8 ms, 26.8 ms from 0.14, sglang 120.2 ms, "
        "trtllm 102.3 ms, none 0; fitted in docs/calibration.md).", unit="time", default=None,
        check=non_negative, example="20 ms")
    disaggregation: DisaggregationSpec | None = spec_field(
        "Prefill and decode on separate replicas, with each request's KV moved between them (see "
        "docs/disaggregation.md); none: every replica does both. Replaces data_parallel (which must stay 1).",
        default=None)
    speculative: SpeculativeSpec | None = spec_field(
        "Speculative decoding: draft tokens, verify them with the target (docs/speculative.md); absent: off.",
        default=None)

    def __post_init__(self) -> None:
        check_fields(self)
        chunked, admission = ENGINE_SCHEDULING[self.engine]
        if self.chunked_prefill is None:  # the engine's defaults, resolved once (replace() keeps them)
            object.__setattr__(self, "chunked_prefill", chunked)
        if self.admission is None:
            object.__setattr__(self, "admission", admission)
        if self.schedule_ahead is None:
            object.__setattr__(self, "schedule_ahead", schedules_ahead(self.engine, self.engine_version))
        if self.disaggregation is not None and self.data_parallel != 1:
            raise SpecError("must be 1 with disaggregation: the roles give the replicas "
                            "(disaggregation.prefill.replicas, disaggregation.decode.replicas)",
                            path="data_parallel", value=self.data_parallel)
        if self.tensor_parallel % self.attention_data_parallel:
            raise SpecError(f"must divide tensor_parallel ({self.tensor_parallel}): each attention group holds "
                            "tensor_parallel / attention_data_parallel GPUs", path="attention_data_parallel",
                            value=self.attention_data_parallel)
        if self.attention_data_parallel > 1 and (self.disaggregation is not None or self.speculative is not None):
            raise SpecError("data-parallel attention is modelled without disaggregation and speculative decoding",
                            path="attention_data_parallel", value=self.attention_data_parallel)
        if self.kv_offload != "none" and not self.prefix_caching:
            raise SpecError("needs prefix_caching: true (the host tier holds blocks the prefix cache evicts)",
                            path="kv_offload", value=self.kv_offload)


# ------------------------------------------------------------------------------------- attention


@dataclass(frozen=True, kw_only=True)
class DenseAttention:
    """Every step reads the whole KV cache of each sequence."""

    TAG_KEY: ClassVar[str] = "policy"
    KIND: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class BlockTopKAttention:
    """Block top-k sparse attention (Kinetics): KV in blocks summarised by their mean key; each step
    scores all summaries and reads only the top-k blocks plus the local window and sink tokens. The KV
    footprint is unchanged: every block stays resident, unless ``offload``: then the full KV lives in host
    memory, HBM keeps every block's summary, the sink, the local window, the last incomplete block and a
    cache of ``gpu_cache_blocks`` recently selected blocks per sequence, and each step fetches the selected
    blocks the cache misses over the host link (:mod:`kinsim.ops.offload`)."""

    TAG_KEY: ClassVar[str] = "policy"
    KIND: ClassVar[str] = "block_topk"
    block_size: int = spec_field("Tokens per selection block.", default=16, check=(at_least(1), _TOKENS))
    top_k: int = spec_field("Blocks selected per step and KV head.", default=64, check=(at_least(1), _TOKENS))
    local_window: int = spec_field("Most recent tokens always read.", default=0, check=(non_negative, _TOKENS))
    sink_tokens: int = spec_field("First tokens always read (attention sinks).", default=0,
                                  check=(non_negative, _TOKENS))
    offload: bool = spec_field(
        "The full KV lives in host memory; HBM keeps the block summaries, the sink tokens, the local window, "
        "the last incomplete block and the GPU cache, and each decode step fetches the selected blocks the "
        "cache misses over the host link (before each layer's attention: the fetch adds to the step's time).",
        default=False)
    gpu_cache_blocks: int = spec_field(
        "With offload: selection blocks (block_size tokens, every layer and KV head) of recently selected KV "
        "that each sequence keeps in HBM.", default=0, check=(non_negative, _TOKENS))
    cache_hit_rate: float = spec_field(
        "With offload: share of the selected blocks found in the GPU cache (a parameter: kinsim does not "
        "simulate which blocks attention selects). Needs gpu_cache_blocks > 0.", default=0.0,
        check=non_negative)

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.offload and self.gpu_cache_blocks:
            raise SpecError("needs offload: true (without offload every block is resident)",
                            path="gpu_cache_blocks", value=self.gpu_cache_blocks)
        if self.cache_hit_rate > 1:
            raise SpecError("must be in [0, 1]", path="cache_hit_rate", value=self.cache_hit_rate)
        if self.cache_hit_rate and not self.gpu_cache_blocks:
            raise SpecError("must be 0 when gpu_cache_blocks is 0 (no cache, no hits)", path="cache_hit_rate",
                            value=self.cache_hit_rate)

    @property
    def token_budget(self) -> int:
        """Most KV tokens one step reads per sequence: top_k x block_size + local_window + sink_tokens."""
        return self.top_k * self.block_size + self.local_window + self.sink_tokens


@dataclass(frozen=True, kw_only=True)
class TopKAttention:
    """Oracle token top-k: each step reads the ``token_budget`` most relevant tokens, with no cost of
    finding them (an upper bound on what sparse attention can save)."""

    TAG_KEY: ClassVar[str] = "policy"
    KIND: ClassVar[str] = "topk"
    token_budget: int = spec_field("KV tokens read per step and sequence.", check=(at_least(1), _TOKENS))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class SlidingWindowAttention:
    """Each step reads the last ``window`` tokens (plus sink tokens); older KV is evicted, so the
    footprint is bounded too."""

    TAG_KEY: ClassVar[str] = "policy"
    KIND: ClassVar[str] = "sliding_window"
    window: int = spec_field("Most recent tokens kept and read.", check=(at_least(1), _TOKENS))
    sink_tokens: int = spec_field("First tokens kept and read.", default=0, check=(non_negative, _TOKENS))

    def __post_init__(self) -> None:
        check_fields(self)


AttentionPolicy = DenseAttention | BlockTopKAttention | TopKAttention | SlidingWindowAttention

# ------------------------------------------------------------------------------------- speculative decoding

#: Most draft tokens per verify step (``deployment.speculative.tokens``): published systems draft at most a
#: few dozen; a verify step's token count (``max_num_seqs x (tokens + 1)``) must fit the step's budget.
MAX_DRAFT_TOKENS = 64

#: Values of ``deployment.speculative.acceptance_model``.
ACCEPTANCE_MODELS = ("geometric", "constant")


def _acceptance_rule(value: Any) -> str | None:
    """``acceptance``: a rate in [0, 1] or the word ``trace``."""
    if value == "trace" and isinstance(value, str):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number in [0, 1] or trace (a per-request column acceptance of the trace)"
    if not 0 <= value <= 1:
        return "must be in [0, 1]"
    return None


@dataclass(frozen=True, kw_only=True)
class SpeculativeSpec:
    """Speculative decoding (see docs/speculative.md): every decode step becomes ``tokens`` draft passes and
    one verify pass of the target over ``tokens + 1`` positions per sequence; each sequence advances by the
    tokens its expected (or traced) acceptance gives, in whole tokens on a fixed integer trajectory."""

    draft: ModelSpec | None = spec_field(
        "The draft model: self (or absent) drafts with the target model itself under draft_attention, reading "
        "the target's own KV cache (self-speculation, as MagicDec); or a model as model: accepts (a preset name, "
        "{preset: NAME, ...}, {config: path/to/config.json}), run with dense attention and its own KV cache "
        "(its KV bytes per token are added to every cached token, its weights taken from the KV memory).",
        default=None)
    draft_attention: AttentionPolicy = spec_field(
        "Attention policy of a self draft (not allowed with a separate draft model). Default: sliding_window "
        "with window 512 and sink_tokens 16.", default=SlidingWindowAttention(window=512, sink_tokens=16),
        tag="policy")
    tokens: int = spec_field("Draft tokens per verify step (k).",
                             check=(at_least(1), at_most(MAX_DRAFT_TOKENS, "kinsim's cap on draft tokens")))
    acceptance: Any = spec_field(
        "Acceptance rate alpha in [0, 1], or trace: each request's own rate from the trace's acceptance column "
        "(kinsim's trace format).", check=_acceptance_rule, words="number in [0, 1], or `trace`")
    acceptance_model: str = spec_field(
        "How alpha gives the expected tokens per verify step, tau: geometric (each draft token accepted with "
        "probability alpha until the first rejection, Leviathan et al. 2023: tau = (1 - alpha^(k+1)) / "
        "(1 - alpha)) or constant (a share alpha of the k drafts accepted every step: tau = 1 + alpha k); "
        "either way the verify step adds the target's own next token.", default="geometric",
        check=one_of(*ACCEPTANCE_MODELS))

    def __post_init__(self) -> None:
        check_fields(self)
        if isinstance(self.acceptance, int) and not isinstance(self.acceptance, bool):
            object.__setattr__(self, "acceptance", float(self.acceptance))  # as read from YAML: 1 and 1.0 alike
        if self.draft is not None and "draft_attention" in _given(self):
            raise SpecError("applies to a self draft only (a separate draft model runs dense attention)",
                            path="draft_attention", value=type(self.draft_attention).KIND)

    @property
    def self_draft(self) -> bool:
        """Whether the target model drafts for itself (no separate draft model)."""
        return self.draft is None


def _given(spec: SpeculativeSpec) -> set[str]:
    """Fields of ``spec`` that differ from their defaults (what a file set)."""
    default = SlidingWindowAttention(window=512, sink_tokens=16)
    return {"draft_attention"} if spec.draft_attention != default else set()

# ------------------------------------------------------------------------------------- arrivals


@dataclass(frozen=True, kw_only=True)
class AllAtOnce:
    """Every request (or problem) arrives at time 0: an offline batch."""

    TAG_KEY: ClassVar[str] = "process"
    KIND: ClassVar[str] = "all_at_once"

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class PoissonArrivals:
    """Problems arrive as a Poisson process; all samples of a problem arrive together."""

    TAG_KEY: ClassVar[str] = "process"
    KIND: ClassVar[str] = "poisson"
    rate: float = spec_field("Mean arrivals per unit time (per second, minute or hour: \"30 /min\").",
                             unit="frequency", check=(positive, _finite_interval), example="10 /s")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class ClosedLoopArrivals:
    """``concurrency`` problems are in flight; the next arrives when one completes (or, in ``rounds``, the
    next ``concurrency`` when all of them have)."""

    TAG_KEY: ClassVar[str] = "process"
    KIND: ClassVar[str] = "closed_loop"
    concurrency: int = spec_field("Problems in flight at once.", check=(at_least(1), _REQUESTS))
    rounds: bool = spec_field("Release the next concurrency problems only when the whole round has ended "
                              "(a client that sends batches and waits for each), instead of one as each ends.",
                              default=False)
    stagger: bool = spec_field(
        "After its first problem, client k of the concurrency (k = 0, 1, ...) waits k / concurrency of that "
        "problem's time in the system before sending its next: the clients of a long closed-loop benchmark "
        "drift out of step (their requests' latencies jitter), and kinsim spreads them evenly at once. The "
        "first round still starts together. Not with rounds.", default=False)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.stagger and self.rounds:
            raise SpecError("cannot be true with rounds: true (a round's clients send together)",
                            path="stagger", value=self.stagger)


ArrivalProcess = AllAtOnce | PoissonArrivals | ClosedLoopArrivals

# ------------------------------------------------------------------------------------- requests


@dataclass(frozen=True, kw_only=True)
class _GeneratedRequests:
    problems: int = spec_field("Problems (tasks).", check=(at_least(1), _REQUESTS))
    prompt_tokens: LengthDistribution = length_field("Prompt length of each problem, tokens.")
    output_tokens: LengthDistribution = length_field("Generated length of each sample, tokens, before "
                                                     "the cap.")
    max_output_tokens: int = spec_field("Generation cap: a sample stops after this many tokens.",
                                        check=(at_least(1), _TOKENS))
    arrival: ArrivalProcess = spec_field("When problems arrive.", default=AllAtOnce(), tag="process")
    warmup: int = spec_field("The first requests (in generation order) are served but left out of the "
                             "latency figures, as benchmark clients discard their warm-up requests.",
                             default=0, check=(non_negative, _REQUESTS))
    stagger_warmup: bool = spec_field(
        "Warm-up request i generates (i + 1) / warmup of its drawn length, so that the clients of a closed "
        "loop leave the warm-up out of step, as a real benchmark's clients are after a while (with "
        "identical lengths they would otherwise prefill and finish in lockstep forever).", default=False)

    def _check_span(self) -> None:
        """Poisson arrivals of every problem must fall within the clock's exact range (on average)."""
        if isinstance(self.arrival, PoissonArrivals) and self.problems > self.arrival.rate * MAX_TIME_S:
            raise SpecError(f"{self.problems:,} problems at this rate arrive over about "
                            f"{self.problems / self.arrival.rate:.4g} s, beyond {MAX_TIME_WORDS}",
                            path="arrival.rate", value=self.arrival.rate, hint="a higher rate or fewer problems")


@dataclass(frozen=True, kw_only=True)
class BestOfNRequests(_GeneratedRequests):
    """``problems`` prompts, each sampled ``samples`` times; the samples of one problem share its
    prompt (and its KV) and the problem is done when all of them are."""

    TAG_KEY: ClassVar[str] = "kind"
    KIND: ClassVar[str] = "best_of_n"
    samples: int = spec_field("Samples per problem (N).", check=(at_least(1), _REQUESTS))

    def __post_init__(self) -> None:
        check_fields(self)
        self._check_span()
        if self.problems * self.samples > MAX_REQUESTS:
            raise SpecError(f"problems x samples must be at most {MAX_REQUESTS:,} requests (kinsim's cap), got "
                            f"{self.problems:,} x {self.samples:,}", path="samples")


@dataclass(frozen=True, kw_only=True)
class LongCoTRequests(_GeneratedRequests):
    """One long chain of thought per problem."""

    TAG_KEY: ClassVar[str] = "kind"
    KIND: ClassVar[str] = "long_cot"

    def __post_init__(self) -> None:
        check_fields(self)
        self._check_span()

    @property
    def samples(self) -> int:
        """One sample per problem."""
        return 1


@dataclass(frozen=True, kw_only=True)
class TraceRequests:
    """Requests replayed from a trace file: kinsim's own JSONL or CSV, or a public production trace as
    published (Azure, BurstGPT, Mooncake); see docs/file-formats.md. Skipped and capped rows are counted
    and reported."""

    TAG_KEY: ClassVar[str] = "kind"
    KIND: ClassVar[str] = "trace"
    path: str = spec_field("Trace file, relative to the workload file.", check=non_empty)
    format: str = spec_field("auto (told by the file's first line), kinsim, azure, burstgpt or mooncake.",
                             default="auto", check=one_of(*TRACE_FORMATS))
    model: str | None = spec_field("Replay only the rows of this model (BurstGPT's Model column, e.g. GPT-4); "
                                   "none: every row.", default=None, check=non_empty)
    skip_failed: bool = spec_field("Skip rows that generated no tokens (failed requests); false replays them "
                                   "with one output token.", default=True)
    start: float = spec_field("Replay from this long after the trace's origin (its first request; 0 s in "
                              "kinsim's own format).", unit="time", default=0.0,
                              check=non_negative, example="2 h")
    duration: float | None = spec_field("Replay only requests arriving within this long after start; none: "
                                        "to the end.", unit="time", default=None, check=positive,
                                        example="30 min")
    rate_scale: float = spec_field("Replay at this many times the trace's request rate (arrival times are "
                                   "divided by it).", default=1.0, check=positive)
    time_scale: float = spec_field("Multiplies every arrival time (0.5 replays twice as fast); applies with "
                                   "rate_scale.", default=1.0, check=positive)
    sample: float = spec_field("Replay each row with this probability: one uniform draw per row, in file "
                               "order, from a generator seeded with the workload's seed.", default=1.0,
                               check=fraction)
    max_prompt_tokens: int | None = spec_field("Longer prompts are cut to this many tokens (counted); none: "
                                               "no cap.", default=None, check=(at_least(1), _TOKENS))
    max_output_tokens: int | None = spec_field("Longer outputs are cut to this many tokens (counted); none: "
                                               "no cap.", default=None, check=(at_least(1), _TOKENS))
    hash_block_tokens: int = spec_field("Tokens per hash id of the trace's hash_ids (512 in the Mooncake "
                                        "traces).", default=512, check=(at_least(1), _TOKENS))

    def __post_init__(self) -> None:
        check_fields(self)


RequestSource = BestOfNRequests | LongCoTRequests | TraceRequests

# ------------------------------------------------------------------------------------- workload


@dataclass(frozen=True, kw_only=True)
class WorkloadSpec:
    """A workload file."""

    name: str = spec_field("Short name of the workload.", check=non_empty)
    description: str = spec_field("What is simulated and what its figures are based on.", default="")
    model: ModelSpec = spec_field("The model: a preset name, {preset: NAME, ...changed keys}, "
                                  "{config: path/to/config.json} or every key written out.")
    deployment: DeploymentSpec = spec_field("Parallelism and batching.", default=DeploymentSpec())
    attention: AttentionPolicy = spec_field("Attention policy.", default=DenseAttention(), tag="policy")
    requests: RequestSource = spec_field("The requests: generated or replayed from a trace.", tag="kind")
    seed: int = spec_field("Seed of every random draw (lengths, arrivals).", default=0, check=non_negative)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.deployment.attention_data_parallel > 1 and self.model.moe is None:
            raise SpecError("needs an MoE model: a dense model's data-parallel attention is data_parallel "
                            "replicas", path="deployment.attention_data_parallel",
                            value=self.deployment.attention_data_parallel)
        groups = self.deployment.attention_data_parallel
        for tp, path in self.deployment_tensor_parallels():
            heads_tp = tp // groups  # the GPUs that split the heads
            per = f" / attention_data_parallel {groups} = {heads_tp} GPUs" if groups > 1 else ""
            if self.model.attention_heads % heads_tp:
                raise SpecError(f"{per and 'split' + per + ', which '}must divide the model's attention heads "
                                f"({self.model.attention_heads})", path=path, value=tp)
            kv = self.model.kv_heads
            if kv % heads_tp and heads_tp % kv:
                raise SpecError(f"{per and 'split' + per + ', which '}must divide the model's KV heads ({kv}) or be "
                                "a multiple of them", path=path, value=tp)
        if self.model.moe is None and self.deployment.expert_parallel != 1:
            raise SpecError("must be 1 for a dense model", path="deployment.expert_parallel",
                            value=self.deployment.expert_parallel)
        for tp, path in self.deployment_tensor_parallels():
            if tp % self.deployment.expert_parallel:
                raise SpecError(f"must divide {path} ({tp}); experts are spread over the GPUs of one replica",
                                path="deployment.expert_parallel", value=self.deployment.expert_parallel)
        if self.model.moe and self.model.moe.experts % self.deployment.expert_parallel:
            raise SpecError(f"must divide the model's experts ({self.model.moe.experts})",
                            path="deployment.expert_parallel", value=self.deployment.expert_parallel)
        speculative = self.deployment.speculative
        draft = speculative.draft if speculative is not None else None
        windowed = next((m for m in (self.model, draft) if m is not None and m.sliding_window_layers), None)
        offload = isinstance(self.attention, BlockTopKAttention) and self.attention.offload
        if windowed is not None and (speculative is not None or offload):
            raise SpecError(f"{windowed.name} has sliding-window layers, which kinsim does not combine with "
                            + ("speculative decoding" if speculative is not None else "offloaded KV"),
                            path="deployment.speculative" if speculative is not None else "attention.offload",
                            value=True, hint="use a model whose layers all attend over the whole context")
        block = self.deployment.kv_block_size
        if isinstance(self.attention, BlockTopKAttention) and self.attention.block_size % block:
            raise SpecError(f"must be a multiple of deployment.kv_block_size ({block}) so that a "
                                "selected block is whole pages", path="attention.block_size",
                                value=self.attention.block_size)

    def with_overrides(self, overrides: dict) -> WorkloadSpec:
        """A validated copy with dotted keys changed, e.g. ``{"model.kv_dtype": "fp8"}``."""
        from kinsim.schema import with_overrides

        return with_overrides(self, overrides)

    def deployment_tensor_parallels(self) -> list[tuple[int, str]]:
        """Each tensor parallelism the deployment uses, with the key that sets it: one, or one per role of a
        disaggregated deployment."""
        deployment = self.deployment
        if deployment.disaggregation is None:
            return [(deployment.tensor_parallel, "deployment.tensor_parallel")]
        out = []
        for role in ("prefill", "decode"):
            tp = getattr(deployment.disaggregation, role).tensor_parallel
            out.append((deployment.tensor_parallel, "deployment.tensor_parallel") if tp is None else
                       (tp, f"deployment.disaggregation.{role}.tensor_parallel"))
        return out

    @property
    def gpus(self) -> int:
        """GPUs the deployment uses (tensor_parallel x data_parallel, or the roles' replicas x their
        tensor_parallel when disaggregated)."""
        deployment = self.deployment
        if deployment.disaggregation is None:
            return deployment.tensor_parallel * deployment.data_parallel
        return sum(getattr(deployment.disaggregation, role).replicas * tp
                   for role, (tp, _) in zip(("prefill", "decode"), self.deployment_tensor_parallels()))
