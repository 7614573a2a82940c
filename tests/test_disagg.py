"""Disaggregated prefill and decode: the KV handoff, its transfer times by hand, the roles' figures."""

from __future__ import annotations

import pytest

from kinsim.errors import SpecError
from kinsim.metrics import METRIC_DOCS, expand_key
from kinsim.runner import simulate

from .test_engine import H100, assert_same_figures, check_invariants, figures, workload

#: Qwen3-0.6B's KV per token: 28 layers x 8 KV heads x 128 dims x 2 (K and V) x 2 bytes (bf16) = 114,688 B;
#: a block of 16 tokens: 1,835,008 B (one GPU holds all 8 KV heads at tensor_parallel 1).
BLOCK_BYTES = 28 * 8 * 128 * 2 * 2 * 16
#: H100 (hardware/h100.yaml): NVLink 450 GB/s per GPU each way through the NVSwitch, 2 us GPU to GPU (1 us
#: per hop), copies at node.gpu_link.copy_efficiency 0.85 by default.
NVLINK_COPY = 450e9 * 0.85
LATENCY = 2e-6
TICK = 1e-9  # the engine's clock counts whole nanoseconds: latency and bandwidth time round to them


def disaggregated(prefill: int = 1, decode: int = 1, **changes):
    return workload(**{"deployment.disaggregation": {"prefill": {"replicas": prefill},
                                                     "decode": {"replicas": decode}}, **changes})


def one_prompt(problems: int = 1, samples: int = 1, prompt: int = 160, output: int = 3, **changes):
    return disaggregated(**{"requests.problems": problems, "requests.samples": samples,
                            "requests.prompt_tokens": prompt, "requests.output_tokens": output, **changes})


def test_one_transfer_takes_bytes_over_bandwidth_times_efficiency_plus_latency():
    result = simulate(one_prompt(), H100)
    d = result.to_dict()["disaggregation"]
    # a 160-token prompt fills 10 whole blocks; the sequence has no private token yet (its first token's KV is
    # written by its first decode step), so 10 blocks move: 18,350,080 B
    assert d["transfers"] == 1
    assert d["kv_transferred_bytes"] == 10 * BLOCK_BYTES
    alone = 10 * BLOCK_BYTES / NVLINK_COPY + LATENCY  # 47.974 us + 2 us
    assert d["transfer_s"]["p50"] == pytest.approx(alone, abs=2 * TICK)
    assert d["transfer_stall_s"]["p50"] == pytest.approx(alone, abs=2 * TICK)
    seq, = result.records.sequences
    assert seq.replica == 1  # it decoded (and ended) on the decode replica, GPU 1
    # prefill on replica 0 only, decode steps on replica 1 only
    segments = result.records.segments
    assert {s.replica for s in segments if s.prefill_tokens} == {0}
    assert {s.replica for s in segments if s.decode_seqs} == {1}
    check_invariants(result)


def test_two_transfers_sharing_a_link_each_take_twice_the_bandwidth_time():
    # two one-sample problems prefilled in one step and handed off together to the one decode replica: their
    # transfers start at once on the same links (GPU 0 -> switch -> GPU 1) and divide them
    result = simulate(one_prompt(problems=2), H100)
    d = result.to_dict()["disaggregation"]
    assert d["transfers"] == 2
    shared = 2 * 10 * BLOCK_BYTES / NVLINK_COPY + LATENCY
    assert d["transfer_s"]["p50"] == pytest.approx(shared, abs=2 * TICK)
    assert d["transfer_s"]["p99"] == pytest.approx(shared, abs=2 * TICK)
    # to two decode replicas (GPUs 1 and 2) they still share the prefill GPU's port into the switch
    spread = simulate(one_prompt(problems=2, **{"deployment.disaggregation.decode.replicas": 2}), H100)
    assert {s.replica for s in spread.records.sequences} == {1, 2}
    assert spread.to_dict()["disaggregation"]["transfer_s"]["p50"] == pytest.approx(shared, abs=2 * TICK)


def test_a_group_moves_its_shared_prompt_once():
    # Best-of-4 on a 100-token prompt: 6 whole blocks (96 tokens) shared, and each sample's own copy of the
    # partial last block (4 tokens): 6 + 4 x 1 = 10 blocks in one transfer (the group admitted together)
    result = simulate(one_prompt(samples=4, prompt=100, output=5), H100)
    d = result.to_dict()["disaggregation"]
    assert d["transfers"] == 1
    assert d["kv_transferred_bytes"] == 10 * BLOCK_BYTES
    assert result["tokens.prefill_computed"] == 100  # one prefill for the group
    check_invariants(result)


