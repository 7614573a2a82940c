"""Replicas split among processes (``--jobs``, :mod:`kinsim.engine.parallel`) give the one-process run's
figures to the bit, where the replicas are independent simulations; elsewhere the run stays in one process
and says why."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinsim.cli import main
from kinsim.engine import parallel
from kinsim.engine.simulation import Simulation
from kinsim.errors import SpecError
from kinsim.report.summary import summary_rows
from kinsim.runner import simulate

from .test_engine import H100, hardware_with_kv_blocks, workload

#: What differs between a run in one process and in several: each process counts its own SimPy events.
PER_PROCESS = ("events", "jobs")


def _same_run(a, b) -> None:
    """Every figure, request and segment of two results equal to the bit, engine events and jobs aside."""
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        d.pop("wall_time_s")
        for key in PER_PROCESS:
            d["engine"].pop(key)
    assert json.dumps(da, sort_keys=True) == json.dumps(db, sort_keys=True)
    assert a.requests.equals(b.requests)
    assert a.steps.equals(b.steps)


# Best-of-N sent at once (every router: placements see only earlier placements), and round-robin over open
# arrivals; tight KV so that preemptions happen, and uneven replicas' work.
CASES = [
    {"deployment.data_parallel": 4, "requests.problems": 7, "requests.samples": 4, "requests.output_tokens":
     {"dist": "lognormal", "median": 200, "sigma": 0.6}},
    {"deployment.data_parallel": 5, "deployment.router": "least_loaded", "requests.problems": 9,
     "requests.samples": 3},
    {"deployment.data_parallel": 3, "deployment.router": "round_robin", "requests.problems": 20,
     "requests.samples": 2, "requests.arrival": {"process": "poisson", "rate": "30 /s"}},
    # per-replica counters of swaps, the prefix cache and speculative decoding joined in replica order
    {"deployment.data_parallel": 3, "requests.problems": 6, "requests.samples": 4, "requests.output_tokens": 200,
     "deployment.preemption": "swap", "deployment.prefix_caching": True,
     "deployment.speculative": {"tokens": 2, "acceptance": 0.6}},
]


@pytest.mark.parametrize("changes", CASES)
@pytest.mark.parametrize("jobs", [2, 3])
def test_several_processes_give_the_one_process_figures(changes, jobs):
    w = workload(**changes)
    hw = hardware_with_kv_blocks(w, 40)  # a few hundred tokens a replica: preemptions
    one = simulate(w, hw)
    several = simulate(w, hw, jobs=jobs)
    assert one.records.jobs == 1 and several.records.jobs == jobs
    assert f"(fast_forward, {jobs} processes)" in dict(summary_rows(several.to_dict()))["makespan"]
    assert one.to_dict()["requests"]["preemptions"] > 0 or changes["deployment.data_parallel"] != 4
    if "deployment.speculative" in changes:  # the counters that are summed over replicas are there to join
        memory = one.records.memory
        assert memory["spec_verify_steps"] > 0 and memory["preempt_swap"] > 0 and memory["prefills"] > 0
    _same_run(one, several)


def test_placement_replays_the_router_and_shares_balance_the_work():
    w = workload(**{"deployment.data_parallel": 3, "requests.problems": 4, "requests.samples": 2,
                    "requests.prompt_tokens": {"dist": "uniform", "low": 50, "high": 400}})
    sim = Simulation(w, H100)
    placement, why = parallel.placement_of(sim)
    assert why == ""
    # group affinity at one instant: groups 0, 1, 2 to replicas 0, 1, 2 (each the least loaded, lowest index
    # on ties), group 3 to replica 0 again (loads 2, 2, 2); both samples of a group on its replica
    assert placement.tolist() == [0, 0, 1, 1, 2, 2, 0, 0]
    ran = simulate(w, H100)
    assert ran.requests["replica"].tolist() == placement.tolist()
    # the heaviest replica first onto the lightest share: replica 0 holds two groups
    work = np.bincount(placement, weights=(sim.requests.prompt_tokens + sim.requests.output_tokens).astype(float))
    shares = parallel.shares_of(sim, placement, 2)
    heavy = int(np.argmax(work))
    assert [heavy] in shares and sorted(r for share in shares for r in share) == [0, 1, 2]


@pytest.mark.parametrize("changes, why", [
    ({"deployment.data_parallel": 3, "deployment.router": "least_loaded",
      "requests.arrival": {"process": "poisson", "rate": "30 /s"}}, "loads when it arrives"),
    ({"deployment.data_parallel": 3, "requests.arrival": {"process": "closed_loop", "concurrency": 2}},
     "closed loop"),
    ({"deployment.data_parallel": 1}, "one replica"),
])
def test_dependent_replicas_run_in_one_process_and_say_why(changes, why):
    w = workload(**{"requests.problems": 6, **changes})
    notes = []
    result = simulate(w, H100, jobs=2, notice=notes.append)
    assert result.records.jobs == 1
    assert len(notes) == 1 and why in notes[0] and notes[0].startswith("--jobs 2:")
    _same_run(simulate(w, H100), result)


def test_summary_records_run_in_one_process():
    w = workload(**{"deployment.data_parallel": 2, "requests.problems": 4})
    notes = []
    assert simulate(w, H100, jobs=2, records="summary", notice=notes.append).records.jobs == 1
    assert "--records summary" in notes[0]


def test_a_worker_error_is_raised_in_the_parent(monkeypatch):
    """The last share runs in a worker: an error there reaches the caller as the same error."""
    w = workload(**{"deployment.data_parallel": 2, "requests.problems": 4})
    serve_only = Simulation.serve_only

    def failing(self, placement, replicas):
        if 1 in replicas:
            raise SpecError("worker failed on purpose", path="test")
        serve_only(self, placement, replicas)

    monkeypatch.setattr(Simulation, "serve_only", failing)
    with pytest.raises(SpecError, match="worker failed on purpose"):
        simulate(w, H100, jobs=2)


def test_cli_jobs_must_be_positive(capsys, tmp_path):
    code = main(["run", "workloads/aime_bon32.yaml", "--hw", "hardware/h100.yaml", "--jobs", "0",
                 "--json", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code == 2 and "--jobs" in err and "at least 1" in err and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_a_worker_that_dies_without_results_is_an_error(monkeypatch):
    import os

    w = workload(**{"deployment.data_parallel": 2, "requests.problems": 4})
    monkeypatch.setattr(parallel, "_work", lambda *args: os._exit(3))  # killed before it sends anything
    with pytest.raises(RuntimeError, match=r"ended without its results \(exit code 3\)"):
        simulate(w, H100, jobs=2)


def test_a_result_crosses_the_pipe_whole_and_its_arrays_die_with_their_last_holder():
    """send_result/receive_result: nested arrays (in dicts and namespaces) come back equal, with their dtypes
    and shapes; with the garbage collector off, an array taken out of the payload is freed as soon as its
    holder lets go (a recursive closure once kept every array of a million-request result alive until the
    collector ran: 360 MB held through the join)."""
    import gc
    import multiprocessing
    import weakref
    from types import SimpleNamespace

    receiver, sender = multiprocessing.Pipe(duplex=False)
    sent = {"segments": {"end_s": np.arange(5.0), "class_s": np.ones((5, 3))},
            "meta": SimpleNamespace(rows=np.array([3, 1], dtype=np.int32), events=7), "events": 9}
    parallel.send_result(sender, "ok", sent)
    enabled = gc.isenabled()
    gc.disable()
    try:
        kind, got = parallel.receive_result(None, receiver, "test run")
        assert kind == "ok" and got["events"] == 9 and got["meta"].events == 7
        assert got["meta"].rows.dtype == np.int32 and got["meta"].rows.tolist() == [3, 1]
        assert np.array_equal(got["segments"]["class_s"], np.ones((5, 3)))
        column = got["segments"].pop("end_s")
        assert column.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        alive = weakref.ref(column)
        del column
        assert alive() is None
    finally:
        if enabled:
            gc.enable()
        receiver.close()
        sender.close()
