"""Turning a workload's request source into the list of requests the engine serves.

Random draws use one ``numpy.random.Generator`` seeded with the workload's seed, in a fixed order:
prompt lengths (one per problem), then output lengths (problem-major, one per sample), then arrival
gaps. The same workload and seed therefore always give the same requests. A trace's ``sample`` draws
from a generator seeded the same way (see :mod:`kinsim.workload.replay`).

Every drawn quantity is checked in range before it is used (see :mod:`kinsim.workload.distributions`):
lengths are finite float draws of at most MAX_TOKENS before they are rounded, cast and capped, and the
arrival times (cumulative exponential gaps) are at most :data:`~kinsim.limits.MAX_TIME_S`, half the range
of the engine's exact clock. A draw out of range is a :class:`SpecError` naming the key.
"""

from __future__ import annotations

import numpy as np

from kinsim.errors import SpecError
from kinsim.limits import MAX_TIME_S, MAX_TIME_WORDS
from kinsim.workload.replay import replay_trace
from kinsim.workload.request import Request, RequestTable
from kinsim.workload.spec import (
    BestOfNRequests,
    LongCoTRequests,
    PoissonArrivals,
    TraceRequests,
    WorkloadSpec,
)


def workload_requests(workload: WorkloadSpec) -> list[Request]:
    """The requests of ``workload``, sorted by arrival time (ties in generation order)."""
    source = workload.requests
    if isinstance(source, TraceRequests):
        return replay_trace(source, workload.seed).requests
    return generate_requests(source, seed=workload.seed)


def workload_request_table(workload: WorkloadSpec) -> RequestTable:
    """:func:`workload_requests` as a :class:`RequestTable` (what the engine reads: a generated workload
    never becomes a list of objects)."""
    source = workload.requests
    if isinstance(source, TraceRequests):
        return RequestTable.from_requests(replay_trace(source, workload.seed).requests)
    return generate_request_table(source, seed=workload.seed)


def generate_requests(source: BestOfNRequests | LongCoTRequests, seed: int) -> list[Request]:
    """Draw the requests of a Best-of-N or long-CoT generator.

    Closed-loop arrivals are written as time 0; the engine releases problems as earlier ones finish.
    """
    return list(generate_request_table(source, seed))


def generate_request_table(source: BestOfNRequests | LongCoTRequests, seed: int) -> RequestTable:
    """:func:`generate_requests` as a :class:`RequestTable` (32 bytes a request)."""
    rng = np.random.default_rng(seed)
    problems, samples = source.problems, source.samples
    prompts = _drawn(source.prompt_tokens, rng, problems, "requests.prompt_tokens")
    # checked in range before the cap: the cap bounds a sane draw, it must not hide a broken one
    outputs = np.minimum(_drawn(source.output_tokens, rng, problems * samples, "requests.output_tokens"),
                         source.max_output_tokens)
    if source.stagger_warmup and source.warmup:
        # warm-up request i generates (i + 1) / warmup of its length: the clients of a closed loop then
        # end their warm-up at evenly spread times and stay out of step, as a long benchmark's do
        head = min(source.warmup, len(outputs))
        outputs[:head] = np.maximum(1, np.ceil(outputs[:head] * np.arange(1, head + 1) / source.warmup))
    arrivals = np.zeros(problems)
    if isinstance(source.arrival, PoissonArrivals):
        with np.errstate(over="ignore", divide="ignore"):  # inf gaps are refused just below
            arrivals = np.cumsum(rng.exponential(1.0 / source.arrival.rate, size=problems))
        late = ~(arrivals <= MAX_TIME_S)
        if late.any():
            index = int(np.flatnonzero(late)[0])
            raise SpecError(f"problem {index + 1} of {problems:,} would arrive at {float(arrivals[index]):.6g} s, "
                            f"past {MAX_TIME_WORDS}", path="requests.arrival.rate",
                            value=source.arrival.rate, hint="raise the rate or lower requests.problems")
    return RequestTable(np.repeat(arrivals, samples), np.repeat(prompts, samples), outputs,
                        np.repeat(np.arange(problems), samples), samples=samples)


def _drawn(distribution, rng: np.random.Generator, count: int, path: str) -> np.ndarray:
    """``count`` token counts of ``distribution`` (checked in range as drawn); errors name ``path``."""
    try:
        return distribution.sample(rng, count)
    except SpecError as error:
        raise error.within(path) from None
