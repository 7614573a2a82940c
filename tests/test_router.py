"""The router's tournament tree chooses what a scan of every replica's load chooses, in whole simulations
(where loads change on placements, ends and handoffs) and on a hand-made sequence of loads."""

from __future__ import annotations

import pytest

from kinsim.engine import router as router_module
from kinsim.engine.router import Router, least_loaded
from kinsim.runner import simulate

from .test_engine import H100, workload


def test_the_tree_follows_changed_loads_with_ties_to_the_lowest_index():
    loads = [0, 0, 0, 0, 0]
    router = Router("least_loaded", 5, lambda i: loads[i])
    chosen = []
    for step in range(12):
        r = router.place(step)
        chosen.append(r)
        loads[r] += 1 + (r % 2)  # odd replicas fill twice as fast
        router.changed(r)
        if step == 6:  # replica 3 empties: it is the least loaded again
            loads[3] = 0
            router.changed(3)
    # by hand: steps 0-4 take 0, 1, 2, 3, 4 (loads then 1, 2, 1, 2, 1); step 5 takes 0 (load 1, lowest
    # index; loads 2, 2, 1, 2, 1), step 6 takes 2 (loads 2, 2, 2, 2, 1); replica 3 is then emptied, so
    # step 7 takes 3 (load 0) rather than 4 (load 1)
    assert chosen[:8] == [0, 1, 2, 3, 4, 0, 2, 3]
    for _ in range(3):
        assert router.place("x" + str(_)) == least_loaded(loads)
        r = least_loaded(loads)
        loads[r] += 1
        router.changed(r)


def test_a_load_changed_without_telling_the_router_is_not_seen():
    loads = [0, 0]
    router = Router("least_loaded", 2, lambda i: loads[i])
    assert router.place("a") == 0
    loads[0] = 5  # not marked: the tree still holds 0 for replica 0
    assert router.place("b") == 0
    router.changed(0)
    assert router.place("c") == 1


@pytest.mark.parametrize("changes", [
    {"deployment.data_parallel": 4, "deployment.router": "least_loaded", "requests.problems": 12,
     "requests.samples": 2, "requests.arrival": {"process": "poisson", "rate": "40 /s"}},
    {"deployment.data_parallel": 3, "requests.problems": 8, "requests.samples": 4,
     "requests.arrival": {"process": "closed_loop", "concurrency": 3}, "deployment.gpu_memory_fraction": 0.05},
    {"deployment.disaggregation": {"prefill": {"replicas": 2}, "decode": {"replicas": 3}},
     "deployment.router": "least_loaded", "requests.problems": 10, "requests.samples": 2,
     "requests.arrival": {"process": "poisson", "rate": "50 /s"}},
])
def test_every_placement_in_a_simulation_is_the_scans_choice(monkeypatch, changes):
    """Loads change on placements, ends (finishes and aborts) and handoffs; the simulation marks each, so
    the tree's choice is always the scan's (a missed mark would show here as a different replica)."""
    placements = []
    tree = Router._least_loaded

    def checked(self):
        choice = tree(self)
        scan = least_loaded([self.load(i) for i in range(self.replicas)])
        placements.append((choice, scan))
        return choice

    monkeypatch.setattr(router_module.Router, "_least_loaded", checked)
    result = simulate(workload(**changes), H100)
    assert len(placements) >= 8
    assert all(choice == scan for choice, scan in placements), placements
    assert len({choice for choice, _ in placements}) > 1  # the loads did spread the requests
    assert result["requests.completed"] + result["requests.unfinished"] == result["requests.total"]
