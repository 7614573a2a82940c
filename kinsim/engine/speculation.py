"""Speculative decoding in the engine: acceptance, the integer trajectory of advances, checks and pricing.

With ``deployment.speculative`` every decode step is a *speculative step*: ``k`` draft passes (a decode step
of the draft, the target itself under ``draft_attention`` or a separate draft model) and one verify pass of
the target over ``k + 1`` tokens per decoding sequence (:mod:`kinsim.ops.speculative`), one after the other.

**Acceptance.** With acceptance rate ``alpha`` a verify step advances a sequence by ``tau`` tokens on
average (the accepted drafts and the target's own next token):

* ``geometric`` (Leviathan et al. 2023, each draft accepted with probability ``alpha`` until the first
  rejection): ``tau = (1 - alpha^(k+1)) / (1 - alpha)``, ``k + 1`` at ``alpha = 1``;
* ``constant`` (a share ``alpha`` of the ``k`` drafts every step): ``tau = 1 + alpha k``.

**The integer trajectory.** ``tau`` becomes a whole number ``tau_q = round(tau x Q)``, ``Q = 2**20``. A
sequence that has done ``j`` verify steps has advanced ``(j tau_q) // Q`` tokens since it started decoding,
so its advance in step ``j`` is ``((j + 1) tau_q) // Q - (j tau_q) // Q`` (at least 1, as ``tau >= 1``),
capped at the tokens it has left. Everything is integer arithmetic on the sequence's own counter ``j``
(kept through preemptions), so a segment of steps and the same steps one by one give the same advances to
the token, and the step at which a sequence finishes comes in closed form: the first ``m`` with
``(j + m) tau_q >= ((j tau_q) // Q + remaining) Q``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kinsim.cost.base import CostModel
from kinsim.cost.engine_overhead import engine_overhead
from kinsim.errors import SpecError
from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import PrefillChunk, decode_attention_ops, prefill_attention_op
from kinsim.ops.lower import StepBatch, logit_ops, lower_step
from kinsim.ops.offload import offloads
from kinsim.ops.op import Op
from kinsim.ops.speculative import verify_attention_ops
from kinsim.workload.request import Request, RequestTable
from kinsim.workload.spec import (
    AttentionPolicy,
    DenseAttention,
    DeploymentSpec,
    SpeculativeSpec,
    TraceRequests,
    WorkloadSpec,
)

#: Fixed-point scale of ``tau``: tokens per verify step x Q, a whole number.
Q = 1 << 20


# ------------------------------------------------------------------------------------- acceptance
def expected_tokens(alpha: float, k: int, model: str = "geometric") -> float:
    """Expected tokens a verify step advances a sequence (``tau``, at least 1, at most ``k + 1``) with
    acceptance rate ``alpha`` and ``k`` draft tokens under acceptance ``model``."""
    if model == "constant":
        return 1.0 + alpha * k
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def tau_q_of(alpha: float, k: int, model: str = "geometric") -> int:
    """``tau`` as a whole number: ``round(tau x Q)`` (at least ``Q``)."""
    return max(Q, round(expected_tokens(alpha, k, model) * Q))


def request_tau_q(spec: SpeculativeSpec, request: Request) -> int:
    """``tau_q`` of one request: from the deployment's rate, or its own (``acceptance: trace``)."""
    alpha = request.acceptance if spec.acceptance == "trace" else spec.acceptance
    if alpha is None:
        raise SpecError("has no acceptance rate (deployment.speculative.acceptance is trace)",
                        path=f"request {request.request_id}.acceptance")
    return tau_q_of(float(alpha), spec.tokens, spec.acceptance_model)


def cumulative_advances(j: np.ndarray, tau_q: np.ndarray, remaining: np.ndarray, steps: int) -> np.ndarray:
    """Tokens each sequence has advanced after ``m`` more verify steps, ``m = 0..steps``: shape
    ``(steps + 1, n)`` int64, from each sequence's verify steps done ``j``, ``tau_q`` and tokens
    ``remaining`` to generate (the cap)."""
    j, tau_q = np.asarray(j, dtype=np.int64), np.asarray(tau_q, dtype=np.int64)
    m = np.arange(steps + 1, dtype=np.int64)[:, None]
    reached = ((j[None, :] + m) * tau_q[None, :]) // Q - ((j * tau_q) // Q)[None, :]
    return np.minimum(reached, np.asarray(remaining, dtype=np.int64)[None, :])


