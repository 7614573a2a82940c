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
    of :data:`kinsim.workload.spec.ROUTERS`, checked when the workload was validated.

    The least-loaded replica is read from a tournament tree of ``(load, index)`` pairs, so placing a
    request costs ``O(log R)`` rather than a scan of all ``R`` replicas (on 64 replicas the scan was about a
    tenth of a chat run's time under cProfile). The tree is refreshed from ``load`` for the replicas marked with
    :meth:`changed` since the last placement: whoever changes a replica's outstanding requests (a
    placement, an end, a handoff) marks it. The choice is the scan's: the smallest load, the lowest index
    among equals (``tests/test_router.py`` checks them against each other)."""

    def __init__(self, policy: str, replicas: int, load: Callable[[int], int]) -> None:
        self.policy, self.replicas, self.load = policy, replicas, load
        self._next = 0
        self._placed: dict[int | str, int] = {}
        self._size = 1 << max(0, (replicas - 1).bit_length())  # leaves: a power of two >= replicas
        self._tree = [(0, 0)] * (2 * self._size)
        for i in range(self._size):  # leaves past the last replica never win
            self._tree[self._size + i] = (0, i) if i < replicas else (float("inf"), i)
        for node in range(self._size - 1, 0, -1):
            self._tree[node] = min(self._tree[2 * node], self._tree[2 * node + 1])
        self._dirty: set[int] = set(range(replicas))

    def changed(self, replica: int) -> None:
        """Replica ``replica``'s outstanding requests may have changed (read again at the next placement)."""
        self._dirty.add(replica)

    def marked(self) -> list[int]:
        """The replicas marked with :meth:`changed` since the last placement."""
        return list(self._dirty)

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
        choice = self._least_loaded()
        self._placed[group_id] = choice
        return choice

    def _least_loaded(self) -> int:
        tree, load = self._tree, self.load
        for replica in self._dirty:
            node = self._size + replica
            tree[node] = (load(replica), replica)
            node >>= 1
            while node:
                left, right = tree[2 * node], tree[2 * node + 1]
                tree[node] = left if left <= right else right
                node >>= 1
        self._dirty.clear()
        return tree[1][1]


def least_loaded(loads: Sequence[int]) -> int:
    """Index of the smallest load; the lowest index among equals."""
    return min(range(len(loads)), key=lambda i: (loads[i], i))
