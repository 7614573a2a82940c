"""Turning a workload's request source into the list of requests the engine serves.

Random draws use one ``numpy.random.Generator`` seeded with the workload's seed, in a fixed order:
prompt lengths (one per problem), then output lengths (problem-major, one per sample), then arrival
gaps. The same workload and seed therefore always give the same requests. A trace's ``sample`` draws
from a generator seeded the same way (see :mod:`kinsim.workload.replay`).
"""

from __future__ import annotations

import numpy as np

from kinsim.errors import SpecError
from kinsim.limits import MAX_TIME_S
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
    prompts = source.prompt_tokens.sample(rng, problems)
    outputs = np.minimum(source.output_tokens.sample(rng, problems * samples), source.max_output_tokens)
    if source.stagger_warmup and source.warmup:
        # warm-up request i generates (i + 1) / warmup of its length: the clients of a closed loop then
        # end their warm-up at evenly spread times and stay out of step, as a long benchmark's do
        head = min(source.warmup, len(outputs))
        outputs[:head] = np.maximum(1, np.ceil(outputs[:head] * np.arange(1, head + 1) / source.warmup))
    arrivals = np.zeros(problems)
    if isinstance(source.arrival, PoissonArrivals):
        arrivals = np.cumsum(rng.exponential(1.0 / source.arrival.rate, size=problems))
        if problems and not arrivals[-1] <= MAX_TIME_S:
            raise SpecError(f"the last of {problems:,} arrivals falls at {arrivals[-1]:.4g} s, beyond "
                            f"{MAX_TIME_S:,.0f} s, the latest arrival kinsim simulates (its clock is exact to the "
                            "nanosecond below that)", path="requests.arrival.rate",
                            hint="a higher rate or fewer problems")
    return RequestTable(np.repeat(arrivals, samples), np.repeat(prompts, samples), outputs,
                        np.repeat(np.arange(problems), samples), samples=samples)
