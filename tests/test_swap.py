"""Preemption by swapping KV to host memory (``deployment.preemption: swap``) and the host tier's copies."""

from __future__ import annotations

import pytest
import simpy

from kinsim import load_hardware
from kinsim.engine.fluid import FluidNetwork
from kinsim.engine.host_tier import host_copy_model, host_kv_blocks
from kinsim.engine.kv import kv_layout
from kinsim.runner import simulate

from .conftest import HARDWARE
from .test_engine import assert_same_figures, figures, hardware_with_kv_blocks, workload


def preempting(**changes):
    """Two requests that grow to 999 tokens (63 blocks each) on 100 blocks: the later one is preempted."""
    return workload(**{"requests.problems": 2, "requests.samples": 1, "requests.output_tokens": 900,
                       "requests.arrival": {"process": "poisson", "rate": "1000 /s"}, **changes})


def test_swap_replaces_recompute_and_the_prompts_are_prefilled_once():
    w = preempting(**{"deployment.preemption": "swap"})
    hw = hardware_with_kv_blocks(w, 100)
    result = simulate(w, hw)
    memory = result.to_dict()["memory"]
    recompute = simulate(preempting(), hw)
    assert recompute.to_dict()["memory"]["preemptions"]["recompute"] >= 1
    assert memory["preemptions"]["recompute"] == 0 and memory["preemptions"]["swap"] >= 1
    assert result["tokens.prefill_computed"] == 200  # the two prompts, nothing recomputed
    assert result["tokens.generated"] == 2 * 900  # tokens conserved
    assert result["requests.completed"] == 2
    # what went out came back
    assert memory["host"]["swap_out_bytes"] == memory["host"]["swap_in_bytes"] > 0


def test_a_swap_stalls_its_step_for_the_copy_time_worked_by_hand():
    w = preempting(**{"deployment.preemption": "swap"})
    hw = hardware_with_kv_blocks(w, 100)
    result = simulate(w, hw)
    memory = result.to_dict()["memory"]
    layout = kv_layout(w.model, w.deployment, w.attention, hw)
    assert memory["preemptions"]["swap"] == 1
    blocks = memory["host"]["swap_out_bytes"] / layout.block_bytes  # one GPU: replica bytes = per-GPU bytes
    assert blocks == int(blocks) and blocks > 0
    link = hw.node.host_link
    assert (link.bandwidth, link.latency) == (63e9, 2e-6)  # hardware/h100.yaml: PCIe 5 x16, 2 us
    efficiency = 0.85  # the PCIe default (kinsim.hardware.spec.HOST_LINK_EFFICIENCY)
    one_way = blocks * layout.block_bytes / (63e9 * efficiency) + 2e-6
    # out in one step, back in another: two copies, each rounded to the engine's whole nanoseconds
    assert memory["host"]["stall_s"] == pytest.approx(2 * one_way, abs=2e-9)


def test_swap_falls_back_to_recompute_when_the_host_share_is_full():
    w = preempting(**{"deployment.preemption": "swap", "deployment.host_kv_fraction": 1e-9})
    hw = hardware_with_kv_blocks(w, 100)
    layout = kv_layout(w.model, w.deployment, w.attention, hw)
    assert host_kv_blocks(hw, layout, 1e-9) == 0  # 2 TB x 1e-9 / 8 GPUs = 250 B: not one block
    memory = simulate(w, hw).to_dict()["memory"]
    assert memory["preemptions"]["swap"] == 0 and memory["preemptions"]["recompute"] >= 1