def test_streams_split_over_tensor_parallel_gpus_and_meet_at_the_decode_gpu():
    # prefill at tensor_parallel 2 (GPUs 0, 1), decode at 1 (GPU 2): two streams of half the bytes each, from
    # GPU 0 and GPU 1, both into GPU 2's port, which carries all of it: the time of the whole over one port
    w = one_prompt(**{"deployment.disaggregation.prefill.tensor_parallel": 2})
    d = simulate(w, H100).to_dict()["disaggregation"]
    assert d["prefill"]["tensor_parallel"] == 2 and d["decode"]["tensor_parallel"] == 1
    assert d["transfer_s"]["p50"] == pytest.approx(10 * BLOCK_BYTES / NVLINK_COPY + LATENCY, abs=2 * TICK)
    assert simulate(w, H100)["gpus"] == 3


def test_a_request_of_one_output_token_ends_on_the_prefill_replica():
    result = simulate(one_prompt(output=1), H100)
    assert result.to_dict()["disaggregation"]["transfers"] == 0
    seq, = result.records.sequences
    assert seq.replica == 0 and seq.generated == 1 and seq.finish_s == seq.first_token_s


def test_copy_efficiency_of_the_hardware_sets_the_bandwidth_time():
    from kinsim import load_hardware

    from .conftest import HARDWARE
    hw = load_hardware(HARDWARE / "h100.yaml", {"node.gpu_link.copy_efficiency": 0.5})
    d = simulate(one_prompt(), hw).to_dict()["disaggregation"]
    assert d["transfer_s"]["p50"] == pytest.approx(10 * BLOCK_BYTES / (450e9 * 0.5) + LATENCY, abs=2 * TICK)


