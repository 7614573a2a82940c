"""Cost models: roofline properties, the batch-1 memory-bound check, collectives, Kinetics closed forms, and
`kinsim op` from the command line."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinsim import load_hardware, load_model, load_workload, with_overrides
from kinsim.cli import main
from kinsim.cost import RooflineCost, price_step
from kinsim.cost.collectives import collective_terms, group_bandwidth
from kinsim.cost.kinetics import intensity, kinetics_block_topk_cost, kinetics_dense_cost
from kinsim.cost.registry import make_cost_model
from kinsim.ops import decode_batch, lower_step
from kinsim.ops.layers import collective_op, gemm_op
from kinsim.ops.op import Collective

from .conftest import HARDWARE, WORKLOADS

# the roofline with the hardware file's constant efficiencies (the calibrated model: tests/test_kernel_model.py)
H100 = load_hardware(HARDWARE / "h100.yaml", {"calibration": None})
AIME = load_workload(WORKLOADS / "aime_bon32.yaml")


def step_time(hw, contexts, workload=AIME):
    step = lower_step(workload.model, workload.deployment, workload.attention, decode_batch(contexts))
    return price_step(step, RooflineCost(hw))


def test_qwen3_8b_batch_1_decode_is_memory_bound_near_weight_bytes_over_bandwidth():
    priced = step_time(H100, [1000])
    terms = {t: sum(p.op.count * p.cost.__getattribute__(f"{t}_s") for p in priced.priced)
             for t in ("compute", "memory", "latency")}
    assert max(terms, key=terms.get) == "memory"
    model = AIME.model
    # Every weight but the embedding table is read once; the embedding gathers one row. The KV of
    # 1001 tokens is read in every layer.
    weight_bytes = model.weight_bytes - (model.vocab_size - 1) * model.hidden_size * 2
    kv_bytes = 1001 * model.kv_bytes_per_token
    eff = H100.efficiency
    expected = weight_bytes / (3.35e12 * eff.gemm_memory) + kv_bytes / (3.35e12 * eff.attention_memory)
    assert priced.time_s == pytest.approx(expected, rel=0.10)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 64), factor=st.floats(1.0, 8.0))
def test_more_bandwidth_never_slows_a_memory_bound_op(m, factor):
    op = gemm_op("g", m, 4096, 4096, weight_dtype="bf16")
    faster = with_overrides(H100, {"gpu.memory.bandwidth": f"{3.35 * factor} TB/s"})
    assert RooflineCost(faster).op_cost(op).time_s <= RooflineCost(H100).op_cost(op).time_s


@settings(max_examples=40, deadline=None)
@given(context=st.integers(0, 100_000), more=st.integers(1, 10_000))
def test_more_context_never_makes_dense_decode_cheaper(context, more):
    assert step_time(H100, [context + more]).time_s >= step_time(H100, [context]).time_s


def test_roofline_time_is_at_least_each_term():
    op = gemm_op("g", 512, 4096, 4096, weight_dtype="bf16")
    cost = RooflineCost(H100).op_cost(op)
    assert cost.time_s == pytest.approx(max(cost.compute_s, cost.memory_s) + 1e-6)
    assert cost.compute_s == pytest.approx(2 * 512 * 4096 * 4096 / (989e12 * 0.8))


def test_vectorised_segment_equals_single_steps():
    contexts = np.array([[1000.0] * 8, [5000.0] * 8, [9000.0] * 8])
    segment = step_time(H100, contexts).time_s
    singles = [step_time(H100, row).time_s for row in contexts]
    np.testing.assert_allclose(segment, singles, rtol=1e-12)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_collective_traffic_factors(p):
    nbytes = 1e6
    ring = collective_terms(Collective("allreduce", nbytes, p), H100, "ring")
    assert ring.link_bytes == pytest.approx(2 * (p - 1) / p * nbytes) and ring.hops == 2 * (p - 1)
    gather = collective_terms(Collective("allgather", nbytes, p), H100, "ring")
    assert gather.link_bytes == pytest.approx((p - 1) / p * nbytes) and gather.hops == p - 1
    assert collective_terms(Collective("allreduce", nbytes, 1), H100).link_bytes == 0


def test_two_equal_transfers_in_one_collective_take_twice_the_bandwidth_time():
    one = collective_terms(Collective("allgather", 1e8, 8), H100).time(0.8)[0]
    two = collective_terms(Collective("allgather", 2e8, 8), H100).time(0.8)[0]
    assert two == pytest.approx(2 * one)


def test_full_mesh_group_uses_its_direct_links():
    mi300x = load_hardware(HARDWARE / "mi300x.yaml")
    assert group_bandwidth(mi300x, 4)[0] == pytest.approx(448e9 * 3 / 7)
    assert group_bandwidth(mi300x, 8)[0] == pytest.approx(448e9)


def test_kinetics_intensity_of_b200_fp8_is_the_papers():
    assert intensity(load_hardware(HARDWARE / "b200.yaml"), "fp8") == pytest.approx(562.5)


def test_kinetics_dense_closed_form_by_hand():
    model = load_model("Qwen3-8B")
    i = intensity(H100)
    n, l_in, l_out = 32, 150, 10_000
    p, d, r = model.params_active, 2 * 8 * 128 * 36, 4
    expected = (2 * n * p * l_out + 2 * r * n * l_in * d * l_out + r * n * d * l_out**2
                + i * (2 * l_in * d * l_out + n * d * l_out**2))
    assert kinetics_dense_cost(model, n, l_in, l_out, i).eflops == pytest.approx(expected, rel=1e-12)


def test_kinetics_block_topk_limits():
    model = load_model("Qwen3-8B")
    i = intensity(H100)
    n, l_in, l_out, d, r = 32, 150, 10_000, 73_728, 4
    huge = kinetics_block_topk_cost(model, n, l_in, l_out, i, budget=1e9, block_size=16)
    assert huge.attention_flops == pytest.approx(2 * r * d * n * (l_in * l_out + l_out**2 / 2))
    small = kinetics_block_topk_cost(model, n, l_in, l_out, i, budget=100, block_size=16)
    assert small.kv_bytes == pytest.approx(2 * n * d * 100 * l_out)
    assert small.selection_bytes == pytest.approx(1 * n * d * (l_in * l_out + l_out**2 / 2) / 16)
    assert small.selection_flops == pytest.approx(r * n * d * (l_in * l_out + l_out**2 / 2) / 16)


# ----------------------------------------------------------------------------- kinsim op

def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_op_gemm_json(capsys):
    code, out, _ = run(capsys, "op", "gemm", "--hw", str(HARDWARE / "h100.yaml"), "--m", "4096", "--n", "4096",
                       "--k", "4096", "--json")
    result = json.loads(out)
    assert code == 0 and result["flops"] == 2 * 4096**3 and result["bound"] == "compute"


def test_op_decode_attention_json_has_terms(capsys):
    code, out, _ = run(capsys, "op", "decode_attention", "--hw", str(HARDWARE / "h100.yaml"), "--batch", "64",
                       "--kv-len", "8192", "--heads", "32", "--kv-heads", "8", "--json")
    result = json.loads(out)
    assert code == 0 and result["bound"] == "memory"
    assert result["bytes"] == pytest.approx(64 * (8193 * 2 * 8 * 128 * 2 + 2 * 32 * 128 * 2 + 2 * 8 * 128 * 2))
    assert {"time_s", "flops", "compute_s", "memory_s", "network_s", "latency_s"} <= set(result)


def test_op_shapes_csv_one_json_line_per_row(capsys, tmp_path):
    shapes = tmp_path / "s.csv"
    shapes.write_text("m,n,k\n1,4096,4096\n4096,4096,4096\n")
    code, out, _ = run(capsys, "op", "gemm", "--hw", str(HARDWARE / "h100.yaml"), "--shapes", str(shapes), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["params"]["m"] for r in rows] == [1, 4096]
    assert [r["bound"] for r in rows] == ["memory", "compute"]


def test_op_step_breakdown(capsys):
    code, out, _ = run(capsys, "op", "step", "--hw", str(HARDWARE / "h100.yaml"), "--workload",
                       str(WORKLOADS / "aime_bon32.yaml"), "--batch-size", "64", "--context", "16384", "--json")
    result = json.loads(out)
    assert code == 0 and result["by_class"]["attention"] > result["by_class"]["linear"] > 0


def test_op_allreduce_link_bytes(capsys):
    code, out, _ = run(capsys, "op", "allreduce", "--hw", str(HARDWARE / "h100.yaml"), "--bytes", "16MiB",
                       "--gpus", "8", "--algorithm", "ring", "--json")
    result = json.loads(out)
    assert code == 0 and result["link_bytes"] == 2 * 7 / 8 * 16 * 2**20 and result["bound"] == "network"


BAD = [
    (("--batch", "-1"), "--batch: must be at least 1"),
    (("--heads", "0"), "--heads: must be at least 1"),
    (("--kv-heads", "6"), "--kv-heads: must divide the query heads (32)"),
    (("--tp", "3"), "--tp: must divide the query heads (32)"),
    (("--kv-heads", "8", "--tp", "16", "--heads", "24"), "--tp: must divide the query heads (24)"),
    (("--dtype", "fp9"), "--dtype: unknown data type"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_op_bad_shapes_exit_2(capsys, changes, message):
    base = {"--batch": "1", "--kv-len": "100", "--heads": "32", "--kv-heads": "8"}
    base.update(dict(zip(changes[::2], changes[1::2])))
    args = [x for kv in base.items() for x in kv]
    code, out, err = run(capsys, "op", "decode_attention", "--hw", str(HARDWARE / "h100.yaml"), *args)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_op_bad_csv_row_names_line_and_column(capsys, tmp_path):
    shapes = tmp_path / "a.csv"
    shapes.write_text("batch,kv_len,heads,kv_heads\n1,100,32,8\n1,100,32,5\n")
    code, _, err = run(capsys, "op", "decode_attention", "--hw", str(HARDWARE / "h100.yaml"), "--shapes", str(shapes))
    assert code == 2 and "a.csv: line 3.kv_heads: must divide the query heads (32)" in err


def test_a_ring_over_two_nodes_runs_at_the_nodes_nics_together():
    """Two 8-GPU H100 nodes, 8 x 400 Gbit/s NICs each: a ring's traffic leaving a node is spread over its 8
    NICs, 8 x 50 GB/s = 400 GB/s per GPU (below NVLink's 450 GB/s); an all-to-all's crosses one NIC."""
    hw = with_overrides(load_hardware(HARDWARE / "h100.yaml"), {"cluster.nodes": 2})
    nic = hw.cluster.network.bandwidth_per_gpu
    assert nic == 50e9
    assert group_bandwidth(hw, 16) == (pytest.approx(min(hw.node.gpu_link.bandwidth, 8 * nic)),
                                       hw.cluster.network.latency)
    assert group_bandwidth(hw, 16)[0] == pytest.approx(400e9)
    assert group_bandwidth(hw, 16, ring=False)[0] == pytest.approx(50e9)
    terms = collective_terms(Collective("allreduce", 1e8, 16), hw)
    assert terms.link_bytes == pytest.approx(2 * 15 / 16 * 1e8) and terms.bandwidth == pytest.approx(400e9)
    assert collective_terms(Collective("alltoall", 1e8, 16), hw).bandwidth == pytest.approx(50e9)


def test_a_calibrated_allreduce_over_two_nodes_takes_the_ring_and_the_network_latency():
    """The profile's NCCL curve over 16 GPUs of two nodes: no in-switch reduction (NVLS reduces within one
    NVSwitch domain), the ring's traffic at 400 GB/s per GPU, one node's 7 peers' latency and the network's
    latency twice per level of a binary tree over the nodes (1 level for 2 nodes, 2 for 4)."""
    hw = with_overrides(load_hardware(HARDWARE / "h100.yaml"), {"cluster.nodes": 2})
    cost = make_cost_model("roofline", hw)
    curve = cost.profile.allreduce("nccl")
    nbytes = 117e6  # 8,192 tokens x 7,168 x 2 bytes
    got = cost.op_cost(collective_op("allreduce", "allreduce", nbytes, 16, implementation="nccl"))
    ring = 2 * 15 / 16 * nbytes
    large = ring / (400e9 * curve.large_efficiency) + curve.large_latency + 7 * curve.large_per_peer
    small = ring / (400e9 * curve.small_efficiency) + curve.small_latency + 7 * curve.small_per_peer
    assert got.time_s == pytest.approx(min(large, small) + 2 * hw.cluster.network.latency)
    one_node = cost.op_cost(collective_op("allreduce", "allreduce", nbytes, 8, implementation="nccl"))
    assert one_node.time_s < got.time_s
    # a decode step's 16 tokens over 4 nodes: the small protocol, 2 tree levels
    hw4 = with_overrides(hw, {"cluster.nodes": 4})
    small_bytes = 16 * 7168 * 2
    got = make_cost_model("roofline", hw4).op_cost(collective_op("allreduce", "allreduce", small_bytes, 32,
                                                                 implementation="nccl"))
    small = (2 * 31 / 32 * small_bytes / (400e9 * curve.small_efficiency) + curve.small_latency
             + 7 * curve.small_per_peer)
    large = (2 * 31 / 32 * small_bytes / (400e9 * curve.large_efficiency) + curve.large_latency
             + 7 * curve.large_per_peer)
    assert got.time_s == pytest.approx(min(small, large) + 4 * hw.cluster.network.latency)
