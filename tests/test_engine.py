"""The engine: hand-checked timings, scheduler rules, conservation, determinism, fast-forward = exact."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinsim import load_hardware
from kinsim.cost.engine_overhead import ENGINE_OVERHEADS
from kinsim.cost.roofline import RooflineCost
from kinsim.cost.step_cost import price_step
from kinsim.engine.kv import kv_layout
from kinsim.engine.memory_budget import kv_bytes_per_memory_byte
from kinsim.engine.pricer import StepPricer
from kinsim.engine.router import Router, least_loaded
from kinsim.engine.sequence import FINISHED, UNFINISHED
from kinsim.errors import SpecError
from kinsim.ops.attention import PrefillChunk
from kinsim.ops.lower import StepBatch, decode_batch, lower_step
from kinsim.ops.op import OP_CLASSES
from kinsim.runner import simulate
from kinsim.workload.load import workload_from_raw
from kinsim.workload.request import Request
from kinsim.workload.spec import ENGINE_SCHEDULING, ENGINES

from .conftest import HARDWARE, ROOT, WORKLOADS

H100 = load_hardware(HARDWARE / "h100.yaml")

#: Figures that describe the engine's work rather than the simulated system.
ENGINE_ONLY = ("wall_time_s", "mode", "engine", "series")


def workload(**changes):
    raw = {
        "name": "test", "model": "Qwen3-0.6B",
        "deployment": {"tensor_parallel": 1, "data_parallel": 1},
        "requests": {"kind": "best_of_n", "problems": 2, "samples": 3, "prompt_tokens": 100,
                     "output_tokens": 20, "max_output_tokens": 1000},
    }
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return workload_from_raw(raw, base_dir=ROOT)


def figures(result):
    out = {k: v for k, v in result.to_dict().items() if k not in ENGINE_ONLY}
    out["latency_quantiles"] = result.to_dict()["series"]["latency_quantiles"]  # exact in both modes
    out["gpu_s"] = result.records.sequences.gpu_s.tolist()  # each request's share of the GPU time
    return out


def assert_same_figures(a: dict, b: dict, rel: float = 1e-9, path: str = "") -> None:
    assert a.keys() == b.keys(), path
    for key in a:
        x, y = a[key], b[key]
        where = f"{path}.{key}".lstrip(".")
        if isinstance(x, dict):
            assert_same_figures(x, y, rel, where)
        elif isinstance(x, list):
            assert len(x) == len(y), where
            assert x == pytest.approx(y, rel=rel, abs=1e-300), where
        elif isinstance(x, float) and isinstance(y, float):
            assert x == pytest.approx(y, rel=rel, abs=1e-300), where
        else:
            assert x == y, where


def with_kv_blocks(w, blocks: int):
    """``w`` with the KV memory per GPU (``deployment.kv_cache_memory``) that gives it exactly ``blocks`` KV
    blocks per replica (a disaggregated workload's roles hold that memory per GPU each)."""
    layout = kv_layout(w.model, w.deployment, w.attention, H100)
    budget = (blocks + 0.5) * layout.block_bytes
    for _ in range(2):  # the first try leaves out the windows of sliding layers, if any: add what is missing
        tight = w.with_overrides({"deployment.kv_cache_memory": f"{budget!r} B"})
        got = kv_layout(tight.model, tight.deployment, tight.attention, H100).total_blocks
        budget += (blocks - got) * layout.block_bytes
    assert got == blocks
    return tight


def hardware_with_kv_blocks(w, blocks: int):
    """H100 with its memory shrunk so that ``w`` gets exactly ``blocks`` KV blocks per replica."""
    layout = kv_layout(w.model, w.deployment, w.attention, H100)
    per_byte = kv_bytes_per_memory_byte(w.deployment, H100)
    capacity = H100.gpu.memory.capacity - (layout.total_blocks - blocks) * layout.block_bytes / per_byte
    hw = load_hardware(HARDWARE / "h100.yaml", {"gpu.memory.capacity": f"{capacity!r} B"})
    assert kv_layout(w.model, w.deployment, w.attention, hw).total_blocks == blocks
    return hw


def host_overhead(deployment, batch) -> float:
    """The serving engine's host time of one step: per step, and per sequence that gets a token."""
    overhead = ENGINE_OVERHEADS[deployment.engine]
    return overhead.step_s + batch.logit_rows * overhead.per_sequence_s


def step_time(model, deployment, policy, batch):
    """A step's kernels priced one by one, plus the engine's host time."""
    kernels = float(price_step(lower_step(model, deployment, policy, batch), RooflineCost(H100)).time_s)
    return kernels + host_overhead(deployment, batch)


# ----------------------------------------------------------------------------------- timings by hand
@pytest.mark.parametrize("attention", [{"policy": "dense"}, {"policy": "block_topk", "block_size": 16, "top_k": 4}])
def test_pricer_matches_lower_step_priced_step_by_step(attention):
    w = workload(model="Qwen3-8B", attention=attention, **{"deployment.tensor_parallel": 2})
    cost = RooflineCost(H100)
    pricer = StepPricer(w.model, w.deployment, w.attention, cost)
    rng = np.random.default_rng(0)
    context = rng.integers(10, 5000, size=5)[None, :] + np.arange(7)[:, None]
    segment = pricer.decode_segment(context.astype(float))
    for k in range(7):
        batch = decode_batch(context[k])
        step = price_step(lower_step(w.model, w.deployment, w.attention, batch), cost)
        host = host_overhead(w.deployment, batch)  # 5 sequences get a token
        assert segment.time_s[k] == pytest.approx(float(step.time_s) + host, rel=1e-12)
        for op_class, seconds in step.by_class().items():
            expected = float(seconds) + (host if op_class == "other" else 0.0)
            assert segment.class_s(op_class)[k] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    mixed = StepBatch(decode_context=context[0].astype(float), prefill=(PrefillChunk(300, 200, True),))
    expected = price_step(lower_step(w.model, w.deployment, w.attention, mixed), cost)
    assert pricer.step(mixed).time_s[0] == pytest.approx(float(expected.time_s) + host_overhead(w.deployment, mixed),
                                                          rel=1e-12)
    flops = sum(pricer.step(mixed).row(f"{c}_flops")[0] for c in OP_CLASSES)
    assert flops == pytest.approx(float(expected.total("flops")), rel=1e-12)



def test_one_request_takes_its_prefill_then_one_decode_step_per_further_token():
    w = workload(**{"requests.problems": 1, "requests.samples": 1, "requests.output_tokens": 5})
    result = simulate(w, H100)
    m, d, p = w.model, w.deployment, w.attention
    # the request reaches the engine after the serving frontend's time; prefill of the 100-token prompt
    # yields token 1; decode steps with 100..103 tokens cached yield 2..5
    expected = ENGINE_OVERHEADS[d.engine].frontend_s + step_time(m, d, p, StepBatch(prefill=(PrefillChunk(100),)))
    ttft = expected
    for cached in range(100, 104):
        expected += step_time(m, d, p, StepBatch(decode_context=np.array([cached], dtype=float)))
    # the engine's clock rounds each step to whole nanoseconds (kinsim/engine/clock.py)
    assert result["sim_time_s"] == pytest.approx(expected, abs=5 * 0.5e-9)
    assert result["latency.request.ttft.p50"] == pytest.approx(ttft, abs=0.5e-9)
    assert result["latency.request.tpot.p50"] == pytest.approx((expected - ttft) / 4, abs=5 * 0.5e-9)
    assert result["tokens.generated"] == 5


def test_best_of_n_prefills_the_prompt_once_and_shares_its_whole_blocks():
    w = workload(**{"requests.problems": 1, "requests.samples": 4, "requests.output_tokens": 40})
    result = simulate(w, H100)
    assert result["tokens.prefill_computed"] == 100
    layout = kv_layout(w.model, w.deployment, w.attention, H100)
    # 6 whole prompt blocks shared; each sample: its copy of the partial block (4 tokens) then growth to
    # 100 + 40 - 1 = 139 tokens at its last step -> ceil((139 - 96) / 16) = 3 private blocks.
    assert layout.shared_tokens(100) == 96
    assert result["kv.peak_bytes"] == (6 + 4 * 3) * layout.block_bytes


def test_a_model_that_does_not_fit_is_a_clear_error():
    w = workload(model="Qwen3-32B")
    small = load_hardware(HARDWARE / "h100.yaml", {"gpu.memory.capacity": "40 GB"})
    with pytest.raises(SpecError, match="does not fit") as error:
        simulate(w, small)
    assert error.value.path == "deployment.tensor_parallel"


# ----------------------------------------------------------------------------------- scheduler rules
def test_batch_limits_are_respected():
    w = workload(**{"requests.problems": 6, "requests.samples": 8, "deployment.max_num_seqs": 10,
                    "deployment.max_num_batched_tokens": 150, "requests.prompt_tokens": 300})
    result = simulate(w, H100)
    segments = result.records.segments
    assert max(s.decode_seqs for s in segments) <= 10
    assert max(s.decode_seqs + s.prefill_tokens for s in segments) <= 150
    assert max(s.prefill_tokens for s in segments) == 150 - 0  # a chunk fills the budget at the start
    assert result["requests.completed"] == 48


def test_preemption_takes_the_newest_sequence_and_recomputes_it():
    # 100 blocks of 16 tokens: two requests that grow to 999 tokens (63 blocks each) do not fit together,
    # so the later one is preempted and prefilled again (prompt and output so far) after the first ends.
    w = workload(**{"requests.problems": 2, "requests.samples": 1, "requests.output_tokens": 900,
                    "requests.arrival": {"process": "poisson", "rate": "1000 /s"}})
    hw = hardware_with_kv_blocks(w, 100)
    result = simulate(w, hw)
    first, second = result.records.sequences
    assert first.preemptions == 0 and second.preemptions >= 1
    assert first.state == second.state == FINISHED
    assert result["tokens.prefill_computed"] > 200  # the recompute came on top of the two prompts


def test_no_evict_admission_waits_for_room_instead_of_preempting():
    # The two requests above (each 63 blocks at its full 999 tokens) under TensorRT-LLM's policy: the second
    # is admitted only once the first has ended (126 > 100 - 1 watermark block), is never preempted and
    # computes its prompt once.
    w = workload(**{"requests.problems": 2, "requests.samples": 1, "requests.output_tokens": 900,
                    "requests.max_output_tokens": 900,
                    "requests.arrival": {"process": "poisson", "rate": "1000 /s"},
                    "deployment.admission": "no_evict"})
    result = simulate(w, hardware_with_kv_blocks(w, 100))
    first, second = result.records.sequences
    assert first.preemptions == second.preemptions == 0
    assert second.admitted_s >= first.finish_s
    assert result["tokens.prefill_computed"] == 200
    assert result["requests.completed"] == 2


@pytest.mark.parametrize("admission, cap, seated", [("no_evict", 100, 3), ("greedy", 100, 4), ("no_evict", 400, 1)])
def test_no_evict_seats_only_what_fits_at_full_length(admission, cap, seated):
    # Four 100-token prompts with 100 tokens each to generate: 199 tokens at the end, 13 blocks of 16 (7 for
    # the prompt). 40 blocks less a 1-block watermark hold three at full length (39), while greedy admission
    # takes all four prompts (28) at once. Sent with a cap of 400 tokens, a request reserves 499 tokens, 32
    # blocks: one at a time.
    w = workload(**{"requests.problems": 4, "requests.samples": 1, "requests.output_tokens": 100,
                    "requests.max_output_tokens": cap, "deployment.admission": admission})
    result = simulate(w, hardware_with_kv_blocks(w, 40))
    assert max(seg.decode_seqs for seg in result.records.segments) == seated
    assert (result["requests.preemptions"] == 0) == (admission == "no_evict")
    assert result["requests.completed"] == 4


def test_no_evict_ends_a_request_longer_than_the_cache_before_it_starts():
    w = workload(**{"requests.problems": 1, "requests.samples": 1, "requests.output_tokens": 900,
                    "requests.max_output_tokens": 900, "deployment.admission": "no_evict"})
    result = simulate(w, hardware_with_kv_blocks(w, 20))
    (seq,) = result.records.sequences
    assert seq.state == UNFINISHED and seq.generated == 0
    # 100 + 900 - 1 = 999 tokens: 63 blocks of 16, against 20 less a 1-block watermark
    assert "its 999 tokens at full length (admission: no_evict) need 63 KV-cache blocks" in seq.reason


@pytest.mark.parametrize("engine, chunked, admission", [("vllm", True, "greedy"), ("sglang", True, "greedy"),
                                                        ("trtllm", False, "no_evict"), ("none", True, "greedy")])
def test_an_engine_brings_its_scheduling_defaults(engine, chunked, admission):
    assert set(ENGINE_SCHEDULING) == set(ENGINES) == set(ENGINE_OVERHEADS)  # every engine has both presets
    d = workload(**{"deployment.engine": engine}).deployment
    assert (d.chunked_prefill, d.admission) == (chunked, admission)
    given = workload(**{"deployment.engine": engine, "deployment.chunked_prefill": not chunked,
                        "deployment.admission": "greedy"}).deployment
    assert (given.chunked_prefill, given.admission) == (not chunked, "greedy")


def test_an_unknown_admission_policy_names_the_key():
    with pytest.raises(SpecError, match=r"deployment\.admission.*must be one of greedy, no_evict"):
        workload(**{"deployment.admission": "lazy"})


def test_a_sequence_that_can_never_fit_ends_unfinished_with_a_reason():
    w = workload(**{"requests.problems": 1, "requests.samples": 1, "requests.output_tokens": 900})
    hw = hardware_with_kv_blocks(w, 20)
    result = simulate(w, hw)
    (seq,) = result.records.sequences
    assert seq.state == UNFINISHED
    assert "more KV-cache blocks than the replica holds" in seq.reason
    assert result["requests.unfinished"] == 1
    assert seq.generated == 20 * 16 - 100 + 1  # it ran until its 20 blocks were full
    assert f"at {100 + seq.generated} tokens" in seq.reason  # 320 cached, the 321st found no block


def test_sliding_window_bounds_the_blocks_a_sequence_holds():
    w = workload(**{"requests.problems": 1, "requests.samples": 2, "requests.output_tokens": 500,
                    "attention": {"policy": "sliding_window", "window": 64}})
    result = simulate(w, H100)
    layout = kv_layout(w.model, w.deployment, w.attention, H100)
    assert layout.window_blocks == 64 // 16 + 1
    assert max(s.kv_peak_blocks for s in result.records.segments) == 2 * 5


def test_routers_place_as_documented():
    loads = [3, 1, 1]
    assert least_loaded(loads) == 1
    rr = Router("round_robin", 3, lambda i: 0)
    assert [rr.place("g") for _ in range(4)] == [0, 1, 2, 0]
    counts = [0, 0]
    affinity = Router("group_affinity", 2, lambda i: counts[i])
    placed = []
    for group in ["a", "a", "b", "a", "c"]:
        r = affinity.place(group)
        counts[r] += 1
        affinity.changed(r)  # whoever changes a load tells the router
        placed.append(r)
    assert placed == [0, 0, 1, 0, 1]


def test_group_affinity_keeps_a_problem_on_one_replica_and_round_robin_spreads_it():
    w = workload(**{"deployment.data_parallel": 2, "requests.problems": 2, "requests.samples": 4})
    together = simulate(w, H100)
    assert {s.replica for s in together.records.sequences if s.request.group_id == "p0"} == {0}
    assert together["tokens.prefill_computed"] == 2 * 100
    spread = simulate(w, H100, {"deployment.router": "round_robin"})
    assert {s.replica for s in spread.records.sequences if s.request.group_id == "p0"} == {0, 1}
    assert spread["tokens.prefill_computed"] == 4 * 100  # each replica prefills each prompt


def test_tensor_parallel_steps_use_the_links():
    w = workload(**{"deployment.tensor_parallel": 2})
    result = simulate(w, H100)
    assert result["breakdown_s.communication"] > 0
    assert result["utilization.link"] > 0
    single = simulate(workload(), H100)
    assert single["breakdown_s.communication"] == 0 and single["utilization.link"] == 0


def test_same_instant_order_an_arrival_at_a_step_boundary_joins_the_next_step(tmp_path: Path):
    # Request a alone; b reaches the engine (the serving frontend's time after it arrives) exactly when a's
    # first step (its prefill) ends. By the documented order (step ends, then arrivals, then decisions) b
    # is admitted at that instant, in both modes.
    w = workload(**{"requests.problems": 1, "requests.samples": 1, "requests.output_tokens": 50})
    first_step = simulate(w, H100).records.segments[0].end_s
    frontend = ENGINE_OVERHEADS[w.deployment.engine].frontend_s
    trace = tmp_path / "trace.jsonl"
    rows = [{"request_id": "a", "arrival_s": 0.0, "prompt_tokens": 100, "output_tokens": 50},
            {"request_id": "b", "arrival_s": first_step - frontend, "prompt_tokens": 100, "output_tokens": 50}]
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tw = workload(requests={"kind": "trace", "path": str(trace)})
    for exact in (False, True):
        a, b = simulate(tw, H100, exact_steps=exact).records.sequences
        assert b.admitted_s == first_step


# ----------------------------------------------------------------------------------- properties
def check_invariants(result) -> None:
    seqs = result.records.sequences
    segments = result.records.segments
    # tokens conserved: every generated token was produced by exactly one step
    assert sum(s.tokens_out for s in segments) == sum(s.generated for s in seqs) == result["tokens.generated"]
    for s in seqs:
        if s.state == FINISHED:
            assert s.generated == s.request.output_tokens
            assert s.arrival_s <= s.admitted_s <= s.first_token_s <= s.finish_s
        else:
            assert s.state == UNFINISHED and s.reason
    # KV never above capacity (kv figures describe the replicas, or a disaggregated deployment's decode role)
    roles = result.records.replica_roles
    assert max((seg.kv_peak_blocks for seg in segments if roles[seg.replica] != "prefill"), default=0) \
        <= result["kv.capacity_blocks"]
    assert result["kv.peak_bytes"] <= result["kv.capacity_bytes"]
    split = result.to_dict().get("disaggregation")
    for role in ("prefill", "decode") if split else ():
        assert split[role]["kv_peak_bytes"] <= split[role]["kv_capacity_bytes"]
    host = result.to_dict()["memory"]["host"]
    assert host["peak_bytes"] <= host["capacity_bytes"]
    assert host["swap_in_bytes"] <= host["swap_out_bytes"]  # nothing comes back that did not go out
    # the requests' shares of the GPU time add up to the replicas' busy GPU-seconds, and none is negative
    busy_gpu_s = sum((seg.end_s - seg.start_s) * len(result.records.replica_gpus[seg.replica]) for seg in segments)
    assert seqs.gpu_s.sum() == pytest.approx(busy_gpu_s, rel=1e-9, abs=1e-12)
    assert (seqs.gpu_s >= 0.0).all()
    # per replica, steps do not overlap and time runs forward
    for replica in {seg.replica for seg in segments}:
        mine = [seg for seg in segments if seg.replica == replica]
        assert all(a.end_s <= b.start_s + 1e-12 for a, b in zip(mine, mine[1:]))


small_workloads = st.fixed_dictionaries({
    "requests.problems": st.integers(1, 5),
    "requests.samples": st.integers(1, 6),
    "requests.prompt_tokens": st.integers(1, 300),
    "requests.max_output_tokens": st.sampled_from([400, 1000]),  # the cap no-evict admission reserves
    "requests.output_tokens": st.fixed_dictionaries({"dist": st.just("uniform"), "low": st.integers(1, 20),
                                                     "high": st.integers(21, 400)}),
    "deployment.data_parallel": st.integers(1, 3),
    "deployment.tensor_parallel": st.sampled_from([1, 2]),
    "deployment.max_num_seqs": st.integers(4, 16),
    "deployment.max_num_batched_tokens": st.sampled_from([16, 64, 512]),
    "deployment.chunked_prefill": st.booleans(),
    "deployment.admission": st.sampled_from(["greedy", "no_evict"]),
    "deployment.schedule_ahead": st.booleans(),  # arrivals join a step later (async and overlap schedulers)
    "deployment.router": st.sampled_from(["group_affinity", "least_loaded", "round_robin"]),
    "requests.arrival": st.sampled_from([{"process": "all_at_once"}, {"process": "poisson", "rate": "50 /s"},
                                         {"process": "closed_loop", "concurrency": 2},
                                         {"process": "closed_loop", "concurrency": 2, "rounds": True}]),
    "deployment.engine": st.sampled_from(["vllm", "none"]),
    "deployment.allreduce": st.sampled_from(["auto", "nccl"]),
    "deployment.prefix_shared_read": st.booleans(),
    "deployment.prefix_caching": st.booleans(),
    "deployment.kv_offload": st.sampled_from(["none", "lru"]),  # lru turns prefix_caching on (it needs it)
    "deployment.preemption": st.sampled_from(["recompute", "swap"]),
    "deployment.host_kv_fraction": st.sampled_from([0.5, 1.5e-4]),  # 1.5e-4: a few blocks, then recompute
    "attention": st.sampled_from([{"policy": "dense"}, {"policy": "block_topk", "block_size": 16, "top_k": 2},
                                  {"policy": "sliding_window", "window": 40}, {"policy": "topk", "token_budget": 60},
                                  {"policy": "block_topk", "block_size": 16, "top_k": 2, "local_window": 8,
                                   "offload": True, "gpu_cache_blocks": 1, "cache_hit_rate": 0.5}]),
    # prefill and decode on separate replicas (data_parallel then 1): replicas per role
    # (and the decode role on its own hardware: a second cluster, KV over the network; or the prefill role at
    # tensor_parallel 2 whatever the deployment's: the memory is shrunk for the deployment's, so 2 always fits)
    "deployment.disaggregation": st.sampled_from([None, (1, 1), (1, 2), (2, 1), (1, 1, "hardware/h200.yaml"),
                                                  (1, 2, None, 2)]),
    # speculative decoding, half the time: self drafts (windowed or dense) or a separate draft model
    "deployment.speculative": st.none() | st.fixed_dictionaries({
        "tokens": st.integers(1, 3),
        "acceptance": st.sampled_from([0.0, 0.5, 0.8, 1.0]),
        "acceptance_model": st.sampled_from(["geometric", "constant"]),
    }, optional={"draft": st.just("Qwen3-0.6B"),
                 "draft_attention": st.sampled_from([{"policy": "dense"},
                                                     {"policy": "sliding_window", "window": 30}])}),
})

#: Examples of the fast = exact property: 200 in CI; KINSIM_PROPERTY_EXAMPLES=1000 (or more) after a change
#: to the scheduler, the pricer or the engine's events (docs/engine.md).
PROPERTY_EXAMPLES = int(os.environ.get("KINSIM_PROPERTY_EXAMPLES", "200"))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=small_workloads, kv_blocks=st.integers(30, 200), seed=st.integers(0, 5))
def test_fast_forward_equals_exact_steps_and_invariants_hold(changes, kv_blocks, seed):
    if changes["deployment.kv_offload"] != "none":
        changes = {**changes, "deployment.prefix_caching": True}
    if changes["attention"].get("offload"):  # offloaded KV already lives in host memory: no swap, no handoff
        changes = {**changes, "deployment.preemption": "recompute", "deployment.speculative": None,
                   "deployment.disaggregation": None}
    if changes["deployment.disaggregation"] is not None:
        prefill, decode, hardware, prefill_tp = (*changes["deployment.disaggregation"], None, None)[:4]
        changes = {**changes, "deployment.data_parallel": 1, "deployment.disaggregation": {
            "prefill": {"replicas": prefill, "tensor_parallel": prefill_tp},
            "decode": {"replicas": decode, "hardware": hardware}}}
    speculative = changes["deployment.speculative"]
    if speculative is not None:
        if "draft" in speculative:  # a separate draft runs dense attention: no draft_attention
            speculative = {key: value for key, value in speculative.items() if key != "draft_attention"}
        # a verify step computes tokens + 1 per decoding sequence: the step's budget must hold them all
        budget = max(changes["deployment.max_num_batched_tokens"],
                     changes["deployment.max_num_seqs"] * (speculative["tokens"] + 1))
        changes = {**changes, "deployment.speculative": speculative, "deployment.max_num_batched_tokens": budget}
    w = with_kv_blocks(workload(**changes, seed=seed), kv_blocks)  # memory per GPU: roles of any TP fit
    hw = H100
    fast = simulate(w, hw)
    exact = simulate(w, hw, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    check_invariants(fast)
    check_invariants(exact)
    assert fast["requests.completed"] + fast["requests.unfinished"] == len(fast.records.sequences)


#: The shipped workloads cut to a few problems and shorter outputs, on two replicas whose GPU memory is
#: shrunk so that the same behaviours show as in the full runs: KV-capacity preemptions and recomputation,
#: prompts shared by a group's samples, block selection, several groups per replica. The full workloads'
#: fast and exact runs are compared by benchmarks/bench_engine.py (minutes each in exact steps).
SMALL_VARIANTS = {
    "aime_longcot": {"requests.problems": 6, "requests.max_output_tokens": 4000},
    "aime_bon32": {"requests.problems": 3, "requests.max_output_tokens": 2000},
    "aime_bon32_blocktopk": {"requests.problems": 3, "requests.max_output_tokens": 2000},
}


@pytest.mark.parametrize("name", list(SMALL_VARIANTS))
def test_shipped_workloads_same_figures_in_both_modes(name):
    changes = {**SMALL_VARIANTS[name], "deployment.data_parallel": 2, "hw.gpu.memory.capacity": "22 GB"}
    fast = simulate(WORKLOADS / f"{name}.yaml", HARDWARE / "h100.yaml", changes)
    exact = simulate(WORKLOADS / f"{name}.yaml", HARDWARE / "h100.yaml", changes, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    assert fast["engine.events"] * 20 < exact["engine.events"]
    if name != "aime_longcot":  # Best-of-32 overflows the shrunk KV cache: preemptions are exercised
        assert fast["requests.preemptions"] > 0
    check_invariants(fast)


def test_runs_are_deterministic():
    a = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml", {"requests.problems": 6})
    b = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml", {"requests.problems": 6})
    assert json.dumps(figures(a), sort_keys=True) == json.dumps(figures(b), sort_keys=True)
    other = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml", {"requests.problems": 6}, seed=1)
    assert figures(other)["sim_time_s"] != figures(a)["sim_time_s"]


# ----------------------------------------------------------------------------------- physics
def test_one_decode_stream_is_no_faster_than_bandwidth_over_bytes_per_token():
    w = workload(model="Qwen3-8B", **{"requests.problems": 1, "requests.samples": 1, "deployment.engine": "none",
                                      "requests.prompt_tokens": 1000, "requests.output_tokens": 2000})
    result = simulate(w, H100)  # the kernels only: no serving engine's host time
    effective = H100.gpu.memory.bandwidth * max(H100.efficiency.gemm_memory, H100.efficiency.attention_memory)
    # every decode step reads all weights and at least the prompt's KV
    bound = effective / (w.model.weight_bytes + w.model.kv_bytes_per_token * 1000)
    decode_rate = 1.0 / result["latency.request.tpot.p50"]
    assert decode_rate <= bound
    assert decode_rate > 0.7 * bound  # and not absurdly slower: decode is bandwidth-bound


def test_block_topk_never_has_lower_task_throughput_than_dense_on_aime_best_of_n():
    dense = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml")
    sparse = simulate(WORKLOADS / "aime_bon32_blocktopk.yaml", HARDWARE / "h100.yaml")
    assert sparse["throughput.tasks_per_s"] >= dense["throughput.tasks_per_s"]
    assert sparse["breakdown_s.selection"] > 0 and dense["breakdown_s.selection"] == 0
    check_invariants(dense)
    assert math.isclose(sum(dense.to_dict()["breakdown_s"].values()),
                        sum(seg.end_s - seg.start_s for seg in dense.records.segments), rel_tol=1e-6)


def test_a_closed_loop_releases_the_next_problem_when_one_completes():
    w = workload(**{"requests.problems": 3, "requests.samples": 2,
                    "requests.arrival": {"process": "closed_loop", "concurrency": 1}})
    seqs = simulate(w, H100).records.sequences
    finish = {g: max(s.finish_s for s in seqs if s.request.group_id == g) for g in ("p0", "p1", "p2")}
    arrival = {g: min(s.arrival_s for s in seqs if s.request.group_id == g) for g in ("p0", "p1", "p2")}
    assert arrival == {"p0": 0.0, "p1": finish["p0"], "p2": finish["p1"]}


def test_a_closed_loop_in_rounds_releases_the_next_round_when_the_whole_round_has_ended():
    w = workload(**{"requests.problems": 5, "requests.samples": 1, "requests.output_tokens": {
                        "dist": "list", "values": [30, 10, 20, 40, 5]},
                    "requests.arrival": {"process": "closed_loop", "concurrency": 2, "rounds": True}})
    seqs = simulate(w, H100).records.sequences
    finish = {s.request.group_id: s.finish_s for s in seqs}
    arrival = {s.request.group_id: s.arrival_s for s in seqs}
    first_round = max(finish["p0"], finish["p1"])  # p1 (10 tokens) ends first; p2 waits for p0 (30)
    second_round = max(finish["p2"], finish["p3"])
    assert arrival == {"p0": 0.0, "p1": 0.0, "p2": first_round, "p3": first_round, "p4": second_round}


def test_a_staggered_closed_loop_spreads_the_second_round_over_the_first_requests_time():
    # four identical problems start together and end together (at D); client k then waits k/4 of D
    w = workload(**{"requests.problems": 12, "requests.samples": 1, "deployment.engine": "none",
                    "requests.arrival": {"process": "closed_loop", "concurrency": 4, "stagger": True}})
    seqs = simulate(w, H100).records.sequences
    first = [s for s in seqs if s.request.group_id in ("p0", "p1", "p2", "p3")]
    assert {s.arrival_s for s in first} == {0.0} and len({s.finish_s for s in first}) == 1
    d = first[0].finish_s
    second = sorted(s.arrival_s for s in seqs if s.request.group_id in ("p4", "p5", "p6", "p7"))
    assert second == pytest.approx([d, d + d / 4, d + d / 2, d + 3 * d / 4], abs=2e-9)  # to the tick (1 ns)
    # the pause is the first round's only: the third round's problems are sent as the second's end
    third = sorted(s.arrival_s for s in seqs if s.request.group_id in ("p8", "p9", "p10", "p11"))
    assert third == sorted(s.finish_s for s in seqs if s.request.group_id in ("p4", "p5", "p6", "p7"))


def test_a_staggered_closed_loop_in_rounds_is_refused():
    with pytest.raises(SpecError, match="rounds"):
        workload(**{"requests.arrival": {"process": "closed_loop", "concurrency": 2, "rounds": True,
                                         "stagger": True}})


def test_the_serving_frontend_delays_a_request_into_the_engine_and_counts_in_its_ttft():
    w = workload(**{"requests.problems": 1, "requests.samples": 1, "deployment.frontend_s": "0 s"})
    plain = simulate(w, H100).records.sequences[0]
    frontend = 0.0125  # s, a whole number of ticks
    late = simulate(workload(**{"requests.problems": 1, "requests.samples": 1,
                                "deployment.frontend_s": "12.5 ms"}), H100).records.sequences[0]
    assert late.arrival_s == plain.arrival_s == 0.0
    assert late.admitted_s == pytest.approx(plain.admitted_s + frontend, abs=1e-12)
    assert late.first_token_s == pytest.approx(plain.first_token_s + frontend, abs=1e-12)
    assert late.finish_s - late.first_token_s == pytest.approx(plain.finish_s - plain.first_token_s, abs=1e-12)
    # absent, the engine preset's: vLLM's
    preset = simulate(workload(**{"requests.problems": 1, "requests.samples": 1}), H100).records.sequences[0]
    assert preset.admitted_s == pytest.approx(plain.admitted_s + ENGINE_OVERHEADS["vllm"].frontend_s, abs=1e-12)
    with pytest.raises(SpecError, match="frontend_s"):
        workload(**{"deployment.frontend_s": "-1 ms"})


def test_trace_requests_replay(tmp_path: Path):
    trace = tmp_path / "t.csv"
    trace.write_text("request_id,arrival_s,prompt_tokens,output_tokens\nr1,0.0,50,10\nr2,0.5,60,12\n")
    result = simulate(workload(requests={"kind": "trace", "path": str(trace)}), H100)
    r1, r2 = result.records.sequences
    # admitted once the serving frontend has handed it on (r1 is long done by then)
    assert r2.arrival_s == 0.5 and r2.admitted_s == pytest.approx(0.5 + ENGINE_OVERHEADS["vllm"].frontend_s, abs=1e-12)
    assert result["tokens.generated"] == 22
    assert isinstance(r1.request, Request)


@pytest.mark.parametrize("transferred", [False, True])  # the A100's own profile, the H100's transferred
@pytest.mark.parametrize("kv_heads", [8, 16])  # Qwen3-0.6B's 16 query heads: grouped, then multi-head
def test_fast_forward_equals_exact_steps_with_flashattention2_kernels(kv_heads, transferred):
    # an A100 runs FlashAttention-2 (gpu.attention_kernels: flash2), priced by its own profile (fitted on
    # FlashAttention-2) or by the H100's transferred: segments take the generic pricing path, whose splits
    # change with the context as FA2's heuristic says
    w = workload(**{"model": {"preset": "Qwen3-0.6B", "kv_heads": kv_heads}, "requests.problems": 3,
                    "requests.samples": 4, "requests.output_tokens": 300, "requests.max_output_tokens": 300,
                    "requests.prompt_tokens": 900})
    h100_profile = {"calibration": {"from": str(HARDWARE / "calibration" / "h100.yaml")}}
    hw = load_hardware(HARDWARE / "a100.yaml", h100_profile if transferred else None)
    assert hw.gpu.attention_kernels == "flash2"
    assert (hw.calibration.attention_kernels or "flash3") == ("flash3" if transferred else "flash2")
    # FlashAttention-3's split is written out in the direct decode pricing: an A100 must not take it
    pricer = StepPricer(w.model, w.deployment, w.attention, RooflineCost(hw))
    assert pricer._direct_of(4) is None
    assert StepPricer(w.model, w.deployment, w.attention, RooflineCost(H100))._direct_of(4) is not None
    fast = simulate(w, hw)
    exact = simulate(w, hw, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    assert fast["engine.segments"] < exact["engine.segments"]  # it did fast-forward
