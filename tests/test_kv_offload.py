"""KV offloaded to host memory: the host link as a resource, block top-k with offload (footprint, fetch
bytes, step time) and the GH200 hardware file. Every number is worked out by hand in the test."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from kinsim.cost.engine_overhead import ENGINE_OVERHEADS
from kinsim.cost.roofline import RooflineCost
from kinsim.engine.fluid import FluidNetwork
from kinsim.engine.kv import KVLayout, kv_layout
from kinsim.engine.pricer import StepPricer
from kinsim.engine.scheduler import Scheduler
from kinsim.engine.sequence import DECODE, GroupState, Sequence
from kinsim.errors import SpecError
from kinsim.hardware import load_hardware
from kinsim.hardware.topology import host_link_resource, host_transfer_s
from kinsim.ops.lower import StepBatch
from kinsim.runner import simulate
from kinsim.workload.request import Request

from .conftest import HARDWARE
from .test_engine import H100, assert_same_figures, check_invariants, figures, hardware_with_kv_blocks, workload

# ------------------------------------------------------------------------------------- the host link


def test_host_link_efficiency_defaults_by_kind_and_can_be_set():
    h100 = load_hardware(HARDWARE / "h100.yaml")
    assert h100.node.host_link.kind == "pcie" and h100.node.host_link.efficiency is None
    assert h100.node.host_link.dma_efficiency == 0.85
    assert h100.node.host_link.dma_bandwidth == pytest.approx(63e9 * 0.85)
    gh200 = load_hardware(HARDWARE / "gh200.yaml")
    assert gh200.node.host_link.dma_bandwidth == pytest.approx(450e9 * 0.9)
    assert h100.with_overrides({"node.host_link.efficiency": 0.7}).node.host_link.dma_efficiency == 0.7
    with pytest.raises(SpecError, match=r"node.host_link.efficiency: must be in \(0, 1\]"):
        h100.with_overrides({"node.host_link.efficiency": 1.5})


def test_gpus_sharing_a_host_link_get_one_resource_name():
    h100 = load_hardware(HARDWARE / "h100.yaml")
    assert [host_link_resource(h100, g) for g in (0, 1, 7)] == ["n0.host_link0.h2d", "n0.host_link1.h2d",
                                                                "n0.host_link7.h2d"]
    assert host_link_resource(h100, 1, "d2h") == "n0.host_link1.d2h"
    paired = h100.with_overrides({"node.host_link.shared_by": 2})
    # GPUs 0-1, 2-3, 4-5, 6-7 behind one uplink each
    assert [host_link_resource(paired, g) for g in range(8)] == [f"n0.host_link{g // 2}.h2d" for g in range(8)]
    two_nodes = h100.with_overrides({"cluster.nodes": 2})
    assert host_link_resource(two_nodes, 9) == "n1.host_link1.h2d"
    with pytest.raises(SpecError, match=r"node.host_link.shared_by: must divide node.gpus \(8\)"):
        h100.with_overrides({"node.host_link.shared_by": 3})


def test_a_transfer_alone_takes_bytes_over_bandwidth_times_efficiency_plus_latency():
    h100 = load_hardware(HARDWARE / "h100.yaml")
    # 64 blocks of 16 tokens of Qwen3-8B bf16 KV: 2 x 8 KV heads x 128 x 2 bytes x 36 layers = 147,456 B a token
    nbytes = 64 * 16 * 147_456
    assert host_transfer_s(h100, nbytes) == pytest.approx(nbytes / (63e9 * 0.85) + 2e-6, rel=1e-12)
    gh200 = load_hardware(HARDWARE / "gh200.yaml")
    assert host_transfer_s(gh200, nbytes) == pytest.approx(nbytes / (450e9 * 0.9) + 1e-6, rel=1e-12)


def _finish_times(flows):
    """Run flows ``(name, work_s, usage)`` started together; {name: finish time}."""
    env = simpy.Environment()
    net = FluidNetwork(env)
    done = {}
    for name, work, usage in flows:
        net.start(name, work, usage).done.callbacks.append(lambda event, name=name: done.update({name: env.now}))
    env.run()
    return done


def test_two_gpus_sharing_one_host_link_take_twice_as_long_for_the_same_transfer():
    paired = load_hardware(HARDWARE / "h100.yaml").with_overrides({"node.host_link.shared_by": 2})
    alone = host_transfer_s(paired, 64 * 16 * 147_456)
    # GPUs 0 and 1 share a link: their transfers divide it; GPU 2's own link is free
    flows = [(f"gpu{g}", alone, {host_link_resource(paired, g): 1.0}) for g in (0, 1, 2)]
    done = _finish_times(flows)
    assert done["gpu0"] == pytest.approx(2 * alone) and done["gpu1"] == pytest.approx(2 * alone)
    assert done["gpu2"] == pytest.approx(alone)


def test_gh200_is_one_superchip_with_nvlink_c2c_to_480_gb_of_host_memory():
    gh200 = load_hardware(HARDWARE / "gh200.yaml")
    assert gh200.node.gpus == 1 and gh200.total_gpus == 1
    assert gh200.gpu.memory.capacity == 96 * 2**30 and gh200.gpu.memory.bandwidth == 4e12  # HBM: binary GiB
    assert gh200.node.host_link.kind == "nvlink_c2c" and gh200.node.host_link.bandwidth == 450e9
    assert gh200.node.host_memory == 480e9
    assert gh200.calibration is not None and gh200.calibration.transferred_from is not None
    # the same GH100 compute as the H100 SXM5: 989 TFLOP/s bf16 dense over 4 TB/s
    assert gh200.ridge_flop_per_byte["bf16"] == pytest.approx(989e12 / 4e12)


# ------------------------------------------------------------------------------------- the policy

#: Qwen3-8B: 36 layers, 8 KV heads of dimension 128, bf16 KV. K and V of one token, all layers, one GPU:
#: 2 x 8 x 128 x 2 bytes x 36 = 147,456 bytes; a block summary (one mean key per KV head and layer):
#: 8 x 128 x 2 x 36 = 73,728 bytes.
TOKEN_KV = 2 * 8 * 128 * 2 * 36
SUMMARY = 8 * 128 * 2 * 36
OFFLOAD = {"policy": "block_topk", "block_size": 16, "top_k": 64, "local_window": 16, "offload": True}


def test_offload_keys_are_validated_with_the_key_named():
    with pytest.raises(SpecError, match=r"attention.gpu_cache_blocks: needs offload: true"):
        workload(attention={"policy": "block_topk", "gpu_cache_blocks": 4})
    with pytest.raises(SpecError, match=r"attention.cache_hit_rate: must be 0 when gpu_cache_blocks is 0"):
        workload(attention={**OFFLOAD, "cache_hit_rate": 0.5})
    with pytest.raises(SpecError, match=r"attention.cache_hit_rate: must be in \[0, 1\], got 1.5"):
        workload(attention={**OFFLOAD, "gpu_cache_blocks": 8, "cache_hit_rate": 1.5})
    with pytest.raises(SpecError, match=r"attention: unknown key 'offload'"):
        workload(attention={"policy": "dense", "offload": True})


def _step(attention, context, tp=1):
    w = workload(model="Qwen3-8B", attention=attention, **{"deployment.tensor_parallel": tp})
    pricer = StepPricer(w.model, w.deployment, w.attention, RooflineCost(H100))
    return pricer.step(StepBatch(decode_context=np.array(context, dtype=float)))


def test_a_step_fetching_64_blocks_of_16_tokens_costs_their_bytes_over_pcie():
    # 5,000 tokens cached: 4,984 outside the 16-token window, 311 complete blocks, of which the top 64 are
    # selected; a quarter of them are in the GPU cache
    policy = {**OFFLOAD, "gpu_cache_blocks": 32, "cache_hit_rate": 0.25}
    fetched = 64 * 16 * TOKEN_KV * (1 - 0.25)
    assert fetched == 113_246_208
    offloaded = _step(policy, [5000])
    resident = _step({**policy, "offload": False, "gpu_cache_blocks": 0, "cache_hit_rate": 0.0}, [5000])
    assert offloaded.row("host_link_bytes")[0] == fetched
    assert offloaded.row("host_link_s")[0] == pytest.approx(fetched / (63e9 * 0.85), rel=1e-12)
    # the fetch adds to the step, in attention: the bytes at 85% of 63 GB/s and the latency once per layer
    fetch_s = fetched / (63e9 * 0.85) + 36 * 2e-6
    assert offloaded.time_s[0] - resident.time_s[0] == pytest.approx(fetch_s, rel=1e-9)
    assert offloaded.class_s("attention")[0] - resident.class_s("attention")[0] == pytest.approx(fetch_s, rel=1e-9)
    assert resident.row("host_link_bytes")[0] == 0 and resident.row("host_link_s")[0] == 0


def test_fetched_blocks_count_only_complete_blocks_outside_the_window_and_sink():
    policy = {**OFFLOAD, "local_window": 32, "sink_tokens": 4}
    # 100 cached: 64 outside sink and window -> 4 blocks; 36 -> 0; 1,064 + 36 -> 66 blocks, capped at 64
    nbytes = _step(policy, [100, 36, 1100]).row("host_link_bytes")[0]
    assert nbytes == (4 + 0 + 64) * 16 * TOKEN_KV
    assert _step(policy, [36]).time_s[0] == _step({**policy, "offload": False}, [36]).time_s[0]  # nothing fetched


def test_tensor_parallel_gpus_fetch_their_own_kv_heads_each():
    two = _step(OFFLOAD, [5000], tp=2)
    assert two.row("host_link_bytes")[0] == 64 * 16 * TOKEN_KV / 2  # 4 KV heads per GPU
    paired = load_hardware(HARDWARE / "h100.yaml").with_overrides({"node.host_link.shared_by": 2})
    w = workload(model="Qwen3-8B", attention=OFFLOAD, **{"deployment.tensor_parallel": 2})
    shared = StepPricer(w.model, w.deployment, w.attention, RooflineCost(paired))
    busy = shared.step(StepBatch(decode_context=np.array([5000.0]))).row("host_link_s")[0]
    # both GPUs of the replica sit behind one link: it carries both halves
    assert busy == pytest.approx(2 * (64 * 16 * TOKEN_KV / 2) / (63e9 * 0.85), rel=1e-12)


@pytest.mark.parametrize("attention", [OFFLOAD, {**OFFLOAD, "sink_tokens": 5, "local_window": 40, "top_k": 3},
                                       {**OFFLOAD, "block_size": 32, "top_k": 2, "gpu_cache_blocks": 2,
                                        "cache_hit_rate": 0.3}])
def test_segment_figures_in_closed_form_equal_the_matrix_of_contexts(attention):
    w = workload(model="Qwen3-8B", attention=attention)
    pricer = StepPricer(w.model, w.deployment, w.attention, RooflineCost(H100))
    rng = np.random.default_rng(3)
    context = rng.integers(0, 1400, size=11)
    steps = 500
    matrix = (context[None, :] + np.arange(steps)[:, None]).astype(float)
    closed = pricer.decode_run(context, steps)
    assert np.array_equal(closed.matrix, pricer.decode_segment(matrix).matrix)
    assert closed.row("host_link_bytes").max() > 0
    for k in (0, 17, 499):  # and a step priced alone
        assert np.array_equal(closed.matrix[:, k], pricer.step(StepBatch(decode_context=matrix[k])).matrix[:, 0])


# ------------------------------------------------------------------------------------- the footprint


def test_offload_keeps_summaries_and_a_few_blocks_per_sequence_in_hbm():
    w = workload(model="Qwen3-8B", attention={**OFFLOAD, "gpu_cache_blocks": 4})
    layout = kv_layout(w.model, w.deployment, w.attention, H100)
    assert layout.block_bytes == 16 * TOKEN_KV  # a page of full KV; summaries are paged apart
    assert layout.host_bytes_per_token == TOKEN_KV
    assert layout.summaries_per_block == 16 * TOKEN_KV // SUMMARY == 32
    # full KV in HBM: the window and the incomplete block, ceil((16 + 16) / 16) + 1 = 3 pages, no sink, and the
    # cache's 4 blocks of one page each
    assert layout.window_blocks == 3 + 0 + 4
    # 32,768 tokens: 7 pages of KV + ceil(2,048 summaries / 32 per page) = 7 + 64 = 71 blocks
    assert layout.private_blocks_of(32_768, 0) == 71
    assert layout.private_blocks_of(40, 0) == 3 + 1  # 3 pages of KV, 2 summaries in one page
    dense = workload(model="Qwen3-8B", attention={**OFFLOAD, "offload": False})
    resident = kv_layout(dense.model, dense.deployment, dense.attention, H100)
    assert resident.private_blocks_of(32_768, 0) == 2048
    assert resident.block_bytes == 16 * (TOKEN_KV + SUMMARY / 16)  # every block with its summary
    assert layout.total_blocks > resident.total_blocks  # pages without summaries are smaller


def test_offload_lets_more_sequences_decode_at_once():
    # 12 chains of thought of 100 + 2,000 tokens on 600 KV blocks. With every block resident a sequence needs
    # ceil(2,100 / 16) = 132 blocks at the end, so at most 600 // 132 = 4 can finish together: the 12 admitted
    # at first are preempted as they grow. Offloaded, a sequence needs at most 3 pages of KV and
    # ceil(131 summaries / 32 per page) = 5 pages of summaries, 8 blocks: all 12 decode together to the end
    # (one prefill step, then 1,999 decode steps of 12 sequences).
    changes = {"model": "Qwen3-8B", "requests.samples": 1, "requests.problems": 12,
               "requests.prompt_tokens": 100, "requests.output_tokens": 2000, "requests.max_output_tokens": 2000}
    mean_batch, preemptions = {}, {}
    for name, attention in (("resident", {**OFFLOAD, "offload": False}), ("offload", OFFLOAD)):
        w = workload(attention=attention, **changes)
        result = simulate(w, hardware_with_kv_blocks(w, 600))
        seqs, steps = result.records.segments.column("decode_seqs"), result.records.segments.column("steps")
        decoding = seqs > 0
        mean_batch[name] = float((seqs * steps)[decoding].sum() / steps[decoding].sum())
        preemptions[name] = result["requests.preemptions"]
        assert result["requests.completed"] == 12
    assert mean_batch["offload"] == 12 and preemptions["offload"] == 0
    assert preemptions["resident"] > 0 and mean_batch["resident"] < 12


def test_fast_forward_equals_exact_steps_with_offload_and_a_shared_host_link():
    w = workload(model="Qwen3-8B", attention={**OFFLOAD, "top_k": 4, "gpu_cache_blocks": 2, "cache_hit_rate": 0.5},
                 **{"deployment.data_parallel": 2, "deployment.router": "round_robin",
                    "requests.output_tokens": 300, "requests.max_output_tokens": 300})
    for shared_by in (1, 2):
        hw = hardware_with_kv_blocks(w, 80).with_overrides({"node.host_link.shared_by": shared_by})
        fast, exact = simulate(w, hw), simulate(w, hw, exact_steps=True)
        assert_same_figures(figures(fast), figures(exact))
        assert fast["host_link.bytes"] > 0
        check_invariants(fast)


def test_two_replicas_behind_one_host_link_slow_each_other():
    # The same requests on two replicas (one each): they run the same steps at the same times. With their own
    # links each step takes its time t alone; behind one link the two steps' flows each need a share
    # u = (host-link busy s) / t of it, so both run at rate min(1, 1 / 2u): a step takes max(t, 2 s), twice
    # its fetch where the fetch dominates. The bytes fetched are the same.
    w = workload(model="Qwen3-8B", attention={**OFFLOAD, "top_k": 256},
                 **{"deployment.data_parallel": 2, "deployment.router": "round_robin", "requests.samples": 1,
                    "requests.prompt_tokens": 5000, "requests.output_tokens": 200,
                    "requests.max_output_tokens": 200})
    h100 = load_hardware(HARDWARE / "h100.yaml")
    own = simulate(w, h100, exact_steps=True)
    shared = simulate(w, h100.with_overrides({"node.host_link.shared_by": 2}))
    assert shared["host_link.bytes"] == own["host_link.bytes"] > 0
    segments = own.records.segments
    first = segments.column("replica") == 0
    alone = (segments.column("end_s") - segments.column("start_s"))[first]
    busy = segments.column("host_link_s")[first]
    assert np.median(busy / alone) > 0.5  # the fetch takes most of a decode step: sharing slows it
    frontend = ENGINE_OVERHEADS[w.deployment.engine].frontend_s  # the requests reach the engine this late
    assert shared["sim_time_s"] == pytest.approx(frontend + np.maximum(alone, 2 * busy).sum(), rel=1e-6)
    assert shared["sim_time_s"] > 1.1 * own["sim_time_s"]


def test_blocks_added_per_step_count_kv_pages_and_summary_pages():
    # pages of 16 tokens; at most 3 pages of KV per sequence; 2 summaries (of 16-token blocks) per page
    layout = KVLayout(block_size=16, total_blocks=10_000, block_bytes=1.0, gpus=1, window_blocks=3,
                      shares_prompt=False, summaries_per_block=2, selection_block=16)
    assert layout.private_blocks_of(47, 0) == 3 + 1 and layout.private_blocks_of(64, 0) == 3 + 2
    scheduler = Scheduler(layout, workload().deployment)
    kv = [0, 15, 16, 31, 47, 100, 1000]
    for i, tokens in enumerate(kv):
        seq = Sequence(Request(f"r{i}", f"g{i}", 0.0, 1, 10_000), i, GroupState(i, 1, 0), 0.0)
        seq.state, seq.kv_tokens, seq.generated = DECODE, tokens, 1
        seq.private_blocks = int(layout.private_blocks_of(tokens, 0))
        scheduler.batch.add(seq)
    added = scheduler._blocks_added(90)
    for k in range(90):  # after step k each sequence holds the blocks of kv + k + 1 tokens
        assert added[k] == sum(layout.private_blocks_of(t + k + 1, 0) - layout.private_blocks_of(t, 0) for t in kv)


def host_share_for(w, hw, pages: int) -> float:
    """The deployment.host_kv_fraction that gives each replica ``pages`` host pages (plus half a page)."""
    layout = kv_layout(w.model, w.deployment, w.attention, hw)
    return (pages + 0.5) * hw.node.gpus * layout.block_bytes / hw.node.host_memory


def test_offloaded_kv_is_bounded_by_the_host_share():
    # The 12 chains above, offloaded: each ends with 100 + 2,000 - 1 = 2,099 tokens cached, 132 host pages of 16
    # tokens. With 600 host pages only 600 // 132 = 4 can hold their whole KV at once: the others are
    # preempted as the host share fills, as HBM preempted them when the KV was resident; with 12 x 132 = 1,584
    # pages nothing is preempted. The host share is never exceeded.
    changes = {"model": "Qwen3-8B", "requests.samples": 1, "requests.problems": 12,
               "requests.prompt_tokens": 100, "requests.output_tokens": 2000, "requests.max_output_tokens": 2000}
    w = workload(attention=OFFLOAD, **changes)
    hw = hardware_with_kv_blocks(w, 600)
    results = {}
    for pages in (600, 1584):
        tight = w.with_overrides({"deployment.host_kv_fraction": host_share_for(w, hw, pages)})
        result = simulate(tight, hw)
        memory = result.to_dict()["memory"]["host"]
        block_bytes = kv_layout(tight.model, tight.deployment, tight.attention, hw).block_bytes
        assert memory["capacity_bytes"] == pages * block_bytes
        assert memory["peak_bytes"] <= memory["capacity_bytes"]
        assert result["requests.completed"] == 12
        results[pages] = result
    assert results[600]["requests.preemptions"] > 0
    assert results[1584]["requests.preemptions"] == 0
    assert results[1584].to_dict()["memory"]["host"]["peak_bytes"] == 12 * 132 * block_bytes


def test_offloaded_kv_bounded_by_the_host_share_fast_forward_equals_exact_steps():
    short = {"requests.samples": 1, "requests.output_tokens": 300, "requests.max_output_tokens": 300}
    w = workload(model="Qwen3-8B", attention=OFFLOAD, **short, **{
        "requests.problems": 6, "requests.arrival": {"process": "poisson", "rate": "100 /s"}})
    hw = hardware_with_kv_blocks(w, 200)
    w = w.with_overrides({"deployment.host_kv_fraction": host_share_for(w, hw, 60)})
    fast, exact = simulate(w, hw), simulate(w, hw, exact_steps=True)
    assert fast["requests.preemptions"] > 0
    assert_same_figures(figures(fast), figures(exact))
    check_invariants(fast)


def test_a_sequence_whose_kv_never_fits_the_host_share_ends_unfinished():
    w = workload(model="Qwen3-8B", attention=OFFLOAD, **{"requests.problems": 1, "requests.samples": 1,
                                                         "requests.output_tokens": 300,
                                                         "requests.max_output_tokens": 300})
    hw = hardware_with_kv_blocks(w, 200)
    # 10 pages hold 160 tokens: the 100-token prompt fits, the chain stops when its 10 pages are full
    result = simulate(w.with_overrides({"deployment.host_kv_fraction": host_share_for(w, hw, 10)}), hw)
    (seq,) = result.records.sequences
    assert result["requests.unfinished"] == 1
    assert "host memory pages" in seq.reason
    assert seq.generated == 10 * 16 - 100 + 1


def test_offloaded_kv_cannot_be_swapped():
    w = workload(attention=OFFLOAD, **{"deployment.preemption": "swap"})
    with pytest.raises(SpecError, match="must be recompute with attention.offload") as error:
        simulate(w, H100)
    assert error.value.path == "deployment.preemption"
