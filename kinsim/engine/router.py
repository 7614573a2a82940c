"""Placing requests on data-parallel replicas.

* ``round_robin``: request ``i`` goes to replica ``i mod R``.
* ``least_loaded``: the replica with the fewest outstanding requests (placed and not ended); ties go to
  the lowest index.
* ``group_affinity`` (default): all requests of a group go where the group's first request went, so the
  N samples of a Best-of-N problem share one prefill and one copy of the prompt's KV; a new group goes
  to the least-loaded replica.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class Router:
    """Chooses a replica per request; ``load(i)`` is replica ``i``'s outstanding requests. ``policy`` is one
    of :data:`kinsim.workload.spec.ROUTERS`, checked when the workload was validated."""

    def __init__(self, policy: str, replicas: int, load: Callable[[int], int]) -> None:
        self.policy, self.replicas, self.load = policy, replicas, load
        self._next = 0
        self._placed: dict[int | str, int] = {}

    def forget(self, group_id: int | str) -> None:
        """The group has ended: drop its placement (so memory does not grow with the groups served)."""
        self._placed.pop(group_id, None)

    def place(self, group_id: int | str) -> int:
        if self.policy == "round_robin":
            choice = self._next % self.replicas
            self._next += 1
            return choice
        if self.policy == "group_affinity" and group_id in self._placed:
            return self._placed[group_id]
        choice = least_loaded([self.load(i) for i in range(self.replicas)])
        self._placed[group_id] = choice
        return choice


def least_loaded(loads: Sequence[int]) -> int:
    """Index of the smallest load; the lowest index among equals."""
    return min(range(len(loads)), key=lambda i: (loads[i], i))
