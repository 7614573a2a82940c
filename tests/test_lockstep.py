"""Replicas under a load-reading router in processes that meet at every arrival (``--jobs``,
:mod:`kinsim.engine.lockstep`) give the one-process run's figures to the bit; what they cannot run stays in
one process and says why; an error or a hand-back in any process reaches the caller."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kinsim.engine import lean, lockstep
from kinsim.engine.simulation import Simulation
from kinsim.errors import SpecError
from kinsim.runner import simulate

from .test_engine import H100, hardware_with_kv_blocks, workload
from .test_parallel import _same_run

#: Single requests over Poisson arrivals, least-loaded routing: what the static split cannot run apart.
CHAT = {"requests.samples": 1, "requests.problems": 48, "deployment.router": "least_loaded",
        "requests.arrival": {"process": "poisson", "rate": "400 /s"},
        "requests.prompt_tokens": {"dist": "uniform", "low": 40, "high": 200},
        "requests.output_tokens": {"dist": "lognormal", "median": 40, "sigma": 0.6},
        "requests.max_output_tokens": 200}

CASES = [
    {"deployment.data_parallel": 2},
    {"deployment.data_parallel": 4, "deployment.router": "group_affinity"},  # groups of one: least-loaded
    {"deployment.data_parallel": 5, "deployment.schedule_ahead": True, "deployment.chunked_prefill": False},
    {"deployment.data_parallel": 3, "deployment.admission": "no_evict", "deployment.max_num_seqs": 3},
    {"deployment.data_parallel": 4, "deployment.frontend_s": "2 ms", "deployment.max_num_batched_tokens": 64,
     "deployment.max_num_seqs": 8},
]


@pytest.mark.parametrize("changes", CASES)
@pytest.mark.parametrize("jobs", [2, 3])
def test_processes_meeting_at_arrivals_give_the_one_process_figures(monkeypatch, changes, jobs):
    monkeypatch.setattr(lockstep, "usable_cores", lambda: 4)  # (3 processes on CI's 2 cores: slower, as right)
    w = workload(**{**CHAT, **changes})
    hw = hardware_with_kv_blocks(w, 32)  # a few hundred tokens a replica: preemptions
    assert lockstep.lockstep_why_not(Simulation(w, hw)) == ""
    one = simulate(w, hw)
    notes = []
    several = simulate(w, hw, jobs=jobs, notice=notes.append)
    assert notes == []
    assert several.records.jobs == min(jobs, changes["deployment.data_parallel"])
    # preemptions (no-evict admits only what can finish without them)
    assert (one.to_dict()["requests"]["preemptions"] > 0) == (changes.get("deployment.admission") != "no_evict")
    # the requests are spread over every replica (so every process served some)
    assert set(several.requests["replica"].tolist()) == set(range(changes["deployment.data_parallel"]))
    _same_run(one, several)


def test_meeting_processes_are_no_more_than_the_cores(monkeypatch):
    w = workload(**{**CHAT, "deployment.data_parallel": 4})
    monkeypatch.setattr(lockstep, "usable_cores", lambda: 2)
    notes = []
    several = simulate(w, H100, jobs=3, notice=notes.append)
    assert several.records.jobs == 2
    assert len(notes) == 1 and "each needs a core of its own: 2 of them ran" in notes[0]
    _same_run(simulate(w, H100), several)
    assert 1 <= lockstep.usable_cores() <= (os.cpu_count() or 1)


def test_arrivals_at_one_instant_are_routed_alike(tmp_path):
    """Several requests at one tick, some of them at the tick a replica's step ends: each process routes the
    whole instant with the same loads."""
    trace = tmp_path / "t.csv"
    rows = ["request_id,arrival_s,prompt_tokens,output_tokens"]
    for i in range(40):
        rows.append(f"r{i},{0.01 * (i // 4)},{60 + 17 * (i % 7)},{5 + 11 * (i % 5)}")
    trace.write_text("\n".join(rows) + "\n")
    w = workload(requests={"kind": "trace", "path": str(trace)},
                 **{"deployment.data_parallel": 3, "deployment.router": "least_loaded"})
    one = simulate(w, H100)
    several = simulate(w, H100, jobs=2)
    assert several.records.jobs == 2
    _same_run(one, several)


@pytest.mark.parametrize("changes, why", [
    ({"requests.samples": 3}, "groups of several requests"),
    ({"requests.arrival": {"process": "closed_loop", "concurrency": 2}}, "closed loop"),
    ({"deployment.prefix_caching": True}, "lean engine, which does not take"),
])
def test_what_cannot_meet_runs_in_one_process_and_says_why(changes, why):
    w = workload(**{**CHAT, "deployment.data_parallel": 3, "requests.problems": 8, **changes})
    notes = []
    result = simulate(w, H100, jobs=2, notice=notes.append)
    assert result.records.jobs == 1
    assert len(notes) == 1 and why in notes[0] and notes[0].startswith("--jobs 2:")
    _same_run(simulate(w, H100), result)


def test_other_machines_run_in_one_process(monkeypatch):
    w = workload(**{**CHAT, "deployment.data_parallel": 2})
    monkeypatch.setattr(lockstep.platform, "machine", lambda: "arm64")
    assert "x86's ordering of stores (this machine is arm64)" in lockstep.lockstep_why_not(Simulation(w, H100))


def test_a_request_that_can_never_run_hands_the_run_back():
    """A prompt beyond a replica's whole cache: the lean engine cannot end it, so the run starts over in one
    process on the general engine, with the same figures as a one-process run."""
    w = workload(**{**CHAT, "deployment.data_parallel": 2, "requests.problems": 12,
                    "requests.prompt_tokens": {"dist": "uniform", "low": 50, "high": 900}})
    hw = hardware_with_kv_blocks(w, 40)
    one = simulate(w, hw)
    assert any("never" in reason or "cache" in reason for reason in one.records.sequences.reasons)
    notes = []
    several = simulate(w, hw, jobs=2, notice=notes.append)
    assert several.records.jobs == 1 and len(notes) == 1 and "only the general engine" in notes[0]
    _same_run(one, several)


@pytest.mark.parametrize("process", [0, 1])
def test_an_error_in_either_process_reaches_the_caller(monkeypatch, process):
    """Process 0 is this one, process 1 a fork: either's error is raised here, and neither waits forever for
    the other."""
    w = workload(**{**CHAT, "deployment.data_parallel": 2})
    meet = lean.LeanRun._meet

    def failing(self, instant):
        if self.link.process == process and instant == 5:
            raise SpecError("failed on purpose", path="test")
        meet(self, instant)

    monkeypatch.setattr(lean.LeanRun, "_meet", failing)
    with pytest.raises(SpecError, match="failed on purpose"):
        simulate(w, H100, jobs=2)


def test_a_process_that_dies_is_an_error(monkeypatch):
    w = workload(**{**CHAT, "deployment.data_parallel": 2})
    monkeypatch.setattr(lockstep, "_work", lambda *args: os._exit(3))  # killed before it sends anything
    with pytest.raises(RuntimeError, match=r"lockstep run ended without its results \(exit code 3\)"):
        simulate(w, H100, jobs=2)  # (this process, waiting for it at a meeting, sees it gone)


def test_the_meeting_exchanges_the_changed_loads():
    """Two processes meet three times: each hears exactly what the other published at that meeting."""
    link = lockstep.Link(2, 5)  # process 0: replicas 0, 2, 4; process 1: replicas 1, 3
    said = {0: [[(0, 3), (4, 1)], [], [(2, 7)]], 1: [[(1, 2)], [(3, 5), (1, 0)], []]}
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # process 1
        try:
            link.bind(1)
            heard = [link.meet(instant, said[1][instant - 1]) for instant in (1, 2, 3)]
            os.write(writer, repr(heard).encode())
        finally:
            os._exit(0)
    link.bind(0)
    heard = [link.meet(instant, said[0][instant - 1]) for instant in (1, 2, 3)]
    os.waitpid(pid, 0)
    assert heard == said[1]
    assert eval(os.read(reader, 4096).decode()) == said[0]  # noqa: S307 - a repr this test wrote
    assert link.share(0) == [0, 2, 4] and link.share(1) == [1, 3]
    assert np.array_equal(link.own, [True, False, True, False, True])


def test_a_stopped_process_breaks_the_wait():
    link = lockstep.Link(2, 2)
    link.bind(0)
    link.stop()
    with pytest.raises(lockstep.LinkBroken):
        link.meet(1, [])  # process 1 never publishes: the stop flag ends the wait
