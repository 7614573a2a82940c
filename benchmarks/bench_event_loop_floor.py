"""What an event loop of kinsim's shape costs per request at the least, in pure Python: the floor an engine
redesign could approach (issue 17's million chat requests in a minute; docs/engine.md, "Performance").

It replays ``chat_poisson``'s shape (Poisson arrivals at 40 requests/s, log-normal prompts around 1,000 tokens
and answers around 500, eight replicas, least-loaded routing by requests in flight) with:

* one heap of events and one timer per replica (a superseded timer is skipped by its generation number);
* each replica's state as Python scalars kept incrementally (decoding sequences, their total context, a heap
  of finish steps), no NumPy call per event;
* a decode step priced as ``a(n) + b x total context`` (made-up coefficients, affine in the context as dense
  attention is), so a segment of ``k`` steps has a closed-form duration: no array over its steps;
* an arrival at a busy replica cutting its segment at the step that is running (the closed form solved for
  the step, as the engine cuts at a step boundary), then one mixed step prefilling the waiting prompts.

Left out, so the figure is a floor and not a prediction: KV blocks and preemption, per-step rounding of the
clock, records of segments and requests, the calibrated kernel model (not affine in the context), SimPy.

    python benchmarks/bench_event_loop_floor.py [--requests N]
"""

from __future__ import annotations

import argparse
import heapq
import math
import time

import numpy as np

REPLICAS = 8
RATE_PER_S = 40.0


def step_constant_s(n: int) -> float:
    """Made-up seconds of a decode step of ``n`` sequences, apart from attention."""
    return 3e-3 + 2e-5 * n


#: Made-up attention seconds per token of context in a decode step.
PER_CONTEXT_TOKEN_S = 1.5e-8


def prefill_s(tokens: int) -> float:
    """Made-up seconds of a step that prefills ``tokens`` prompt tokens."""
    return 1e-3 + 2e-5 * tokens


def segment_s(n: int, context: int, steps: int) -> float:
    """Closed-form seconds of ``steps`` decode steps of ``n`` sequences whose total context starts at
    ``context`` and grows by ``n`` a step."""
    return steps * step_constant_s(n) + PER_CONTEXT_TOKEN_S * (steps * context + n * steps * (steps - 1) / 2)


def steps_by(n: int, context: int, elapsed: float) -> int:
    """The step running ``elapsed`` seconds into a segment (0-based): the largest ``k`` with ``segment_s(k)``
    at most ``elapsed``, by the quadratic's root."""
    a = PER_CONTEXT_TOKEN_S * n / 2
    b = step_constant_s(n) + PER_CONTEXT_TOKEN_S * (context - n / 2)
    k = int((-b + math.sqrt(b * b + 4 * a * elapsed)) / (2 * a)) if a > 0 else int(elapsed / b)
    while segment_s(n, context, k + 1) <= elapsed:
        k += 1
    return k


class Replica:
    __slots__ = ("step", "n", "context", "finishes", "waiting", "in_flight", "generation", "started", "planned",
                 "prefilling", "busy")

    def __init__(self) -> None:
        self.step = self.n = self.context = self.in_flight = self.generation = self.planned = 0
        self.started = 0.0
        self.busy = False
        self.finishes: list[tuple[int, int]] = []  # (step of the last token, request)
        self.waiting: list[int] = []
        self.prefilling: list[int] | None = None  # the prompts of the mixed step running, if one is


def run(requests: int, seed: int = 0) -> tuple[float, int, int, int]:
    """Seconds of wall time to replay ``requests`` requests; how many finished, segments run (a mixed step is
    one), segments cut short by an arrival."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / RATE_PER_S, requests)).tolist()
    prompts = np.maximum(1, np.round(rng.lognormal(math.log(1000), 0.5, requests))).astype(int).tolist()
    answers = np.minimum(4096, np.maximum(1, np.round(rng.lognormal(math.log(500), 0.6, requests)))).astype(int)
    answers = answers.tolist()
    replicas = [Replica() for _ in range(REPLICAS)]
    events: list[tuple[float, int, int, int]] = [(arrivals[0], 0, -1, 0)]  # (time, kind, replica, generation)
    finished = nxt = segments = cuts = 0

    def plan(index: int, rep: Replica, now: float) -> None:
        nonlocal segments
        segments += 1
        rep.generation += 1
        rep.started = now
        rep.busy = True
        if rep.waiting:  # one mixed step: the waiting prompts and a step of every decoding sequence
            tokens = sum(prompts[i] for i in rep.waiting)
            duration = prefill_s(tokens) + (segment_s(rep.n, rep.context, 1) if rep.n else 0.0)
            rep.prefilling, rep.waiting, rep.planned = rep.waiting, [], 1
        elif rep.n:  # decode until the first finish
            rep.planned = rep.finishes[0][0] - rep.step
            duration = segment_s(rep.n, rep.context, rep.planned)
        else:
            rep.busy = False
            segments -= 1
            return
        heapq.heappush(events, (now + duration, 1, index, rep.generation))

    def apply(rep: Replica, steps: int) -> None:
        nonlocal finished
        rep.context += rep.n * steps
        rep.step += steps
        if rep.prefilling is not None:  # the mixed step's prompts join with their first token
            for i in rep.prefilling:
                heapq.heappush(rep.finishes, (rep.step + answers[i] - 1, i))
                rep.context += prompts[i] + 1
                rep.n += 1
            rep.prefilling = None
        while rep.finishes and rep.finishes[0][0] <= rep.step:
            _, i = heapq.heappop(rep.finishes)
            rep.n -= 1
            rep.context -= prompts[i] + answers[i]
            rep.in_flight -= 1
            finished += 1

    started = time.perf_counter()
    while events:
        now, kind, index, generation = heapq.heappop(events)
        if kind == 0:  # an arrival, routed to the replica with the fewest requests in flight
            i, nxt = nxt, nxt + 1
            if nxt < requests:
                heapq.heappush(events, (arrivals[nxt], 0, -1, 0))
            index = min(range(REPLICAS), key=lambda j: replicas[j].in_flight)
            rep = replicas[index]
            rep.in_flight += 1
            rep.waiting.append(i)
            if not rep.busy:
                plan(index, rep, now)  # idle: start at once
            elif rep.prefilling is None and rep.planned > 1:  # cut the decode segment after the running step
                done = steps_by(rep.n, rep.context, now - rep.started) + 1
                if done < rep.planned:
                    cuts += 1
                    rep.generation += 1
                    rep.planned = done
                    heapq.heappush(events, (rep.started + segment_s(rep.n, rep.context, done), 1, index,
                                            rep.generation))
            continue
        rep = replicas[index]
        if generation != rep.generation:  # superseded by a cut
            continue
        apply(rep, rep.planned)
        plan(index, rep, now)
    return time.perf_counter() - started, finished, segments, cuts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests to replay (default 100,000)")
    args = parser.parse_args(argv)
    wall, finished, segments, cuts = run(args.requests)
    print(f"{args.requests:,} requests, {finished:,} finished, {segments / args.requests:.2f} segments a request "
          f"({cuts / args.requests:.2f} cut by an arrival): {wall:.2f} s, {wall / args.requests * 1e6:.1f} us a "
          f"request (10^6 requests at this rate: {wall / args.requests * 1e6:.0f} s)")
    return 0 if finished == args.requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
