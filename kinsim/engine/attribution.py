"""Each request's share of the GPU time of the steps it took part in (``gpu_s`` of a request).

A step's time (per GPU, from the pricer) splits into its attention ops and everything else. Everything
else (linear layers, collectives, norms, sampling, the serving engine's host time) is split by the tokens
each participant put through the step: one per decoding sequence (``k + 1`` for a speculative verify step),
``take`` for a prefill chunk. Attention is split by the KV tokens each participant's queries attend to, the
bytes they read: ``min(context + 1, cap)`` for a decoding sequence at ``context`` cached tokens (``cap`` the
policy's per-step budget, none for dense attention), ``cached + take`` for a prefill chunk. A shared
prompt read once per group (``prefix_shared_read``) and block top-k's block scoring are attributed as if
each member read its own; both are small next to the tokens attended.

Each step's duration on the engine's clock (its priced time rounded to the clock's tick) is divided in
the proportions of its priced time, and a segment that a shared link stretched beyond its steps' durations
is scaled to its wall time (``end - start``); times the replica's GPUs, the requests' ``gpu_s`` add up to
the replicas' busy GPU-seconds. Dividing each step's own duration (not the segment's total in proportion to
priced time) makes a segment's shares those of its steps one by one: fast-forward and exact steps agree.
A prefill chunk's share goes in equal parts to the sequence that leads it and its followers (Best-of-N
samples that wait for the shared prompt); a sequence preempted and recomputed pays for the recomputation.

Decode segments are attributed in ``O(n + steps)``: with ``w_k`` the attention seconds per attended token at
step ``k``, sequence ``i``'s attention share is ``sum_k w_k min(c_i + 1 + k, cap)``, read off prefix sums of
``w_k`` and ``k w_k`` at the step where it reaches the cap. Without a cap (dense attention) every share is
``(c_i + 1) x weight + constant`` (:func:`decode_coefficients`, :func:`step_coefficients`), which the decode
batch owes its sequences in ``O(1)`` (:meth:`kinsim.engine.decode_batch.DecodeBatch.credit`).
"""

from __future__ import annotations

import numpy as np

from kinsim.ops.attention import step_indices


def decode_shares(time_s: np.ndarray, attention_s: np.ndarray, step_s: np.ndarray, context: np.ndarray,
                  cap: int | None, attended: np.ndarray) -> np.ndarray:
    """Seconds of a decode-only segment's steps owed by each sequence, shape ``(n,)``; they add up to
    ``step_s.sum()``.

    ``time_s`` and ``attention_s``: priced seconds of each step and of its attention (shape ``(steps,)``,
    per GPU); ``step_s``: each step's duration on the clock; ``context``: the sequences' cached tokens at
    the first step (integers, shape ``(n,)``; ``context + k`` at step ``k``); ``cap``: most tokens a
    sequence attends per step (None: all); ``attended``: tokens attended per step, summed over the
    sequences (the pricer's ``attended``).

    Step ``k`` gives each sequence ``(step_s - u)_k / n`` for its other ops and ``w_k`` per token attended,
    with ``u = attention_s x step_s / time_s`` (the step's attention seconds on the clock) and ``w = u /
    attended``. A handful of array operations: this runs once per segment.
    """
    n, steps = context.shape[0], time_s.shape[0]
    if n == 0:
        return np.zeros(0)
    if time_s.min() <= 0.0:  # a step priced at nothing: it owes nothing, and divides nothing
        positive = time_s > 0.0
        return decode_shares(time_s[positive], attention_s[positive], step_s[positive], context, cap,
                             attended[positive]) if positive.any() else np.zeros(n)
    u = attention_s * (step_s / time_s)
    w = u / attended  # attended >= n > 0
    other = float((step_s - u).sum()) / n  # one token per sequence per step: equal parts
    first = context + 1
    if cap is None:
        return first * float(w.sum()) + (float(np.dot(step_indices(steps), w)) + other)
    p0 = np.concatenate(([0.0], np.cumsum(w)))
    p1 = np.concatenate(([0.0], np.cumsum(np.arange(steps) * w)))
    below = np.clip(cap - first, 0, steps)  # steps before it reaches the cap
    return first * p0[below] + p1[below] + cap * (p0[-1] - p0[below]) + other


def decode_coefficients(time_s: np.ndarray, attention_s: np.ndarray, step_s: np.ndarray, n: int,
                        attended: np.ndarray) -> tuple[float, float]:
    """:func:`decode_shares` without a cap as ``(weight, constant)``: sequence ``i`` owes ``(context_i + 1) x
    weight + constant`` seconds (the arguments as there; ``n`` sequences, at least one)."""
    if time_s.min() <= 0.0:  # a step priced at nothing: it owes nothing, and divides nothing
        positive = time_s > 0.0
        if not positive.any():
            return 0.0, 0.0
        return decode_coefficients(time_s[positive], attention_s[positive], step_s[positive], n, attended[positive])
    u = attention_s * (step_s / time_s)
    w = u / attended  # attended >= n > 0
    other = float((step_s - u).sum()) / n
    return float(w.sum()), float(np.dot(step_indices(time_s.shape[0]), w)) + other


def step_coefficients(time_s: float, attention_s: float, n: int, decode_attended: float, decode_tokens: float,
                      chunk_attended: list[float], chunk_tokens: list[float]) -> tuple[float, float, list[float]]:
    """:func:`step_shares` of a step whose ``n`` decoding sequences attend ``context + 1`` tokens each
    (``decode_attended`` in all): ``(weight, constant, chunks)``, decoding sequence ``i`` owing ``(context_i +
    1) x weight + constant`` of the step's time and the chunks their fractions, in order."""
    if time_s <= 0.0:
        return 0.0, 0.0, [0.0] * len(chunk_tokens)
    tokens = decode_tokens * n + sum(chunk_tokens)
    attended = decode_attended + sum(chunk_attended)
    per_token = (time_s - attention_s) / tokens if tokens else 0.0
    per_attended = attention_s / attended if attended else 0.0
    chunks = [(per_token * t + per_attended * a) / time_s for t, a in zip(chunk_tokens, chunk_attended)]
    return per_attended / time_s, decode_tokens * per_token / time_s, chunks


def step_shares(time_s: float, attention_s: float, decode_attended: np.ndarray, decode_tokens: float,
                chunk_attended: list[float], chunk_tokens: list[float]) -> tuple[np.ndarray, list[float]]:
    """Fractions of one step's time owed by its decoding sequences (an array) and by its prefill chunks (a
    list, in order).

    ``decode_attended``: tokens each decoding sequence attends (shape ``(n,)``); ``decode_tokens``: tokens
    each puts through the step (1, or ``k + 1`` verified); ``chunk_attended`` and ``chunk_tokens``: the
    prefill chunks' tokens attended (``cached + take``) and computed (``take``). A step has a few chunks:
    they are counted in Python floats.
    """
    n = len(decode_attended)
    if time_s <= 0.0:
        return np.zeros(n), [0.0] * len(chunk_tokens)
    decode_sum = float(decode_attended.sum()) if n else 0.0
    tokens = decode_tokens * n + sum(chunk_tokens)
    attended = decode_sum + sum(chunk_attended)
    per_token = (time_s - attention_s) / tokens if tokens else 0.0
    per_attended = attention_s / attended if attended else 0.0
    decode = (decode_tokens * per_token + per_attended * decode_attended) / time_s if n else np.zeros(0)
    chunks = [(per_token * t + per_attended * a) / time_s for t, a in zip(chunk_tokens, chunk_attended)]
    return decode, chunks