def test_host_capacity_is_the_share_of_host_memory_per_gpu_in_blocks():
    w = preempting()
    hw = hardware_with_kv_blocks(w, 100)
    layout = kv_layout(w.model, w.deployment, w.attention, hw)
    # 2 TB of host memory, half for KV, over 8 GPUs: 125 GB per GPU
    assert host_kv_blocks(hw, layout, 0.5) == int(125e9 // layout.block_bytes)


@pytest.mark.parametrize("requests, blocks", [(3, 100), (5, 150), (6, 90)])
def test_swap_fast_forward_equals_exact_steps(requests, blocks):
    w = workload(**{"requests.problems": requests, "requests.samples": 2, "requests.output_tokens": 400,
                    "requests.arrival": {"process": "poisson", "rate": "200 /s"},
                    "deployment.preemption": "swap", "deployment.prefix_caching": requests % 2 == 1})
    hw = hardware_with_kv_blocks(w, blocks)
    fast, exact = simulate(w, hw), simulate(w, hw, exact_steps=True)
    assert fast.to_dict()["memory"]["preemptions"]["swap"] >= 1
    assert_same_figures(figures(fast), figures(exact))
    assert fast.to_dict()["memory"] == exact.to_dict()["memory"]
    assert fast["tokens.generated"] == requests * 2 * 400


# ----------------------------------------------------------------------------------- copies on the host link
def h100(**changes):
    return load_hardware(HARDWARE / "h100.yaml", changes)


def test_a_copy_of_n_blocks_takes_n_block_bytes_over_the_link_rate_plus_latency():
    hw = h100()
    w = workload()
    layout = kv_layout(w.model, w.deployment, w.attention, hw)
    seconds, usage = host_copy_model(hw, layout, [0])(10, 0)
    assert seconds == pytest.approx(10 * layout.block_bytes / (63e9 * 0.85) + 2e-6, rel=1e-12)
    assert usage == {"n0.host_link0.d2h": 1.0}
    # both directions at once: the longer one (the link is full duplex)
    seconds, usage = host_copy_model(hw, layout, [0])(10, 4)
    assert seconds == pytest.approx(10 * layout.block_bytes / (63e9 * 0.85) + 2e-6, rel=1e-12)
    assert usage["n0.host_link0.h2d"] == pytest.approx((4 * layout.block_bytes / (63e9 * 0.85) + 2e-6) / seconds)


def run_copies(hw, layout, gpus_of_replicas, blocks):
    """Each replica copies ``blocks`` blocks out at time 0 as a flow; when does each copy end (s)?"""
    env = simpy.Environment()
    network = FluidNetwork(env)
    ends = []
    for gpus in gpus_of_replicas:
        seconds, usage = host_copy_model(hw, layout, gpus)(blocks, 0)
        flow = network.start("copy", seconds, usage)
        flow.done.callbacks.append(lambda _e: ends.append(env.now))
    env.run()
    return ends, seconds


def test_two_replicas_behind_one_host_link_copy_at_half_speed():
    w = workload()
    alone_hw = h100()
    layout = kv_layout(w.model, w.deployment, w.attention, alone_hw)
    ends, seconds = run_copies(alone_hw, layout, [[0], [1]], 50)  # own links: both at full speed
    assert ends == pytest.approx([seconds, seconds])
    shared_hw = h100(**{"node.host_link.shared_by": 2})
    ends, seconds = run_copies(shared_hw, layout, [[0], [1]], 50)  # GPUs 0 and 1 share link 0
    assert ends == pytest.approx([2 * seconds, 2 * seconds])
    # a tensor-parallel pair on one shared link carries both shards: twice the time alone
    pair, _ = host_copy_model(shared_hw, layout, [0, 1])(50, 0)
    assert pair == pytest.approx(2 * 50 * layout.block_bytes / (63e9 * 0.85) + 2e-6)


def test_replicas_that_share_a_host_link_run_step_by_step_and_match_exact_steps():
    w = workload(**{"requests.problems": 4, "requests.samples": 2, "requests.output_tokens": 400,
                    "requests.arrival": {"process": "poisson", "rate": "200 /s"}, "deployment.data_parallel": 2,
                    "deployment.router": "round_robin", "deployment.preemption": "swap"})
    hw = hardware_with_kv_blocks(w, 80)
    shared = load_hardware(HARDWARE / "h100.yaml", {"gpu.memory.capacity": f"{hw.gpu.memory.capacity!r} B",
                                                    "node.host_link.shared_by": 2})
    fast, exact = simulate(w, shared), simulate(w, shared, exact_steps=True)
    assert fast.to_dict()["memory"]["preemptions"]["swap"] >= 1
    assert_same_figures(figures(fast), figures(exact))
    assert fast["tokens.generated"] == 8 * 400


# ----------------------------------------------------------------------------------- found in review
def test_swapped_members_do_not_pin_their_groups_prompt_when_no_member_is_left_on_the_gpu():
    # Two Best-of-2 problems, p1 with an 800-token prompt (50 shared blocks): its members are swapped one
    # after the other. The second to go is the last of p1 on the GPU: p1's 50 prompt blocks must go with it,
    # not stay pinned by the first swapped member's hold, or p0's sample (89 blocks at most) cannot grow and
    # is ended unfinished although it fits alone (as it does under recompute).
    changes = {"requests.problems": 2, "requests.samples": 2,
               "requests.prompt_tokens": {"dist": "list", "values": [16, 800]},
               "requests.output_tokens": {"dist": "list", "values": [1400, 10, 600, 600]},
               "requests.max_output_tokens": 2000,
               "requests.arrival": {"process": "poisson", "rate": "1000 /s"}}
    w = workload(**changes)
    hw = hardware_with_kv_blocks(w, 100)
    assert simulate(w, hw)["requests.completed"] == 4  # recompute
    swap = w.with_overrides({"deployment.preemption": "swap"})
    fast, exact = simulate(swap, hw), simulate(swap, hw, exact_steps=True)
    assert fast.to_dict()["memory"]["preemptions"]["swap"] >= 2
    assert fast["requests.completed"] == 4 and fast["requests.unfinished"] == 0
    assert_same_figures(figures(fast), figures(exact))


def test_a_swap_that_does_not_fit_the_host_share_leaves_the_host_tier_alone():
    from kinsim.engine.prefix_cache import PrefixCache
    from kinsim.engine.scheduler import Scheduler

    w = workload(**{"deployment.preemption": "swap", "deployment.prefix_caching": True, "deployment.kv_offload": "lru"})
    layout = kv_layout(w.model, w.deployment, w.attention, H100_HW)
    scheduler = Scheduler(layout, w.deployment, host_blocks=1)
    assert isinstance(scheduler.cache, PrefixCache)
    scheduler.cache.acquire(["k"])
    scheduler.cache.mark_ready(["k"])
    scheduler.cache.release(["k"])
    scheduler.cache.evict(1, host_room=1)
    assert scheduler.cache.host_cached == 1
    seq = _decoding_sequence(scheduler, private_blocks=5)
    assert not scheduler._swap_out(seq)  # 5 blocks do not fit in 1: recompute instead ...
    assert scheduler.cache.host_cached == 1  # ... and the offloaded block is still there


H100_HW = load_hardware(HARDWARE / "h100.yaml")


def _decoding_sequence(scheduler, private_blocks: int):
    from kinsim.engine.sequence import DECODE, Sequence
    from kinsim.workload.request import Request

    group = scheduler.group_state("g", 64)
    seq = Sequence(Request("r", "g", 0.0, 64, 100), 0, group, 0.0)
    seq.state, seq.kv_tokens, seq.generated, seq.private_blocks = DECODE, 64 + 80, 81, private_blocks
    scheduler.used_blocks += private_blocks
    scheduler._hold_shared(group, 1)
    scheduler.resident.append(seq)
    scheduler.batch.add(seq)
    return seq


def test_a_member_that_let_go_of_the_shared_prompt_holds_it_again_when_its_carrier_returns():
    # Found by a random search: member X of a group is swapped out while a resident member holds the shared
    # prompt blocks (X keeps its hold); then the last resident member Y is swapped out carrying them (X lets
    # go). Y comes back first, bringing them, and finishes. X must then come back without copying them from
    # host memory (they are on the GPU, held by X again since Y's return): before the fix X counted them
    # copied in, and more came back from host memory than ever went there.
    from .test_engine import check_invariants

    w = workload(**{"requests.problems": 5, "requests.samples": 4, "requests.prompt_tokens": 17,
                    "requests.output_tokens": {"dist": "uniform", "low": 3, "high": 363},
                    "deployment.data_parallel": 2, "deployment.max_num_seqs": 6,
                    "deployment.max_num_batched_tokens": 64, "deployment.router": "round_robin",
                    "deployment.prefix_caching": True, "deployment.kv_offload": "lru", "deployment.preemption": "swap",
                    "deployment.host_kv_fraction": 1.5e-4, "attention": {"policy": "block_topk", "block_size": 16,
                                                                        "top_k": 2},
                    "deployment.speculative": {"tokens": 3, "acceptance": 1.0}}, seed=55)
    hw = hardware_with_kv_blocks(w, 22)
    result = simulate(w, hw)
    host = result.to_dict()["memory"]["host"]
    assert result["memory.preemptions.swap"] > 0
    assert host["swap_in_bytes"] == host["swap_out_bytes"]  # everything swapped came back, nothing more
    check_invariants(result)
    assert_same_figures(figures(result), figures(simulate(w, hw, exact_steps=True)))
