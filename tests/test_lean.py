"""The lean engine (:mod:`kinsim.engine.lean`) against the general engine on the runs it takes: every
request's timestamps identical, the rest of the records to 1e-12, and the runs it must refuse or hand back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinsim.engine import lean
from kinsim.engine.simulation import Simulation
from kinsim.hardware.load import load_hardware
from kinsim.workload.load import workload_from_raw

from .conftest import HARDWARE

H100 = load_hardware(HARDWARE / "h100.yaml")
TIMESTAMPS = ("arrival_s", "admitted_s", "first_token_s", "finish_s")
SEGMENT_COLUMNS = ("start_s", "end_s", "steps", "decode_seqs", "prefill_tokens", "tokens_out", "kv_peak_blocks",
                   "kv_block_s", "class_s", "class_flops", "class_bytes", "flops", "hbm_bytes", "compute_s",
                   "memory_s", "network_s")


def chat(problems=60, rate="20 /s", replicas=2, deployment=None, output=None, seed=3, arrival=None):
    raw = {"name": "chat", "model": {"preset": "Qwen3-8B"},
           "deployment": {"tensor_parallel": 1, "data_parallel": replicas, "router": "least_loaded",
                          **(deployment or {})},
           "requests": {"kind": "long_cot", "problems": problems,
                        "prompt_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.6},
                        "output_tokens": output or {"dist": "lognormal", "median": 120, "sigma": 0.7},
                        "max_output_tokens": 2048,
                        "arrival": arrival or {"process": "poisson", "rate": rate}},
           "seed": seed}
    return workload_from_raw(raw, Path("."))


def both(workload):
    """(lean records, general records) of one workload; the lean run must take it whole."""
    fast = Simulation(workload, H100, cost_model="roofline")
    assert lean.unsupported(fast) == ""
    lean_records = lean.LeanRun(fast).run()
    general = Simulation(workload, H100, cost_model="roofline")
    return lean_records, general._run_events()


def assert_same(a, b):
    for column in TIMESTAMPS:
        assert np.array_equal(getattr(a.sequences, column), getattr(b.sequences, column), equal_nan=True), column
    np.testing.assert_allclose(a.sequences.gpu_s, b.sequences.gpu_s, rtol=1e-12)
    assert len(a.segments) == len(b.segments)
    for column in SEGMENT_COLUMNS:
        np.testing.assert_allclose(a.segments.column(column), b.segments.column(column), rtol=1e-12, atol=0,
                                   err_msg=column)
    assert a.memory == b.memory


@pytest.mark.parametrize("deployment", [
    {},  # vLLM's defaults: chunked prefill in an 8,192-token budget
    {"chunked_prefill": False},  # whole prompts or wait
    {"max_num_batched_tokens": 700},  # prompts split over several steps
    {"max_num_seqs": 3},  # requests wait for a seat
    {"kv_cache_memory": "2 GB"},  # a cache of about 14,000 tokens (147 KB each), half of it used at peak
    {"schedule_ahead": True},  # each step planned while the previous one runs (vLLM 0.14+, SGLang)
    {"admission": "no_evict", "kv_cache_memory": "2 GB"},  # every admitted request's full length promised
    {"admission": "no_evict", "chunked_prefill": False, "schedule_ahead": True},  # as TensorRT-LLM schedules
], ids=["defaults", "whole_prompts", "small_budget", "few_seats", "small_kv", "ahead", "no_evict", "trtllm"])
def test_the_lean_engine_decides_and_times_every_step_as_the_general_engine(deployment):
    a, b = both(chat(deployment=deployment))
    assert_same(a, b)


@pytest.mark.parametrize("arrival", [
    {"process": "closed_loop", "concurrency": 8},  # each client sends as its request ends
    {"process": "closed_loop", "concurrency": 8, "stagger": True},  # ... after a pause in its first round
    {"process": "closed_loop", "concurrency": 5, "rounds": True},  # a round at a time
], ids=["continuous", "staggered", "rounds"])
def test_closed_loop_clients_send_as_on_the_general_engine(arrival):
    assert_same(*both(chat(problems=40, replicas=2, arrival=arrival, deployment={"frontend_s": "20 ms"})))


def test_one_replica_at_a_high_rate_and_many_replicas_at_a_low_one():
    assert_same(*both(chat(problems=80, rate="40 /s", replicas=1)))
    assert_same(*both(chat(problems=80, rate="5 /s", replicas=6)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replicas=st.integers(1, 4), rate=st.sampled_from(["2 /s", "10 /s", "50 /s"]),
       budget=st.sampled_from([256, 1024, 8192]), seats=st.sampled_from([2, 16, 256]),
       chunked=st.booleans(), seed=st.integers(0, 1000),
       clients=st.sampled_from([None, {"concurrency": 3}, {"concurrency": 12, "stagger": True},
                                {"concurrency": 6, "rounds": True}]),
       frontend=st.sampled_from(["0 ms", "15 ms"]), ahead=st.booleans(),
       admission=st.sampled_from(["greedy", "no_evict"]), memory=st.sampled_from([None, "3 GB", "1.5 GB"]))
def test_the_lean_engine_equals_the_general_engine_on_random_chat_runs(replicas, rate, budget, seats, chunked, seed,
                                                                       clients, frontend, ahead, admission, memory):
    workload = chat(problems=30, rate=rate, replicas=replicas, seed=seed,
                    arrival=None if clients is None else {"process": "closed_loop", **clients},
                    deployment={"max_num_batched_tokens": budget, "max_num_seqs": seats,
                                "chunked_prefill": chunked, "frontend_s": frontend, "schedule_ahead": ahead,
                                "admission": admission, "kv_cache_memory": memory})
    fast = Simulation(workload, H100, cost_model="roofline")
    general = Simulation(workload, H100, cost_model="roofline")
    try:
        records = lean.LeanRun(fast).run()
    except lean.Unsupported:  # a prompt beyond a whole-prompt budget or the cache: the general engine's to end
        return
    assert_same(records, general._run_events())


def test_preemption_by_recompute_as_on_the_general_engine():
    # 60 requests at 40 a second on one replica whose cache holds about 14,000 tokens: greedy admission fills
    # it, the decodes outgrow it, the newest resident is preempted and recomputed, several times
    a, b = both(chat(problems=60, rate="40 /s", replicas=1, deployment={"kv_cache_memory": "2 GB"}))
    assert_same(a, b)
    assert a.memory["preempt_recompute"] >= 3
    assert (a.sequences.preemptions > 0).sum() >= 3


def test_a_request_that_can_never_run_is_handed_back_and_the_run_started_over():
    # whole prompts in a 600-token budget: the general engine ends the longer prompts unfinished, which the
    # lean engine does not do; Simulation.run starts the run over there, with the general engine's records
    workload = chat(problems=30, replicas=1, deployment={"chunked_prefill": False, "max_num_batched_tokens": 600})
    with pytest.raises(lean.Unsupported, match="can never run"):
        lean.LeanRun(Simulation(workload, H100, cost_model="roofline")).run()
    handed = Simulation(workload, H100, cost_model="roofline").run()
    general = Simulation(workload, H100, cost_model="roofline")._run_events()
    for column in TIMESTAMPS:
        assert np.array_equal(getattr(handed.sequences, column), getattr(general.sequences, column), equal_nan=True)
    assert (handed.sequences.reason >= 0).sum() == (general.sequences.reason >= 0).sum() > 0
    assert len(handed.segments) == len(general.segments)


@pytest.mark.parametrize("change, reason", [
    ({"exact": True}, "exact steps"),
    ({"deployment.prefix_caching": True}, "a scheduling feature of the general engine"),
    ({"deployment.preemption": "swap"}, "a scheduling feature of the general engine"),
])
def test_what_the_lean_engine_leaves_to_the_general_engine_is_named(change, reason):
    workload = chat()
    raw_change = {k: v for k, v in change.items() if k != "exact"}
    if raw_change:
        from kinsim.schema import to_raw
        raw = to_raw(workload)
        for key, value in raw_change.items():
            section, name = key.split(".")
            raw[section][name] = value
        workload = workload_from_raw(raw, Path("."))
    sim = Simulation(workload, H100, cost_model="roofline", exact_steps=bool(change.get("exact")))
    assert lean.unsupported(sim) == reason


def test_a_cost_model_without_the_direct_pricing_is_left_to_the_general_engine():
    datasheet = Simulation(chat(), H100, cost_model="datasheet")
    assert lean.unsupported(datasheet) == "decode attention without its direct pricing"


def best_of_n(problems=4, samples=8, replicas=2, deployment=None, output_median=600, seed=5, arrival=None):
    raw = {"name": "bon", "model": {"preset": "Qwen3-8B"},
           "deployment": {"tensor_parallel": 1, "data_parallel": replicas, **(deployment or {})},
           "requests": {"kind": "best_of_n", "problems": problems, "samples": samples,
                        "prompt_tokens": {"dist": "uniform", "low": 100, "high": 400},
                        "output_tokens": {"dist": "lognormal", "median": output_median, "sigma": 0.6},
                        "max_output_tokens": 4096, "arrival": arrival or {"process": "all_at_once"}},
           "seed": seed}
    return workload_from_raw(raw, Path("."))


@pytest.mark.parametrize("deployment", [
    {},  # group affinity: a problem's samples on one replica, one prefill of their prompt
    {"router": "least_loaded"},  # samples spread: each replica holds its own copy of the prompt's blocks
    {"kv_cache_memory": "1 GB"},  # the cache holds about 7,000 tokens: samples preempted and recomputed
    {"admission": "no_evict", "kv_cache_memory": "3 GB"},
], ids=["affinity", "spread", "preempting", "no_evict"])
def test_best_of_n_groups_share_their_prompt_as_on_the_general_engine(deployment):
    a, b = both(best_of_n(deployment=deployment, output_median=900))
    assert_same(a, b)
    if deployment.get("kv_cache_memory") == "1 GB":  # recomputed samples prefill again, alone
        assert a.memory["preempt_recompute"] > 0 and a.memory["prefills"] > 4
    else:  # a group's samples prefill their prompt once, as followers of their lead
        assert a.memory["prefills"] < 4 * 8


def test_the_shipped_best_of_32_run_small_as_on_the_general_engine():
    from kinsim.workload.load import load_workload
    workload = load_workload(Path("workloads/aime_bon32.yaml"), {"requests.problems": 6, "deployment.data_parallel": 2})
    a, b = both(workload)
    assert_same(a, b)
    assert a.memory["preempt_recompute"] > 0


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replicas=st.integers(1, 3), router=st.sampled_from(["group_affinity", "least_loaded", "round_robin"]),
       samples=st.sampled_from([2, 4, 8]), memory=st.sampled_from([None, "1 GB", "0.7 GB"]),
       admission=st.sampled_from(["greedy", "no_evict"]), ahead=st.booleans(), chunked=st.booleans(),
       budget=st.sampled_from([512, 8192]), seats=st.sampled_from([3, 256]),
       arrival=st.sampled_from([None, {"process": "poisson", "rate": "2 /s"},
                                {"process": "closed_loop", "concurrency": 2}]),
       seed=st.integers(0, 1000))
def test_the_lean_engine_equals_the_general_engine_on_random_best_of_n_runs(replicas, router, samples, memory,
                                                                           admission, ahead, chunked, budget,
                                                                           seats, arrival, seed):
    workload = best_of_n(problems=3, samples=samples, replicas=replicas, seed=seed, arrival=arrival,
                         deployment={"router": router, "kv_cache_memory": memory, "admission": admission,
                                     "schedule_ahead": ahead, "chunked_prefill": chunked,
                                     "max_num_batched_tokens": budget, "max_num_seqs": seats})
    fast = Simulation(workload, H100, cost_model="roofline")
    general = Simulation(workload, H100, cost_model="roofline")
    try:
        records = lean.LeanRun(fast).run()
    except lean.Unsupported:  # a prompt beyond a whole-prompt budget or a sample beyond the cache
        return
    assert_same(records, general._run_events())


def test_long_runs_summed_as_arrays_as_on_the_general_engine():
    # Best-of-8 with long answers on one replica whose cache runs out: decode runs of hundreds of steps, whose
    # end is summed as arrays (_Replica._run_sums, for every run of _ARRAY_END_STEPS steps or more) and whose plan
    # finds where the blocks run out as arrays, and preemptions (the newest resident found by max over the
    # residents)
    a, b = both(best_of_n(problems=2, samples=8, replicas=1, output_median=1500,
                          deployment={"kv_cache_memory": "1 GB"}))
    assert_same(a, b)
    assert (a.segments.column("steps") >= lean._ARRAY_END_STEPS).sum() >= 5
    assert a.memory["preempt_recompute"] >= 1


@settings(max_examples=400, deadline=None)
@given(block=st.sampled_from([1, 2, 16, 32]), data=st.data())
def test_where_the_blocks_run_out_in_closed_form_is_the_step_by_step_count(block, data):
    # _blocks_last finds the first step by whose end the decodes took more than `room` blocks from the
    # periodic pattern; the scheduler counts them step by step (Scheduler._blocks_added)
    residues = data.draw(st.lists(st.integers(0, 5), min_size=block, max_size=block))
    if sum(residues) == 0:
        residues[0] = 1
    s = data.draw(st.integers(0, 5000))
    limit = data.draw(st.integers(2, 2048))
    room = data.draw(st.integers(-3, 3 * sum(residues) * limit // block + 10))
    expected, added = limit, 0
    for k in range(1, limit):
        added += residues[-(s + k) % block]
        if added > room:
            expected = k
            break
    assert lean._blocks_last(residues, block, s, sum(residues), room, limit) == expected
