"""Resources shared max-min fairly by concurrent flows of work (a fluid model).

A *flow* is a piece of work that takes ``work_s`` seconds when it runs alone, and while running at full
speed occupies a share ``usage[r]`` (0 to 1) of each resource ``r`` it touches: a decode step on one GPU
uses, say, 0.95 of its HBM bandwidth and 0.1 of its compute; an all-reduce uses its links. A flow runs
at a rate ``x`` between 0 and 1 (progress per second relative to running alone); the rates of all flows
are the max-min fair allocation under ``sum_f usage[r, f] x_f <= 1`` for every resource ``r``
(progressive filling: raise every unfrozen flow's rate together, freeze the flows of a resource when it
saturates and a flow when it reaches 1). Rates are recomputed whenever a flow starts or ends, so a flow
alone finishes exactly ``work_s`` after it starts, and two flows that each need a whole link take twice
as long.

This module uses SimPy only through the environment handed to it (the engine owns it). Times are in
that environment's unit: names end in ``_s``, and the tests use seconds, but the engine's clock counts
whole nanoseconds (:mod:`kinsim.engine.clock`), so there every ``*_s`` value here is in ticks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import simpy

#: A flow whose remaining work is below this share of its work is done (absorbs float rounding).
DONE_TOLERANCE = 1e-12


@dataclass(eq=False)
class Flow:
    """Work in progress: ``remaining_s`` seconds of stand-alone work left, progressing at ``rate``."""

    name: str
    work_s: float
    usage: Mapping[str, float]
    done: simpy.Event
    remaining_s: float = 0.0
    rate: float = 0.0
    started_s: float = 0.0


@dataclass
class FluidNetwork:
    """The resources of a simulation and the flows crossing them.

    Attributes:
        busy_s: per resource, the integral of its used share over time (seconds at full use).
    """

    env: simpy.Environment
    flows: list[Flow] = field(default_factory=list)
    busy_s: dict[str, float] = field(default_factory=dict)
    _last_s: float = 0.0
    _generation: int = 0
    _users: dict[str, int] = field(default_factory=dict)
    _shared: int = 0  # resources with more than one flow; while 0 every flow runs at full speed

    def start(self, name: str, work_s: float, usage: Mapping[str, float]) -> Flow:
        """Start a flow now; its ``done`` event fires when its work is complete."""
        for resource, share in usage.items():
            if not 0.0 <= share <= 1.0 + 1e-9:
                raise ValueError(f"flow {name!r}: usage of {resource!r} must be within [0, 1], got {share!r}")
        self._advance()
        flow = Flow(name, float(work_s), dict(usage), self.env.event(), float(work_s), 0.0, self.env.now)
        if flow.work_s <= 0.0:
            flow.done.succeed(flow)
            return flow
        self.flows.append(flow)
        for resource in flow.usage:
            count = self._users.get(resource, 0) + 1
            self._users[resource] = count
            if count == 2:
                self._shared += 1
        self._reshare()
        self._schedule_next()
        return flow

    def resize(self, flow: Flow, work_s: float) -> None:
        """Change a running flow's total work to ``work_s`` (at least what it has done already)."""
        self._advance()
        done_s = flow.work_s - flow.remaining_s
        flow.remaining_s = max(work_s - done_s, 0.0)
        flow.work_s = work_s
        self._complete_finished()
        self._reshare()
        self._schedule_next()

    # ----------------------------------------------------------------------------------- internals
    def _advance(self) -> None:
        elapsed = self.env.now - self._last_s
        if elapsed > 0.0:
            for flow in self.flows:
                flow.remaining_s -= flow.rate * elapsed
        self._last_s = self.env.now

    def _reshare(self) -> None:
        """Max-min fair rates by progressive filling."""
        flows = self.flows
        if not self._shared:  # the common case: no resource has two flows, so each runs at full speed
            for flow in flows:
                flow.rate = 1.0
            return
        left: dict[str, float] = {}
        for flow in flows:
            for resource in flow.usage:
                left[resource] = 1.0
        unfrozen = list(flows)
        level = 0.0
        while unfrozen:
            demand: dict[str, float] = {}
            for flow in unfrozen:
                for resource, share in flow.usage.items():
                    if share > 0.0:
                        demand[resource] = demand.get(resource, 0.0) + share
            step = 1.0 - level
            for resource, total in demand.items():
                step = min(step, left[resource] / total)
            level += step
            for resource, total in demand.items():
                left[resource] -= step * total
            saturated = {r for r, total in demand.items() if left[r] <= 1e-12 * total}
            still = []
            for flow in unfrozen:
                if level >= 1.0 - 1e-15 or any(flow.usage.get(r, 0.0) > 0.0 for r in saturated):
                    flow.rate = min(level, 1.0)
                else:
                    still.append(flow)
            unfrozen = still

    def _schedule_next(self) -> None:
        self._generation += 1
        if not self.flows:
            return
        delay = min(flow.remaining_s / flow.rate for flow in self.flows)
        generation = self._generation
        timer = self.env.timeout(max(delay, 0.0))
        timer.callbacks.append(lambda _event: self._on_timer(generation))

    def _on_timer(self, generation: int) -> None:
        if generation != self._generation:
            return  # superseded by a later start, resize or completion
        self._advance()
        self._complete_finished()
        self._reshare() if self.flows else None
        self._schedule_next()

    def _complete_finished(self) -> None:
        # Done: what is left is within the tolerance of its work, or would take less than the clock can add
        # to now (late in a long run, a time of 1e10 absorbs a remainder below about 1e-6; waiting for it
        # would fire the same instant forever).
        now = self.env.now
        finished = [f for f in self.flows if f.remaining_s <= DONE_TOLERANCE * f.work_s
                    or (f.rate > 0.0 and now + f.remaining_s / f.rate == now)]
        if not finished:
            return
        self.flows = [f for f in self.flows if f not in finished]
        for flow in finished:
            flow.remaining_s = 0.0
            for resource, share in flow.usage.items():
                # the integral of share x rate over the flow's life is share x work
                self.busy_s[resource] = self.busy_s.get(resource, 0.0) + share * flow.work_s
                count = self._users[resource] - 1
                self._users[resource] = count
                if count == 1:
                    self._shared -= 1
            flow.done.succeed(flow)