@pytest.mark.parametrize("changes", [
    {"requests.problems": 6, "requests.samples": 3, "requests.arrival": {"process": "poisson", "rate": "40 /s"}},
    {"requests.problems": 4, "requests.samples": 4, "deployment.max_num_seqs": 6,
     "requests.output_tokens": {"dist": "uniform", "low": 5, "high": 300}},
])
def test_fast_forward_equals_exact_steps_and_roles_report(changes):
    w = disaggregated(prefill=1, decode=2, **changes)
    fast, exact = simulate(w, H100), simulate(w, H100, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    check_invariants(fast)
    d = fast.to_dict()["disaggregation"]
    assert d["prefill"]["replicas"] == 1 and d["decode"]["replicas"] == 2
    busy = {r: sum(s.end_s - s.start_s for s in fast.records.segments if s.replica == r) for r in range(3)}
    assert d["prefill"]["busy_s"] == pytest.approx(busy[0], rel=1e-9)
    assert d["decode"]["utilization"] == pytest.approx((busy[1] + busy[2]) / (2 * fast["sim_time_s"]), rel=1e-9)
    # every reported key is documented and every documented disaggregation key is reported
    documented = [k for pattern, _, _ in METRIC_DOCS for k in expand_key(pattern) if k.startswith("disaggregation")]
    reported = fast.to_dict()
    for key in documented:
        node = reported
        for part in key.split("."):
            node = node[part]


def test_decode_replicas_full_hold_the_prefill_replica_back_and_nothing_is_lost():
    # the decode replica seats 2 sequences; 8 requests wait at the prefill replica, whose KV for the handed-off
    # ones stays allocated until it moves
    w = disaggregated(**{"requests.problems": 8, "requests.samples": 1, "requests.output_tokens": 50,
                         "deployment.max_num_seqs": 2})
    result = simulate(w, H100)
    assert result["requests.completed"] == 8
    d = result.to_dict()["disaggregation"]
    assert d["decode_queue_s"]["p99"] > d["decode_queue_s"]["p50"] >= 0
    assert_same_figures(figures(result), figures(simulate(w, H100, exact_steps=True)))


@pytest.mark.parametrize("changes, path, words", [
    ({"deployment.data_parallel": 2}, "deployment.data_parallel", "must be 1 with disaggregation"),
    ({"deployment.disaggregation.decode.replicas": 8}, "deployment.disaggregation", "needs 9 GPUs"),
    ({"attention": {"policy": "block_topk", "block_size": 16, "top_k": 2, "offload": True}},
     "deployment.disaggregation", "attention.offload"),
    ({"deployment.disaggregation.prefill.tensor_parallel": 3}, "deployment.disaggregation.prefill.tensor_parallel",
     "must divide"),
    ({"deployment.disaggregation.decode.hardware": ""}, "deployment.disaggregation.decode.hardware",
     "must not be empty"),
])
def test_bad_disaggregation_is_one_clear_error(changes, path, words):
    with pytest.raises(SpecError) as caught:
        simulate(disaggregated(**changes), H100)
    assert caught.value.path.endswith(path) and words in str(caught.value)


def test_a_disaggregated_run_file_loads_and_its_summary_names_the_roles_and_the_handoff(tmp_path):
    import json

    from kinsim.report.runfile import check_run
    from kinsim.report.summary import summary_rows

    summary = simulate(one_prompt(problems=2), H100).to_dict()
    path = tmp_path / "run.json"
    path.write_text(json.dumps(summary))
    check_run(json.loads(path.read_text()), str(path))  # the optional section's shape is checked, and holds
    rows = dict(summary_rows(summary, wall_time=False))
    split = summary["disaggregation"]
    assert rows["disaggregation"] == (f"prefill 1 x TP1 busy {split['prefill']['utilization']:.0%}, "
                                      f"decode 1 x TP1 busy {split['decode']['utilization']:.0%}")
    assert rows["KV handoff"].startswith("2 transfers, ")
    broken = {**summary, "disaggregation": {**summary["disaggregation"], "transfers": "two"}}
    with pytest.raises(SpecError) as caught:
        check_run(broken, str(path))
    assert caught.value.path == "disaggregation.transfers"


def test_a_role_on_its_own_hardware_gets_its_kv_over_both_networks():
    # decode on an H200 node (its own file, relative to the workload file: here the project root), prefill on
    # the run's H100: separate clusters, so the KV leaves the H100 by its NIC and enters the H200 by its own.
    # Both files: 400 Gbit/s = 50 GB/s per GPU each way, 5 us one way (2.5 us per side), copy efficiency 0.9
    w = one_prompt(**{"deployment.disaggregation.decode.hardware": "hardware/h200.yaml"})
    result = simulate(w, H100)
    d = result.to_dict()["disaggregation"]
    assert d["prefill"]["hardware"] == "h100" and d["decode"]["hardware"] == "h200"
    alone = 10 * BLOCK_BYTES / (50e9 * 0.9) + 5e-6  # 407.8 us + 5 us
    assert d["transfer_s"]["p50"] == pytest.approx(alone, abs=2 * TICK)
    assert result["gpus"] == 2
    # the decode replica's KV capacity is the H200's (141 GB, not 80 GB): more blocks than on an H100 decode
    same = simulate(one_prompt(), H100).to_dict()["disaggregation"]
    assert d["decode"]["kv_capacity_bytes"] > same["decode"]["kv_capacity_bytes"]
    assert d["prefill"]["kv_capacity_bytes"] == same["prefill"]["kv_capacity_bytes"]
    # each GPU draws its own power: the H200 (700 W TDP as the H100, its own idle) over its own busy time
    from kinsim import load_hardware

    from .conftest import HARDWARE
    h200 = load_hardware(HARDWARE / "h200.yaml")
    busy = {r: sum(s.end_s - s.start_s for s in result.records.segments if s.replica == r) for r in (0, 1)}
    makespan = result["sim_time_s"]
    energy = sum(gpu.power.idle * makespan + (gpu.power.tdp - gpu.power.idle) * busy[r]
                 for r, gpu in ((0, H100.gpu), (1, h200.gpu)))
    assert result["energy_j"] == pytest.approx(energy, rel=1e-12)
    assert_same_figures(figures(result), figures(simulate(w, H100, exact_steps=True)))


def test_a_role_hardware_file_that_is_missing_or_too_small_is_one_clear_error():
    with pytest.raises(SpecError) as caught:
        one_prompt(**{"deployment.disaggregation.decode.hardware": "hardware/nowhere.yaml"})
    assert caught.value.path == "deployment.disaggregation.decode.hardware" and "not found" in str(caught.value)
    with pytest.raises(SpecError) as caught:
        simulate(one_prompt(**{"deployment.disaggregation.decode.hardware": "hardware/h200.yaml",
                               "deployment.disaggregation.decode.replicas": 9}), H100)
    assert caught.value.path == "deployment.disaggregation.decode.replicas" and "has 8" in str(caught.value)


def test_the_summary_names_a_roles_own_hardware():
    from kinsim.report.summary import summary_rows

    summary = simulate(one_prompt(**{"deployment.disaggregation.decode.hardware": "hardware/h200.yaml"}),
                       H100).to_dict()
    row = dict(summary_rows(summary, wall_time=False))["disaggregation"]
    assert row.startswith("prefill 1 x TP1 busy ") and ", decode 1 x TP1 on h200 busy " in row


def test_a_role_hardware_typed_on_the_command_line_is_relative_to_the_cwd(capsys, monkeypatch):
    from .conftest import ROOT
    from .test_bad_input import run_cli

    monkeypatch.chdir(ROOT / "hardware")  # hardware files sit here; the workload file is in ../workloads
    code, out, err = run_cli(capsys, "info", str(ROOT / "workloads" / "chat_poisson.yaml"), "--set",
                             "deployment.data_parallel=1", "--set",
                             "deployment.disaggregation={prefill: {replicas: 2}, decode: {replicas: 6, "
                             "hardware: h200.yaml}}")
    assert code == 0, err
    assert "prefill 2 x TP 1 + decode 6 x TP 1 on h200.yaml = 8 GPUs" in out
    code, out, err = run_cli(capsys, "info", str(ROOT / "workloads" / "chat_poisson.yaml"), "--set",
                             "deployment.data_parallel=1", "--set",
                             "deployment.disaggregation.decode.hardware=h200.yaml")
    assert code == 0 and "decode 1 x TP 1 on h200.yaml" in out, err


def test_a_sequence_alone_is_preempted_not_ended_while_kv_lands(tmp_path):
    # The decode replica has 20 blocks of 16 tokens, a 1-block watermark (ceil(1% x 20)). Request a (16-token
    # prompt, 250 tokens out) holds at most 16 + 250 - 1 = 265 tokens: 17 blocks, so it fits alone. b (80-token
    # prompt: 5 blocks) arrives at 0.2 s; at copy_efficiency 1e-5 its KV takes 5 x 1,835,008 B / (450e9 x 1e-5
    # B/s) = 2.04 s to land, holding 5 blocks meanwhile. a, alone in the batch, then outgrows the other 15
    # blocks (240 tokens) before b lands: it was ended unfinished ("needs more KV-cache blocks than the replica
    # holds"); it must be preempted instead and served once b's KV has landed.
    import json

    from .test_engine import hardware_with_kv_blocks

    trace = tmp_path / "trace.jsonl"
    rows = [{"request_id": "a", "arrival_s": 0.0, "prompt_tokens": 16, "output_tokens": 250},
            {"request_id": "b", "arrival_s": 0.2, "prompt_tokens": 80, "output_tokens": 5}]
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = disaggregated(requests={"kind": "trace", "path": str(trace)})
    hw = hardware_with_kv_blocks(w, 20)
    slow = {"hw.node.gpu_link.copy_efficiency": 1e-5}
    fast, exact = simulate(w, hw, slow), simulate(w, hw, slow, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    a, b = fast.records.sequences
    assert a.state == b.state == "finished"
    assert a.preemptions == 1 and a.finish_s > b.first_token_s + 2.04  # a resumed after b's KV landed
    check_invariants(fast)


def test_a_swapped_sequence_leaves_the_shared_prompt_to_a_member_whose_kv_lands(tmp_path):
    # Decode replica of 40 blocks, preemption by swap. c (16-token prompt, 500 out) and a (group g, 40-token
    # prompt: 2 shared blocks, 400 out) decode there; b, a's sibling in g (group_affinity sends it to the same
    # replica), arrives at 2.0 s: its KV is 1 private block (40 - 32 tokens), 1,835,008 B / (450e9 x 1e-5 B/s)
    # = 0.41 s in flight, holding g's shared blocks meanwhile. c and a outgrow the blocks while b lands: a, the
    # newest, is swapped out. g's shared blocks stay on the GPU (b holds them), so a's swap carries its private
    # blocks only and brings back the same blocks; it was counted as carrying the 2 shared blocks out too.
    import json

    from .test_engine import hardware_with_kv_blocks

    trace = tmp_path / "trace.jsonl"
    rows = [{"request_id": "c", "arrival_s": 0.0, "prompt_tokens": 16, "output_tokens": 500},
            {"request_id": "a", "group_id": "g", "arrival_s": 0.001, "prompt_tokens": 40, "output_tokens": 400},
            {"request_id": "b", "group_id": "g", "arrival_s": 2.0, "prompt_tokens": 40, "output_tokens": 5}]
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = disaggregated(requests={"kind": "trace", "path": str(trace)}, **{"deployment.preemption": "swap"})
    hw = hardware_with_kv_blocks(w, 40)
    slow = {"hw.node.gpu_link.copy_efficiency": 1e-5}
    fast, exact = simulate(w, hw, slow), simulate(w, hw, slow, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    c, a, b = fast.records.sequences
    assert a.preemptions == 1 and c.preemptions == b.preemptions == 0
    host = fast.to_dict()["memory"]["host"]
    assert host["swap_out_bytes"] == host["swap_in_bytes"] > 0
    check_invariants(fast)


def test_a_sliding_window_model_moves_each_sequences_window_with_its_blocks():
    # Qwen3-0.6B with 12 of its 28 layers over a 64-token window: a block (16 tokens) holds the 16 full-attention
    # layers' KV, 16 x 8 KV heads x 128 x 2 x 2 B = 65,536 B a token, 1,048,576 B a block; the 160-token prompt
    # fills 10 blocks, and its window layers hold its last min(160, 64) = 64 tokens, 12 x 4,096 B a token each
    hybrid = {"preset": "Qwen3-0.6B", "sliding_window": 64, "sliding_window_layers": 12}
    result = simulate(one_prompt(model=hybrid), H100)
    d = result.to_dict()["disaggregation"]
    blocks = 10 * 16 * 16 * 4096
    window = 64 * 12 * 4096
    assert d["kv_transferred_bytes"] == pytest.approx(blocks + window, rel=1e-12)  # 13,631,488 B
    assert d["transfer_s"]["p50"] == pytest.approx((blocks + window) / NVLINK_COPY + LATENCY, abs=2 * TICK)
    check_invariants(result)
    # a prompt shorter than the window moves all of it: 40 tokens, 3 blocks (2 whole, 8 tokens in a third)
    short = simulate(one_prompt(model=hybrid, prompt=40), H100).to_dict()["disaggregation"]
    assert short["kv_transferred_bytes"] == pytest.approx(3 * 16 * 16 * 4096 + 40 * 12 * 4096, rel=1e-12)


def test_a_sequence_recomputed_on_its_decode_replica_is_not_taken_back_by_its_prefill_replica():
    """Found by the engine's property test: two prefill replicas, one decode replica of 30 KV blocks, a closed
    loop of 2 clients, chunks of 16 tokens. A decode replica preempts a sequence (recompute) and queues it
    for its prefill again; the prefill replica that handed it over still had it in its own waiting queue, a
    stale entry of a lazily deleted heap, which read 'waiting' and took it back: the sequence prefilled on
    two replicas at once (and the prefill replica's count of waiting sequences went negative). Each
    replica now takes only what waits in its own queue; every request ends, fast = exact."""
    from .test_engine import hardware_with_kv_blocks

    w = workload(**{"requests.problems": 3, "requests.samples": 2, "requests.prompt_tokens": 144,
                    "requests.max_output_tokens": 400,
                    "requests.output_tokens": {"dist": "uniform", "low": 1, "high": 194},
                    "deployment.max_num_seqs": 4, "deployment.max_num_batched_tokens": 16,
                    "deployment.chunked_prefill": True, "deployment.router": "least_loaded",
                    "requests.arrival": {"process": "closed_loop", "concurrency": 2},
                    "deployment.disaggregation": {"prefill": {"replicas": 2}, "decode": {"replicas": 1}}}, seed=0)
    hw = hardware_with_kv_blocks(w, 30)
    fast, exact = simulate(w, hw), simulate(w, hw, exact_steps=True)
    assert fast["requests.completed"] + fast["requests.unfinished"] == 6 == len(fast.records.sequences)
    assert fast["requests.preemptions"] > 0  # the decode replica did preempt and recompute
    assert_same_figures(figures(fast), figures(exact))
    check_invariants(fast)