def next_advance(j: int, tau_q: int, remaining: int) -> int:
    """Tokens one sequence advances in its next verify step (Python integers)."""
    return min(((j + 1) * tau_q) // Q - (j * tau_q) // Q, remaining)


def steps_to_finish(j: np.ndarray, tau_q: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    """Verify steps each sequence needs to generate its ``remaining`` tokens (at least 1): the least ``m``
    with ``((j + m) tau_q) // Q - (j tau_q) // Q >= remaining``."""
    j, tau_q = np.asarray(j, dtype=np.int64), np.asarray(tau_q, dtype=np.int64)
    target = ((j * tau_q) // Q + np.asarray(remaining, dtype=np.int64)) * Q
    return -(-target // tau_q) - j


# ------------------------------------------------------------------------------------- checks
def check_speculative_deployment(workload: WorkloadSpec, file: str | None = None) -> None:
    """:class:`SpecError` where ``deployment.speculative`` cannot run with the rest of the workload."""
    spec = workload.deployment.speculative
    if spec is None:
        return
    deployment = workload.deployment
    if offloads(workload.attention):
        raise SpecError("is not modelled with attention.offload: the verify pass's k + 1 queries would fetch their "
                        "selected blocks from host memory, which kinsim does not price", path="deployment.speculative",
                        file=file, hint="drop attention.offload or deployment.speculative")
    if spec.self_draft and offloads(spec.draft_attention):
        raise SpecError("offload is not modelled for the draft's attention", path="deployment.speculative."
                        "draft_attention.offload", value=True, file=file)
    need = deployment.max_num_seqs * (spec.tokens + 1)
    if deployment.max_num_batched_tokens < need:
        raise SpecError(f"must be at least deployment.max_num_seqs x (deployment.speculative.tokens + 1) = "
                        f"{deployment.max_num_seqs} x {spec.tokens + 1} = {need}: a verify step computes tokens + 1 "
                        "tokens per decoding sequence", path="deployment.max_num_batched_tokens",
                        value=deployment.max_num_batched_tokens, file=file)
    draft = spec.draft
    if draft is not None:
        for tp, key in workload.deployment_tensor_parallels():  # each role's, when disaggregated
            heads_ok = draft.attention_heads % tp == 0 and (draft.kv_heads % tp == 0 or tp % draft.kv_heads == 0)
            if not heads_ok:
                raise SpecError(f"its {draft.attention_heads} attention heads and {draft.kv_heads} KV heads cannot "
                                f"be split over {key} {tp} GPUs (the draft runs on the target's GPUs)",
                                path="deployment.speculative.draft", value=draft.name, file=file)
        if draft.moe is None and deployment.expert_parallel != 1:
            raise SpecError("a dense draft model needs deployment.expert_parallel 1",
                            path="deployment.speculative.draft", value=draft.name, file=file)


def check_speculative_requests(workload: WorkloadSpec, requests: RequestTable) -> None:
    """With ``acceptance: trace``, :class:`SpecError` unless every request has an acceptance rate."""
    spec = workload.deployment.speculative
    if spec is None or spec.acceptance != "trace":
        return
    source = workload.requests
    where = f"the trace {source.path}" if isinstance(source, TraceRequests) else f"requests.kind {source.KIND}"
    if requests.acceptance is None:
        raise SpecError(f"needs a per-request acceptance column, and {where} has none",
                        path="deployment.speculative.acceptance", value="trace",
                        hint="add a column acceptance (a rate in [0, 1]) to a kinsim-format trace, or give a number")
    missing = np.flatnonzero(np.isnan(requests.acceptance))
    if len(missing):
        i = int(missing[0])
        raise SpecError(f"has no acceptance rate in {where} ({len(missing)} requests lack one)",
                        path=f"request {requests.request_id(i)}.acceptance",
                        hint="every row needs acceptance when deployment.speculative.acceptance is trace")


# ------------------------------------------------------------------------------------- pricing
class SpeculativePricer:
    """Prices speculative steps of one replica: the draft passes, the verify pass and the engine's host time.

    The draft and the verify pass are priced by :class:`~kinsim.engine.pricer.StepPricer` machinery without
    the engine's host time (their deployment's ``engine`` is ``none``), which is added once per speculative
    step: ``step_s + (n + prompts completed) x per_sequence_s``. A segment of speculative steps is priced
    from its ``(steps, n)`` matrix of contexts; one step is the same code on a ``(1, n)`` matrix, so the two
    give the same numbers.
    """

    def __init__(self, model: ModelSpec, deployment: DeploymentSpec, policy: AttentionPolicy,
                 cost_model: CostModel) -> None:
        from kinsim.engine.pricer import StepPricer

        spec = deployment.speculative
        self.spec, self.k = spec, spec.tokens
        bare = dataclasses.replace(deployment, engine="none", speculative=None)
        self.target = StepPricer(model, bare, policy, cost_model)
        self.self_draft = spec.self_draft
        draft_model = model if spec.self_draft else spec.draft
        draft_policy = spec.draft_attention if spec.self_draft else DenseAttention()
        self.draft = StepPricer(draft_model, bare, draft_policy, cost_model)
        self.overhead = engine_overhead(deployment.engine, deployment.engine_version)
        self.cost_model = cost_model

    def _draft_carries(self, i: int, chunks: tuple[PrefillChunk, ...]) -> tuple[PrefillChunk, ...]:
        """Prefill chunks draft pass ``i`` computes: a separate draft builds its own KV of the prompts in its
        first pass; a self draft reads the target's."""
        return chunks if i == 0 and not self.self_draft else ()

    def price(self, context: np.ndarray, chunks: tuple[PrefillChunk, ...] = (), shared: np.ndarray | None = None,
              groups: np.ndarray | None = None):
        """Figures of speculative steps whose decoding sequences have ``context`` tokens cached (integers,
        shape ``(steps, n)``) with ``chunks`` of prefill (one step only); their ``draft_s`` (shape
        ``(steps,)``) is the draft passes' seconds."""
        from kinsim.engine.pricer import _CLASS_ROW, ROWS, StepFigures, _accumulate

        context = np.asarray(context, dtype=np.int64)
        steps, n = context.shape
        matrix = np.zeros((len(ROWS), steps))
        draft = self.draft
        for i in range(self.k):
            carries = self._draft_carries(i, chunks)
            if not n and not carries:
                continue
            ops = self._draft_attention(i, context, carries, shared, groups)
            fig = _accumulate(ops, self.cost_model, steps)
            prefill = sum(c.tokens for c in carries)
            fig.matrix += draft._token_part(n + prefill) + draft._rows_part(n + _completing(carries))
            matrix += fig.matrix
        draft_s = matrix[0].copy()
        target = self.target
        fig = _accumulate(self._verify_attention(context, chunks, shared, groups), self.cost_model, steps)
        queries = n * (self.k + 1)
        fig.matrix += (target._token_part(queries + sum(c.tokens for c in chunks))
                       + target._rows_part(queries + _completing(chunks)))
        matrix += fig.matrix
        host = self.host_s(n + _completing(chunks))
        matrix[0] += host
        matrix[_CLASS_ROW["other"]] += host
        return StepFigures(matrix, draft_s=draft_s)

    def host_s(self, rows: int) -> float:
        """The serving engine's host time of a speculative step in which ``rows`` sequences get tokens."""
        return self.overhead.step_s + rows * self.overhead.per_sequence_s

    def _draft_attention(self, i: int, context: np.ndarray, carries, shared, groups) -> list[Op]:
        draft = self.draft
        ops: list[Op] = []
        if context.shape[-1]:
            ops += decode_attention_ops(draft.dims, draft.policy, (context + i).astype(float), shared_prefix=shared,
                                        group_index=groups, prefix_shared_read=draft.deployment.prefix_shared_read,
                                        count=draft.model.layers)
        if carries:
            ops.append(prefill_attention_op(draft.dims, draft.policy, carries, count=draft.model.layers))
        return ops

    def _verify_attention(self, context: np.ndarray, chunks, shared, groups) -> list[Op]:
        target = self.target
        ops: list[Op] = []
        if context.shape[-1]:
            ops += verify_attention_ops(target.dims, target.policy, context, self.k, shared_prefix=shared,
                                        group_index=groups, prefix_shared_read=target.deployment.prefix_shared_read,
                                        count=target.model.layers)
        if chunks:
            ops.append(prefill_attention_op(target.dims, target.policy, chunks, count=target.model.layers))
        return ops

    def step_ops(self, context: np.ndarray, chunks: tuple[PrefillChunk, ...] = (), shared=None,
                 groups=None) -> list[Op]:
        """The ops of one speculative step in the order they run (draft passes, then the verify pass), named
        ``draft<i>.<op>`` and ``verify.<op>``, for op-level records; ``context`` has shape ``(n,)``."""
        context = np.asarray(context, dtype=np.int64)[None, :]
        n = context.shape[-1]
        out: list[Op] = []
        for i in range(self.k):
            carries = self._draft_carries(i, chunks)
            if not n and not carries:
                continue
            ops = self._draft_attention(i, context, carries, shared, groups)
            out += _named(f"draft{i}", _pass_ops(self.draft, n + sum(c.tokens for c in carries),
                                                  n + _completing(carries), ops))
        queries = n * (self.k + 1)
        ops = self._verify_attention(context, chunks, shared, groups)
        out += _named("verify", _pass_ops(self.target, queries + sum(c.tokens for c in chunks),
                                          queries + _completing(chunks), ops))
        return out


def _completing(chunks) -> int:
    """Prefill chunks that complete their prompt (each then needs logits)."""
    return sum(1 for c in chunks if c.completes_prompt)


def _pass_ops(pricer, tokens: int, rows: int, attention: list[Op]) -> list[Op]:
    """One pass's ops: the token ops of ``tokens`` tokens, its attention ops, the logit ops of ``rows``."""
    only_tokens = StepBatch(prefill=(PrefillChunk(tokens, 0, completes_prompt=False),))
    ops = list(lower_step(pricer.model, pricer.deployment, pricer.policy, only_tokens, attention=False).ops)
    return ops + attention + logit_ops(pricer.model, pricer.deployment, rows)


def _named(prefix: str, ops: list[Op]) -> list[Op]:
    return [dataclasses.replace(op, name=f"{prefix}.{op.name}") for op in ops]
