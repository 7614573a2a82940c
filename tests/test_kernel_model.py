"""The serving-grade kernel model: kernel structure, terms worked out by hand, collectives, transfer of a
profile to a GPU with twice the bandwidth, and the engine overhead."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from kinsim import load_hardware
from kinsim.cost.collective_model import allreduce_time, choose_allreduce, traffic_factor
from kinsim.cost.engine_overhead import ENGINE_OVERHEADS
from kinsim.cost.kernel_model import kernel_time
from kinsim.cost.roofline import DatasheetCost, RooflineCost
from kinsim.engine.pricer import StepPricer
from kinsim.hardware.spec import CALIBRATED_KERNELS, CollectiveCurveSpec, KernelCurveSpec
from kinsim.ops.attention import AttentionDims, PrefillChunk, decode_attention_ops, prefill_attention_op
from kinsim.ops.kernel_work import kernel_work
from kinsim.ops.layers import collective_op, gemm_op
from kinsim.ops.sharding import HeadShard
from kinsim.workload.load import load_workload
from kinsim.workload.spec import DenseAttention

from .conftest import HARDWARE, WORKLOADS

H100 = load_hardware(HARDWARE / "h100.yaml")
#: The A100 priced with the H100's profile transferred, as a GPU without tables of its own is (a100.yaml itself
#: references the A100's own profile): the transfer's rules are what these tests check.
A100 = load_hardware(HARDWARE / "a100.yaml", {"calibration": {"from": str(HARDWARE / "calibration" / "h100.yaml")}})
QWEN3_8B = AttentionDims(HeadShard(32, 8, 128, 1))  # per GPU at TP 1: 32 query heads, 8 KV heads


def decode_op(batch: int, context: int):
    return decode_attention_ops(QWEN3_8B, DenseAttention(), np.full(batch, float(context)))[0]


# ------------------------------------------------------------------------------------------ structure


def test_decode_attention_splits_the_kv_only_when_the_pairs_leave_sms_idle():
    # batch 1 x 8 KV heads = 8 pairs < 0.8 x 132 SMs: split ceil(132 / 8) = 17 ways (8,193 tokens have
    # 65 blocks of 128, more than 17), one combine kernel
    work = kernel_work(decode_op(1, 8192), 132)
    assert (work.launches, work.combines, work.items, work.sequences) == (2.0, 1.0, 8 * 17, 1.0)
    # 16 x 8 = 128 pairs >= 105.6: no split
    work = kernel_work(decode_op(16, 8192), 132)
    assert (work.combines, work.items) == (0.0, 128)
    # a short context cannot be split into more parts than it has blocks: 200 tokens are 2 blocks
    assert kernel_work(decode_op(1, 199), 132).items == 8 * 2


def test_a_gemm_splits_k_when_its_tiles_do_not_fill_the_sms():
    # m 1 x n 4096: 1 x 32 tiles of 64 x 128; split-K min(ceil(132/32) = 5, ceil(4096/1024) = 4) = 4
    work = kernel_work(gemm_op("g", 1, 4096, 4096, weight_dtype="bf16"), 132)
    assert (work.launches, work.combines, work.items) == (1.0, 1.0, 128)
    # m 8192: 128 x 32 tiles fill the GPU, no split
    work = kernel_work(gemm_op("g", 8192, 4096, 4096, weight_dtype="bf16"), 132)
    assert (work.combines, work.items) == (0.0, 128 * 32)


def test_prefill_packs_a_kv_heads_query_heads_into_tiles():
    op = prefill_attention_op(QWEN3_8B, DenseAttention(), [PrefillChunk(1024, 0)] * 2)
    work = kernel_work(op, 132)
    # 2 sequences x 1,024 tokens x 4 query heads per KV head = 8,192 rows: 64 tiles of 128, x 8 KV heads;
    # the KV-cache write runs a thread block per token: 2,048 of them
    assert work.items == 64 * 8 and work.sequences == 2 * 1024
    # the longest tile attends over the whole 1,024 keys: 4 x 128 rows x 128 dims x 1,024 FLOPs
    assert work.longest_item_flops == 4 * 128 * 128 * 1024


def test_prefill_tile_of_a_short_prompt_computes_only_its_rows():
    # Prompts of 8 tokens on Qwen3-8B's shard (4 query heads per KV head): 32 packed rows per tile, so the
    # tile's work is 4 FLOPs x 32 rows x 128 dims per key, over one block of 128 keys
    work = kernel_work(prefill_attention_op(QWEN3_8B, DenseAttention(), [PrefillChunk(8, 0)] * 3), 132)
    assert work.items == 3 * 8
    assert work.longest_item_flops == 4 * 32 * 128 * 128
    # from 32 tokens on (128 packed rows) a tile is full
    full = kernel_work(prefill_attention_op(QWEN3_8B, DenseAttention(), [PrefillChunk(32, 0)]), 132)
    assert full.longest_item_flops == 4 * 128 * 128 * 128


def test_prefill_tile_time_per_key_adds_the_exposed_exponentials():
    """A query row and a key: 4 d tensor-core FLOPs and one exponential worth 256 of them on an H100 (4,096
    tensor FLOPs a clock per SM against 16 exponentials), 0.7 of it exposed: 179.2 FLOP-equivalents,
    relative to head dim 128. The fp8-KV kernel keeps the plain FLOPs."""
    from kinsim.ops.attention import AttentionDims
    from kinsim.ops.kernel_work import prefill_exp_scale
    from kinsim.ops.sharding import HeadShard

    assert prefill_exp_scale(128) == 1.0
    assert prefill_exp_scale(64) == pytest.approx((4 * 64 + 179.2) / (4 * 64) / ((4 * 128 + 179.2) / (4 * 128)))
    assert prefill_exp_scale(256) == pytest.approx((1024 + 179.2) / 1024 / (691.2 / 512))
    assert prefill_exp_scale(np.array([64.0, 256.0])) == pytest.approx([prefill_exp_scale(64), prefill_exp_scale(256)])
    chunk = [PrefillChunk(256, 0)]
    bf16 = kernel_work(prefill_attention_op(AttentionDims(HeadShard(8, 8, 64, 1)), DenseAttention(), chunk), 132)
    fp8 = kernel_work(prefill_attention_op(AttentionDims(HeadShard(8, 8, 64, 1), kv_dtype="fp8"), DenseAttention(),
                                           chunk), 132)
    assert fp8.longest_item_flops == 4 * 128 * 64 * 256  # two blocks of 128 keys, full tiles
    assert bf16.longest_item_flops == pytest.approx(fp8.longest_item_flops * prefill_exp_scale(64))


def test_prefill_counts_whole_tiles_chunk_by_chunk():
    # Qwen3-8B on one GPU (32 query heads, 8 KV heads: 4 packed per tile row group), chunks of 100 and 300
    # tokens: ceil(400 / 128) + ceil(1,200 / 128) = 4 + 10 = 14 tiles per KV head, where the chunks' 400
    # tokens taken as one would give ceil(1,600 / 128) = 13
    op = prefill_attention_op(QWEN3_8B, DenseAttention(), [PrefillChunk(100, 0), PrefillChunk(300, 50)])
    assert op.shape["tiles"] == 14
    work = kernel_work(op, 132)
    assert work.items == 14 * 8  # 112 tiles fill 80% of 132 SMs: no split
    totals = replace(op, shape={k: v for k, v in op.shape.items() if k != "tiles"})
    assert kernel_work(totals, 132).items == 13 * 8


def test_prefill_splits_the_keys_when_its_tiles_leave_sms_idle():
    """FlashAttention-3's num_splits_heuristic, worked by hand on 132 SMs."""
    # 1 sequence of 2,048 tokens, 1 query head per KV head, 1 KV head (a single-head shard): 16 tiles,
    # 16 KV blocks. Waves 16 s / 132 for s = 1..16: efficiency 16 s / 132 (all below one wave), best at
    # s = 8 (128 / 132 = 0.970); the first s with efficiency >= 0.85 x 0.970 = 0.824 is 7 (112 / 132 = 0.848)
    dims = AttentionDims(HeadShard(1, 1, 128, 1))
    op = prefill_attention_op(dims, DenseAttention(), [PrefillChunk(2048, 0)])
    work = kernel_work(op, 132)
    assert (work.launches, work.combines, work.items) == (2.0, 1.0, 16 * 7)
    # each split does a seventh of a tile: the longest tile's 2,048 keys over 7
    assert work.longest_item_flops == pytest.approx(4 * 128 * 128 * 2048 / 7)
    # 4 KV blocks (512 tokens): never split; 128 tiles x 8 KV heads fill the SMs: no split either
    short = kernel_work(prefill_attention_op(dims, DenseAttention(), [PrefillChunk(512, 0)]), 132)
    assert (short.combines, short.items) == (0.0, 4)
    full = kernel_work(prefill_attention_op(QWEN3_8B, DenseAttention(), [PrefillChunk(4096, 0)]), 132)
    assert (full.combines, full.items) == (0.0, 128 * 8)


def test_prefill_split_rule_is_the_same_for_arrays_and_scalars():
    from kinsim.ops.kernel_work import _prefill_splits

    grid = np.array([1.0, 7.0, 16.0, 40.0, 105.0, 106.0, 500.0])
    blocks = np.array([200.0, 5.0, 16.0, 3.0, 64.0, 64.0, 64.0])
    scalars = [_prefill_splits(float(g), float(b), 132) for g, b in zip(grid, blocks)]
    assert list(_prefill_splits(grid, blocks, 132)) == scalars
    # 1 tile, 200 blocks: efficiency s / 132 grows with s up to 128 splits (the most FlashAttention makes);
    # the first within 85% of 128 / 132 is s = 109 (109 / 132 = 0.826 >= 0.824); 106 tiles fill 80%: 1
    assert scalars[0] == 109 and scalars[5] == 1 and scalars[3] == 1
    assert _prefill_splits(16, 16, 132) == 7.0 and _prefill_splits(0.0, 10.0, 132) == 1.0  # ints; an empty grid


def test_array_contexts_give_the_same_structure_as_scalars_step_by_step():
    context = np.array([[100.0, 9000.0], [101.0, 9001.0]])
    op = decode_attention_ops(QWEN3_8B, DenseAttention(), context)[0]
    work = kernel_work(op, 132)
    for k in range(2):
        single = kernel_work(decode_attention_ops(QWEN3_8B, DenseAttention(), context[k])[0], 132)
        assert work.items[k] == single.items and work.combines[k] == single.combines


# ------------------------------------------------------------------------------------------ terms


CURVE = KernelCurveSpec(compute_max=0.6, memory_max=0.9, kernel_floor=5e-6, combine_floor=1e-6,
                        per_sequence=1e-8, item_cost=3e-6, item_bandwidth=2e11)


def test_decode_attention_time_is_the_sum_of_its_terms_worked_by_hand():
    op = decode_op(1, 8192)  # 136 items, 1 sequence, split
    nbytes = 8193 * 4096 + 2 * 32 * 128 * 2 + 2 * 8 * 128 * 2  # KV read, query in and out, new K and V
    assert op.bytes == nbytes
    fixed = 2 * 5e-6 + 1e-6 + 1 * 1e-8 + 136 * 3e-6 / 132
    memory = nbytes / (3.35e12 * 0.9) + nbytes / (136 * 2e11)
    compute = op.flops / (989e12 * 0.6)
    expected = fixed + max(memory, compute)
    assert kernel_time(CURVE, kernel_work(op, 132), op.flops, op.bytes, H100, 989e12) == pytest.approx(expected)


def test_a_gemm_runs_in_waves_of_tiles():
    curve = KernelCurveSpec(compute_max=0.8, memory_max=0.9, kernel_floor=2e-6, item_compute_share=0.5)
    op = gemm_op("g", 8192, 4096, 4096, weight_dtype="bf16")  # 4,096 tiles: 32 waves on 132 SMs (31.03)
    waves = math.ceil(4096 / 132)
    per_tile = 2 * 64 * 128 * 4096
    compute = max(op.flops / (989e12 * 0.8), waves * per_tile / (0.5 * 989e12 / 132))
    expected = 2e-6 + max(compute, op.bytes / (3.35e12 * 0.9))
    assert kernel_time(curve, kernel_work(op, 132), op.flops, op.bytes, H100, 989e12) == pytest.approx(expected)


def test_a_profile_transferred_to_a_gpu_with_twice_the_bandwidth_halves_only_the_saturated_term():
    """Hand-worked: the saturated bandwidth doubles, the per-item (Little's law) limit and the fixed terms
    do not, so a small decode kernel gains far less than 2x and a large one almost 2x."""
    profile = H100.calibration
    curve = profile.attention_decode
    fast = H100.with_overrides({"gpu.memory.bandwidth": "6.7 TB/s"})
    assert fast.calibration == profile  # the same terms, applied to the new peaks
    for batch, context in ((1, 1023), (64, 16383)):
        op = decode_op(batch, context)
        work = kernel_work(op, 132)
        fixed = (2 * curve.kernel_floor + work.combines * curve.combine_floor + batch * curve.per_sequence
                 + work.items * curve.item_cost / 132)
        little = op.bytes / (work.items * curve.item_bandwidth)
        before = fixed + op.bytes / (3.35e12 * curve.memory_max) + little
        after = fixed + op.bytes / (6.7e12 * curve.memory_max) + little
        assert float(RooflineCost(H100).op_cost(op).time_s) == pytest.approx(before, rel=1e-12)
        assert float(RooflineCost(fast).op_cost(op).time_s) == pytest.approx(after, rel=1e-12)
    small = decode_op(1, 1023)
    large = decode_op(64, 16383)
    speedup = [float(RooflineCost(H100).op_cost(op).time_s / RooflineCost(fast).op_cost(op).time_s)
               for op in (small, large)]
    assert speedup[0] < 1.3 < 1.6 < speedup[1] < 2.0


def test_prefill_over_an_fp8_kv_cache_has_its_own_terms():
    profile = H100.calibration
    assert profile.attention_prefill_fp8kv is not None and profile.attention_prefill_fp8kv != profile.attention_prefill
    for kv_dtype, curve in (("fp8", profile.attention_prefill_fp8kv), ("bf16", profile.attention_prefill)):
        op = prefill_attention_op(AttentionDims(HeadShard(32, 8, 128, 1), kv_dtype=kv_dtype), DenseAttention(),
                                  [PrefillChunk(3000, 0)])
        expected = kernel_time(curve, kernel_work(op, 132), op.flops, op.bytes, H100, 989e12)
        assert float(RooflineCost(H100).op_cost(op).time_s) == pytest.approx(float(expected), rel=1e-12)


def test_the_datasheet_model_ignores_the_profile():
    op = decode_op(8, 4096)
    plain = DatasheetCost(H100).op_cost(op)
    expected = op.bytes / (3.35e12 * H100.efficiency.attention_memory) + H100.gpu.launch_overhead
    assert float(plain.time_s) == pytest.approx(expected)


def test_a_profile_of_the_first_kind_still_prices_as_before():
    old = KernelCurveSpec(compute_max=0.75, flops_half=2e9, memory_max=0.85, bytes_half=4e6)
    hw = replace(H100, calibration=replace(H100.calibration, gemm=old))
    op = gemm_op("g", 64, 4096, 4096, weight_dtype="bf16")
    e_c = 0.75 * op.flops / (op.flops + 2e9)
    e_m = 0.85 * op.bytes / (op.bytes + 4e6)
    expected = max(op.flops / (989e12 * e_c), op.bytes / (3.35e12 * e_m)) + H100.gpu.launch_overhead
    assert float(RooflineCost(hw).op_cost(op).time_s) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------ collectives


def test_allreduce_traffic_per_protocol():
    assert traffic_factor("ring", 8, True) == 2 * 7 / 8
    assert traffic_factor("oneshot", 8, True) == 7
    assert traffic_factor("nvls", 8, True) == 1.0  # the switch reduces: each byte sent and received once
    assert traffic_factor("nvls", 8, False) == 2 * 7 / 8  # no in-switch reduction (A100): ring
    assert traffic_factor("nvls", 2, True) == 2 * 1 / 2  # 2 GPUs: ring, which sends each byte once too


def test_allreduce_takes_the_faster_protocol_worked_by_hand():
    curve = CollectiveCurveSpec(small_latency=5e-6, small_per_peer=1e-6, small_efficiency=0.3, small_traffic="ring",
                                large_latency=30e-6, large_per_peer=0.0, large_efficiency=0.6, large_traffic="nvls")
    bandwidth = 450e9
    small = 64 * 1024.0  # 64 KiB over 8 GPUs: LL 5 + 7 + 1.75 x 64 KiB / (0.3 x 450 GB/s) = 12.85 us
    net, lat = allreduce_time(curve, small, 8, bandwidth, True)
    assert net + lat == pytest.approx(5e-6 + 7e-6 + 1.75 * small / (0.3 * bandwidth))
    large = 64 * 2.0 ** 20  # 64 MiB: NVLS 30 us + 1 x 64 MiB / (0.6 x 450 GB/s)
    net, lat = allreduce_time(curve, large, 8, bandwidth, True)
    assert net + lat == pytest.approx(30e-6 + large / (0.6 * bandwidth))


def test_auto_allreduce_chooses_as_vllm_does():
    assert choose_allreduce("auto", 1e6, 8, H100) == "custom"
    assert choose_allreduce("auto", 16 * 2 ** 20, 8, H100) == "nccl"  # above 8 MiB
    assert choose_allreduce("auto", 1e6, 3, H100) == "nccl"  # 3 GPUs: not supported by the custom kernel
    assert choose_allreduce("nccl", 1e6, 8, H100) == "nccl"


def test_the_deployment_chooses_the_allreduce_implementation():
    op_custom = collective_op("ar", "allreduce", 2 * 5120 * 64.0, 8, implementation="custom")
    op_nccl = collective_op("ar", "allreduce", 2 * 5120 * 64.0, 8, implementation="nccl")
    cost = RooflineCost(H100)
    custom_s, nccl_s = float(cost.op_cost(op_custom).time_s), float(cost.op_cost(op_nccl).time_s)
    assert custom_s < nccl_s  # the custom one-shot kernel beats NCCL at decode sizes
    custom = H100.calibration.allreduce_custom
    b = 2 * 5120 * 64.0
    oneshot = custom.small_latency + 7 * custom.small_per_peer + 7 * b / (450e9 * custom.small_efficiency)
    twoshot = custom.large_latency + 7 * custom.large_per_peer + 1.75 * b / (450e9 * custom.large_efficiency)
    assert custom_s == pytest.approx(min(oneshot, twoshot))


# ------------------------------------------------------------------------------------------ engine overhead


def test_every_step_pays_the_engines_host_overhead():
    from kinsim.workload.load import load_workload

    from .conftest import WORKLOADS

    w = load_workload(WORKLOADS / "aime_bon32.yaml")
    none = load_workload(WORKLOADS / "aime_bon32.yaml", {"deployment.engine": "none"})
    cost = RooflineCost(H100)
    context = np.array([[500.0, 900.0, 1200.0]])
    with_vllm = StepPricer(w.model, w.deployment, w.attention, cost).decode_segment(context)
    bare = StepPricer(none.model, none.deployment, none.attention, cost).decode_segment(context)
    vllm = ENGINE_OVERHEADS["vllm"]
    assert with_vllm.time_s[0] - bare.time_s[0] == pytest.approx(vllm.step_s + 3 * vllm.per_sequence_s, rel=1e-9)
    assert with_vllm.class_s("other")[0] - bare.class_s("other")[0] == pytest.approx(
        vllm.step_s + 3 * vllm.per_sequence_s, rel=1e-9)


# ------------------------------------------------------------------------------------------ transfer


def test_the_other_gpus_take_the_h100_profile_transferred(tmp_path):
    h200 = load_hardware(HARDWARE / "h200.yaml")
    assert h200.calibration.transferred_from == "NVIDIA H100 80GB HBM3" and H100.calibration.transferred_from is None
    assert h200.calibration.attention_decode == H100.calibration.attention_decode
    assert A100.node.gpu_link.in_switch_reduction is False and h200.node.gpu_link.in_switch_reduction is True
    broken = tmp_path / "hw.yaml"
    broken.write_text(f"extends: {HARDWARE / 'h100.yaml'}\ncalibration: {{from: calibration/h100.yaml, scale: 2}}\n")
    from kinsim.errors import SpecError

    with pytest.raises(SpecError, match="unknown key 'scale'") as error:
        load_hardware(broken)
    assert error.value.path == "calibration.scale"


def test_a_flashattention2_gpu_prices_decode_with_its_structure_and_a_fifth_of_the_bytes_in_flight():
    """Hand-worked: the A100 runs FlashAttention-2; the H100 profile was fitted on FlashAttention-3."""
    assert A100.gpu.attention_kernels == "flash2" and H100.gpu.attention_kernels == "flash3"
    assert (H100.calibration.attention_kernels or "flash3") == "flash3"
    profile = H100.calibration.on_clock(A100.gpu.compute.clock)
    curve = profile.attention_decode
    op = decode_op(1, 8191)  # 8 KV heads of 4 query heads, 8,192 tokens: 8 row blocks split 22 ways on 216 slots
    work = kernel_work(op, 108, "flash2", "flash3")
    assert (work.items, work.combines, work.in_flight) == (8 * 22, 1.0, 128 / 704)
    fixed = 2 * curve.kernel_floor + curve.combine_floor + 1 * curve.per_sequence + 176 * curve.item_cost / 108
    memory = (op.bytes / (A100.gpu.memory.bandwidth * curve.memory_max)
              + op.bytes / (176 * curve.item_bandwidth * 128 / 704))
    compute = op.flops / (A100.peak("bf16") * curve.compute_max)
    assert float(RooflineCost(A100).op_cost(op).time_s) == pytest.approx(fixed + max(memory, compute), rel=1e-12)


def test_a_lone_flashattention2_decode_block_is_bound_by_its_padded_tiles():
    """Hand-worked: one sequence of multi-head attention (8 heads of 128) over 131,072 keys on the A100.

    FlashAttention-2 never splits multi-head decode: 8 thread blocks, each computing 64 query rows (one real)
    against 1,024 blocks of 128 keys, the first within the profile's fixed time, at half an SM's peak."""
    from kinsim.ops.kernel_work import FLASH2_TILE_ROWS, FLASH2_TILE_SHARE

    assert (FLASH2_TILE_ROWS, FLASH2_TILE_SHARE) == (64, 0.5)
    dims = AttentionDims(HeadShard(8, 8, 128, 1))
    op = decode_attention_ops(dims, DenseAttention(), np.array([131071.0]))[0]
    work = kernel_work(op, 108, "flash2", "flash3")
    assert (work.items, work.combines, work.tile_share) == (8, 0, 0.5)
    tile = 4 * 64 * 128 * 128 * (131072 // 128 - 1)  # FLOPs: QK and PV of 64 rows, 1,023 key blocks
    assert work.longest_item_flops == tile
    curve = H100.calibration.on_clock(A100.gpu.compute.clock).attention_decode
    fixed = 2 * curve.kernel_floor + curve.per_sequence + 8 * curve.item_cost / 108
    compute = tile / (0.5 * A100.peak("bf16") / 108)  # about 2.9 ms: 2.9 us per 128 keys
    memory = (op.bytes / (A100.gpu.memory.bandwidth * curve.memory_max)
              + op.bytes / (8 * curve.item_bandwidth * 128 / 704))
    assert compute > memory  # the padded tiles, not the 64 MiB of K and V, bound the kernel
    assert 2.8e-3 < compute < 3.0e-3
    assert float(RooflineCost(A100).op_cost(op).time_s) == pytest.approx(fixed + compute, rel=1e-12)
    # the same op as an array (a segment's steps) gives the same time; FlashAttention-3 has no such term
    steps = decode_attention_ops(dims, DenseAttention(), np.array([[131071.0], [131071.0]]))[0]
    assert np.allclose(RooflineCost(A100).op_cost(steps).time_s, fixed + compute, rtol=1e-12, atol=0)
    assert kernel_work(op, 132).tile_share is None


def test_measurement_rows_on_a_flashattention2_gpu_are_priced_as_the_engine_prices_the_op():
    import pandas as pd

    from kinsim.calibration.rows import predict

    # decode rows of the A100 tables (FA2) under the H100 profile (fitted on FA3): the validator's figure is
    # the engine's, FA2 structure and bytes in flight included
    ops = [decode_op(batch, context) for batch, context in ((1, 8191), (4, 131071), (64, 1023))]
    frame = pd.DataFrame([{"kernel": "attention_decode", "dtype": "bf16", "kv_dtype": "bf16", "flops": op.flops,
                           "bytes": op.bytes, "time_s": 1e-4, "batch": op.shape["batch"], "q_heads": 32,
                           "kv_heads": 8, "head_dim": 128, "context": op.shape["kv_tokens_read"] / op.shape["batch"],
                           "kv_tokens_read": op.shape["kv_tokens_read"]} for op in ops])
    engine = [float(RooflineCost(A100).op_cost(op).time_s) for op in ops]
    assert predict(frame, A100) == pytest.approx(engine, rel=1e-12)
    as_flash3 = A100.with_overrides({"gpu.attention_kernels": "flash3"})  # FA3's split, all bytes in flight
    assert all(abs(a / b - 1) > 0.05 for a, b in zip(predict(frame, A100), predict(frame, as_flash3)))


def test_fixed_times_are_counted_in_cycles_of_the_fitted_gpu():
    profile = H100.calibration
    assert profile.clock == 1830e6  # written by the fit from hardware/h100.yaml
    # the shortest kernel floor of the profile is its elementwise kernels': the part of every floor counted in
    # cycles; the rest of a longer floor is seconds
    shortest = profile.elementwise.kernel_floor
    assert shortest == min(c.kernel_floor for c in (getattr(profile, kind) for kind in CALIBRATED_KERNELS)
                           if c is not None and c.kernel_floor)
    slow = profile.on_clock(915e6)  # a GPU at half the clock: the cycles take twice as long, shares stay
    decode = profile.attention_decode
    assert decode.kernel_floor > shortest > decode.combine_floor
    assert slow.attention_decode.kernel_floor == pytest.approx(2 * shortest + (decode.kernel_floor - shortest))
    assert slow.attention_decode.combine_floor == pytest.approx(2 * decode.combine_floor)  # below it: all cycles
    assert slow.elementwise.kernel_floor == pytest.approx(2 * shortest)
    # an attention thread block's cost is its chain of dependent reads: seconds; a GEMM tile's, cycles
    assert slow.attention_decode.item_cost == decode.item_cost
    assert slow.attention_prefill.item_cost == profile.attention_prefill.item_cost
    assert slow.gemm.item_cost == pytest.approx(2 * profile.gemm.item_cost)
    assert slow.attention_decode.per_sequence == pytest.approx(2 * decode.per_sequence)
    assert slow.allreduce_custom.small_latency == pytest.approx(2 * profile.allreduce_custom.small_latency)
    assert slow.attention_decode.memory_max == decode.memory_max
    assert slow.attention_decode.item_bandwidth == decode.item_bandwidth
    a100 = RooflineCost(A100)  # 1410 MHz: the cycles of a floor take 1830 / 1410 times as long as the H100's
    gemm = profile.gemm.kernel_floor
    assert a100.profile.gemm.kernel_floor == pytest.approx(shortest * 1830 / 1410 + (gemm - shortest))
    assert profile.on_clock(1830e6) is profile  # the fitted GPU's own clock: as written


def test_flashattention2_copies_the_query_and_output_when_it_swaps_heads_into_rows():
    """Hand-worked: FlashAttention-2's varlen decode moves a KV head's query heads into the tile's rows with
    a reshape of the query and of the output, which copies exactly when there are two sequences or more and
    two KV heads or more; each copy is an elementwise kernel priced by the profile's elementwise curve."""
    from dataclasses import replace as with_fields

    from kinsim.ops.kernel_work import copy_op

    def work_of(q_heads, kv_heads, batch):
        op = decode_attention_ops(AttentionDims(HeadShard(q_heads, kv_heads, 128, 1)), DenseAttention(),
                                  np.full(batch, 1023.0))[0]
        return op, kernel_work(op, 108, "flash2", "flash3")

    op, work = work_of(32, 8, 4)
    assert (work.copies, work.copy_bytes) == (2.0, 2 * 4 * 32 * 128 * 2)  # query, then output: 32 KiB each
    for shape in ((32, 8, 1), (8, 1, 4), (8, 8, 4)):  # one sequence, one KV head, multi-head: views, no copy
        assert work_of(*shape)[1].copies == 0.0
    assert kernel_work(op, 132).copies == 0.0  # FlashAttention-3 packs the heads in its kernel
    # the op's time: its kernels' as before, plus two elementwise kernels of 65,536 bytes (one 64 KiB item)
    cost = RooflineCost(A100)
    curve, copy = cost.profile.attention_decode, cost.profile.elementwise
    main = kernel_time(curve, with_fields(work, copies=0.0), op.flops, op.bytes, A100, A100.peak("bf16"))
    assert copy_op(65536.0).bytes == 65536.0
    # (the elementwise curve's terms that the sum below leaves out are zero or absent)
    assert (copy.item_cost, copy.per_sequence, copy.bytes_half, copy.overlap_loss) == (0.0, 0.0, 0.0, None)
    one_copy = copy.kernel_floor + (65536.0 / (A100.gpu.memory.bandwidth * copy.memory_max)
                                    + 65536.0 / (1 * copy.item_bandwidth))
    assert float(cost.op_cost(op).time_s) == pytest.approx(main + 2 * one_copy, rel=1e-12)
    # a segment's steps as arrays: the same
    steps = decode_attention_ops(QWEN3_8B, DenseAttention(), np.full((3, 4), 1023.0))[0]
    assert np.allclose(cost.op_cost(steps).time_s, main + 2 * one_copy, rtol=1e-12, atol=0)


def test_flashattention2_swaps_heads_for_a_prefill_of_one_token_a_sequence_too():
    """The swap is FlashAttention-2's entry point's, for any call whose sequences have one new token each: a
    prefill op of four one-token chunks copies as decode does; chunks of two tokens do not swap."""
    def prefill(tokens):
        chunks = tuple(PrefillChunk(tokens, 100, True) for _ in range(4))
        return prefill_attention_op(QWEN3_8B, DenseAttention(), chunks)

    one = kernel_work(prefill(1), 108, "flash2", "flash3")
    assert (one.copies, one.copy_bytes) == (2.0, 2 * 4 * 32 * 128 * 2)
    assert kernel_work(prefill(2), 108, "flash2", "flash3").copies == 0.0
    assert kernel_work(prefill(1), 132).copies == 0.0  # FlashAttention-3
    single = prefill_attention_op(QWEN3_8B, DenseAttention(), (PrefillChunk(1, 100, True),))
    assert kernel_work(single, 108, "flash2", "flash3").copies == 0.0  # one sequence: views


def test_a_flashattention2_prefill_runs_a_64_row_block_per_query_head_never_split():
    """Hand-worked: two prompts of 100 and 30 tokens (Qwen3-8B at TP 1: 32 query heads of 8 KV heads, d 128).

    vLLM's paged KV cache sends FlashAttention-2's prefill to its split-KV kernel: blocks of 64 rows of one
    query head, ceil(100 / 64) + ceil(30 / 64) = 3 per head, 96 in all, unsplit, no combine. FlashAttention-3
    packs a KV head's 4 query heads into 128-row tiles: ceil(400 / 128) + ceil(120 / 128) = 5 per KV head."""
    from kinsim.ops.kernel_work import FLASH2_TILE_ROWS

    op = prefill_attention_op(QWEN3_8B, DenseAttention(), (PrefillChunk(100, 0, True), PrefillChunk(30, 0, True)))
    assert (op.shape["tiles"], op.shape["row_blocks"]) == (5.0, 3.0)
    fa2 = kernel_work(op, 108, "flash2", "flash3")
    fa3 = kernel_work(op, 132)
    assert (fa3.items, fa3.combines) == (5 * 8, 0.0)
    assert (fa2.items, fa2.combines, fa2.sequences, fa2.copies) == (3 * 32, 0.0, 130.0, 0.0)
    # a block's rows: 130 new tokens over 3 blocks (64 + 36 and 30 real rows); its keys: half the prompt and
    # half a block, at least one 128-key block, 65 <= 128 of them
    rows = 130 / 3
    assert rows < FLASH2_TILE_ROWS
    assert fa2.item_flops == pytest.approx(4 * rows * 128 * 128, rel=1e-15) and fa2.longest_item_flops == fa2.item_flops
    # priced by the A100's own profile (fitted on FlashAttention-2 rows with this structure)
    a100 = load_hardware(HARDWARE / "a100.yaml")
    curve = a100.calibration.attention_prefill
    fixed = 2 * curve.kernel_floor + 130 * curve.per_sequence + 96 * curve.item_cost / 108
    compute = max(op.flops / (a100.peak("bf16") * curve.compute_max),
                  math.ceil(96 / 108) * fa2.item_flops / (curve.item_compute_share * a100.peak("bf16") / 108))
    memory = op.bytes / (a100.gpu.memory.bandwidth * curve.memory_max)
    expected = fixed + max(compute, memory) + curve.overlap_loss * min(compute, memory)
    assert float(RooflineCost(a100).op_cost(op).time_s) == pytest.approx(expected, rel=1e-12)


def test_a_flashattention2_prefill_grid_ends_a_launch_order_tail_after_its_balanced_time():
    """Hand-worked: one prompt of 4,096 tokens on the A100 (Qwen3-8B at TP 1, 32 query heads). FlashAttention-2
    runs 4096 / 64 = 64 row blocks per query head, 2,048 in all on 108 SMs, each head's shortest first: the
    first reads one 128-key block, the last all 32. The last block starts about when the running blocks have a
    third of its work left (evenly spread lengths from 128 to 4,096 keys: (L^2 + L s + s^2) / (3 (L + s))), then
    runs alone at the profile's per-tile share while the rest ran at the whole GPU's share: compute is the
    op's FLOPs at the whole GPU's rate plus L / tile rate - remainder / (whole rate / 108). FlashAttention-3
    starts a head's longest tile first and has no such term."""
    from kinsim.ops.kernel_work import prefill_exp_scale

    op = prefill_attention_op(QWEN3_8B, DenseAttention(), (PrefillChunk(4096, 0, True),))
    fa2, fa3 = kernel_work(op, 108, "flash2", "flash3"), kernel_work(op, 132)
    per_key = 4 * 64 * 128 * prefill_exp_scale(128.0)  # 64 real rows a block, head dimension 128
    assert (fa2.items, fa2.in_launch_order, fa3.in_launch_order) == (2048.0, 1.0, 0.0)
    assert fa2.longest_item_flops == pytest.approx(per_key * 4096, rel=1e-15)
    assert fa2.shortest_item_flops == pytest.approx(per_key * 128, rel=1e-15)
    a100 = load_hardware(HARDWARE / "a100.yaml")
    curve, peak = a100.calibration.attention_prefill, a100.peak("bf16")
    big, small = per_key * 4096, per_key * 128
    remainder = (big * big + big * small + small * small) / (3 * (big + small))
    whole = op.flops * prefill_exp_scale(128.0) / (peak * curve.compute_max)
    tail = big / (curve.item_compute_share * peak / 108) - remainder / (curve.compute_max * peak / 108)
    assert tail > 0.03 * whole  # a few percent of a one-prompt kernel (about 0.4% at 16 prompts)
    compute = whole + tail  # more than the waves' (19 x the mean block) and the longest block's alone
    assert compute > max(math.ceil(2048 / 108) * fa2.item_flops, big) / (curve.item_compute_share * peak / 108)
    fixed = 2 * curve.kernel_floor + 4096 * curve.per_sequence + 2048 * curve.item_cost / 108
    memory = op.bytes / (a100.gpu.memory.bandwidth * curve.memory_max)
    expected = fixed + max(compute, memory) + curve.overlap_loss * min(compute, memory)
    assert float(RooflineCost(a100).op_cost(op).time_s) == pytest.approx(expected, rel=1e-12)
    # the same op as a one-row array (a table's or a segment's path): the same seconds
    work = kernel_work(op, 108, "flash2", "flash3")
    array_work = replace(work, **{name: np.array([getattr(work, name)]) for name in
                                  ("items", "item_flops", "longest_item_flops", "shortest_item_flops",
                                   "in_launch_order")})
    assert kernel_time(curve, array_work, np.array([op.flops]), np.array([op.bytes]), a100, peak)[0] == \
        pytest.approx(kernel_time(curve, work, float(op.flops), float(op.bytes), a100, peak), rel=1e-12)


def test_the_launch_order_tail_matches_an_event_by_event_schedule():
    """The closed form against a schedule computed block by block: 32 heads of 64 row blocks (1 to 64 units
    of work, each head's shortest first) on 108 SMs; each SM takes the next block when it frees; ``n`` blocks
    running share the GPU's rate ``108 x 0.68`` but none runs faster than 0.855 alone (the H100 prefill
    profile's two shares). The schedule ends 0.54 of the longest block's time alone after the balanced time;
    the closed form says 1 - 0.855 / (3 x 0.68) x (64^2 + 64 + 1) / (64 x 65) = 0.58: within 10%."""
    from kinsim.cost.kernel_model import launch_order_tail

    sms, whole, alone = 108, 0.68, 0.855
    blocks = [float(m + 1) for _ in range(32) for m in range(64)]
    running, queue, clock = [], list(reversed(blocks)), 0.0
    while queue or running:
        while queue and len(running) < sms:
            running.append(queue.pop())
        rate = min(alone, sms * whole / len(running))
        step = min(running) / rate
        clock += step
        running = [left - step * rate for left in running if left - step * rate > 1e-9]
    balanced = sum(blocks) / (sms * whole)
    simulated = (clock - balanced) / (64 / alone)
    closed = launch_order_tail(64.0, 1.0, alone, whole) / (64 / alone)
    assert 0.50 < simulated < 0.56
    assert closed == pytest.approx(1 - alone / (3 * whole) * (64 * 64 + 64 + 1) / (64 * 65), rel=1e-12)
    assert closed == pytest.approx(simulated, rel=0.10)


def test_flashattention2_prefill_measurement_rows_count_the_engines_blocks():
    """A row of the A100 context table (4 prompts of 100 tokens) has the blocks the engine's op of the same
    prompts has: 4 x ceil(100 / 64) = 8 per query head; and a one-token grouped call keeps the swapped
    heads' tiles (FA3's count for a group of up to 64 heads) while a multi-head one runs a block per head."""
    import pandas as pd

    from kinsim.calibration.rows import row_op

    chunks = tuple(PrefillChunk(100, 0, True) for _ in range(4))
    op = prefill_attention_op(QWEN3_8B, DenseAttention(), chunks)
    frame = pd.DataFrame([{"kernel": "attention_prefill", "dtype": "bf16", "kv_dtype": "bf16", "flops": op.flops,
                           "bytes": op.bytes, "time_s": 1e-4, "batch": 4, "tokens": 100, "q_heads": 32,
                           "kv_heads": 8, "head_dim": 128}])
    row = row_op(frame, "attention_prefill")
    assert row.shape["row_blocks"][0] == op.shape["row_blocks"] == 8.0
    assert kernel_work(row, 108, "flash2", "flash3").items[0] == kernel_work(op, 108, "flash2", "flash3").items
    one = prefill_attention_op(QWEN3_8B, DenseAttention(), tuple(PrefillChunk(1, 100, True) for _ in range(4)))
    assert kernel_work(one, 108, "flash2", "flash3").items == kernel_work(one, 108).items == 4 * 8
    multi_head = AttentionDims(HeadShard(8, 8, 128, 1))
    one_mha = prefill_attention_op(multi_head, DenseAttention(), tuple(PrefillChunk(1, 100, True) for _ in range(4)))
    assert kernel_work(one_mha, 108, "flash2", "flash3").items == 4 * 8


def test_flashattention2_does_not_swap_heads_in_a_mixed_step_or_under_a_local_window():
    """A mixed step runs its decodes in one FlashAttention-2 call with its prompts, whose longest query is the
    longest chunk: no swap, so no split and no copies (one thread block per sequence and query head); a
    model's sliding-window layers (a local window) do not swap either."""
    from kinsim.ops.lower import StepBatch, attention_ops
    from kinsim.workload.spec import SlidingWindowAttention

    workload = load_workload(WORKLOADS / "chat_poisson.yaml")
    context = np.full(4, 1023.0)
    mixed = StepBatch(decode_context=context, prefill=(PrefillChunk(512, 0, True),))
    decode = attention_ops(QWEN3_8B, workload.deployment, DenseAttention(), mixed, 1)[0]
    assert decode.kernel == "attention_decode" and decode.shape["call_queries"] == 512
    work = kernel_work(decode, 108, "flash2", "flash3")
    assert (work.items, work.combines, work.copies) == (4 * 32, 0.0, 0.0)
    alone = attention_ops(QWEN3_8B, workload.deployment, DenseAttention(), StepBatch(decode_context=context), 1)[0]
    assert "call_queries" not in alone.shape  # a decode step: the op as before
    assert kernel_work(alone, 108, "flash2", "flash3").copies == 2.0
    # FlashAttention-3 packs the heads either way: the mixed step's decode op is priced as before
    assert kernel_work(decode, 132) == kernel_work(alone, 132)
    # a sliding-window layer's decode and one-token prefill: no swap
    windowed = decode_attention_ops(QWEN3_8B, SlidingWindowAttention(window=128), context, model_window=True)[0]
    assert windowed.shape["window"] == 128
    assert (kernel_work(windowed, 108, "flash2", "flash3").copies, kernel_work(windowed, 108, "flash2").combines) \
        == (0.0, 0.0)
    chunks = tuple(PrefillChunk(1, 100, True) for _ in range(4))
    local = prefill_attention_op(QWEN3_8B, SlidingWindowAttention(window=128), chunks, model_window=True)
    assert kernel_work(local, 108, "flash2", "flash3").copies == 0.0


def test_the_bare_floor_is_the_elementwise_kernels_or_else_the_shortest():
    profile = H100.calibration
    assert profile.bare_floor() == profile.elementwise.kernel_floor
    without = replace(profile, elementwise=None)  # the shortest floor of the other curves: the GEMM's
    assert without.bare_floor() == min(profile.gemm.kernel_floor, profile.attention_decode.kernel_floor,
                                       profile.attention_prefill.kernel_floor, profile.moe.kernel_floor,
                                       profile.attention_decode_fp8kv.kernel_floor,
                                       profile.attention_prefill_fp8kv.kernel_floor) == profile.gemm.kernel_floor
    decode = profile.attention_decode.kernel_floor
    assert without.on_clock(915e6).attention_decode.kernel_floor == pytest.approx(
        2 * profile.gemm.kernel_floor + (decode - profile.gemm.kernel_floor))


def test_the_in_switch_protocol_runs_only_where_the_switch_reduces():
    curve = CollectiveCurveSpec(small_latency=5e-6, small_efficiency=0.3, large_latency=20e-6, large_efficiency=0.65,
                                switch_latency=10e-6, switch_efficiency=0.5)
    b = 256 * 2.0 ** 20  # 256 MiB over 8 GPUs
    ring = 20e-6 + 1.75 * b / (0.65 * 450e9)
    switch = 10e-6 + 1.0 * b / (0.5 * 450e9)  # each byte sent and received once: faster despite 0.5
    assert sum(allreduce_time(curve, b, 8, 450e9, True)) == pytest.approx(switch)
    assert sum(allreduce_time(curve, b, 8, 450e9, False)) == pytest.approx(ring)  # an A100's switch: ring
    assert sum(allreduce_time(curve, b, 2, 450e9, True)) == pytest.approx(20e-6 + 1.0 * b / (0.65 * 450e9))


def test_decode_over_an_fp8_kv_cache_has_its_own_terms():
    profile = H100.calibration
    assert profile.attention_decode_fp8kv is not None and profile.attention_decode_fp8kv != profile.attention_decode
    fp8 = decode_attention_ops(AttentionDims(HeadShard(32, 8, 128, 1), kv_dtype="fp8"), DenseAttention(),
                               np.full(16, 4095.0))[0]
    assert fp8.shape["kv_bytes_per_element"] == 1
    expected = kernel_time(profile.attention_decode_fp8kv, kernel_work(fp8, 132), fp8.flops, fp8.bytes, H100, 989e12)
    assert float(RooflineCost(H100).op_cost(fp8).time_s) == pytest.approx(float(expected), rel=1e-12)
    bf16 = decode_op(16, 4095)
    expected = kernel_time(profile.attention_decode, kernel_work(bf16, 132), bf16.flops, bf16.bytes, H100, 989e12)
    assert float(RooflineCost(H100).op_cost(bf16).time_s) == pytest.approx(float(expected), rel=1e-12)


def test_the_shorter_term_that_does_not_overlap_adds_to_the_longer():
    """overlap_loss 0.25: a GEMM near the ridge point (M 512 on 4,096 x 4,096) takes max + 0.25 x min of its
    compute and memory times beyond its floor; absent, the roofline's max; the engine's cost model and the
    fitter's kernel_time agree."""
    from dataclasses import replace

    from kinsim.cost.roofline import RooflineCost

    curve = KernelCurveSpec(compute_max=0.8, memory_max=0.9, kernel_floor=2e-6, overlap_loss=0.25)
    op = gemm_op("g", 512, 4096, 4096, weight_dtype="bf16")
    compute = op.flops / (989e12 * 0.8)
    memory = op.bytes / (3.35e12 * 0.9)
    expected = 2e-6 + max(compute, memory) + 0.25 * min(compute, memory)
    assert kernel_time(curve, kernel_work(op, 132), op.flops, op.bytes, H100, 989e12) == pytest.approx(expected)
    plain = replace(curve, overlap_loss=None)
    assert kernel_time(plain, kernel_work(op, 132), op.flops, op.bytes, H100, 989e12) == pytest.approx(
        2e-6 + max(compute, memory))
    profile = replace(H100.calibration, gemm=curve)
    cost = RooflineCost(replace(H100, calibration=profile)).op_cost(op)
    assert cost.time_s == pytest.approx(expected)


def test_a_prefill_chunk_after_a_cached_prefix_has_tiles_that_read_the_prefix():
    """512 new tokens after 8,000 cached (a chunked prompt's second chunk), 32 query heads on 8 KV heads of
    128: each 128-row tile reads the prefix, then on average half the chunk and half a block of keys,
    8,000 + 256 + 64 = 8,320 (half of the 8,512 positions, as for a fresh prompt, would be 4,320), and the
    longest tile reads all 8,512 in 67 blocks of 128; the op's FLOPs are the exact causal count."""
    from kinsim.ops.attention import AttentionDims, PrefillChunk, prefill_attention_op
    from kinsim.ops.sharding import HeadShard
    from kinsim.workload.spec import DenseAttention

    dims = AttentionDims(HeadShard(32, 8, 128, 1))
    op = prefill_attention_op(dims, DenseAttention(), [PrefillChunk(512, 8000)])
    per_key = 4 * 128 * 128
    assert op.flops == 4 * 32 * 128 * (512 * 8000 + 512 * 513 // 2)
    work = kernel_work(op, 132)
    assert work.items == 16 * 8  # ceil(512 x 4 / 128) = 16 packed tiles per KV head, 8 heads: no split
    assert work.item_flops == per_key * 8320 and work.longest_item_flops == per_key * 67 * 128
    fresh = kernel_work(prefill_attention_op(dims, DenseAttention(), [PrefillChunk(512)]), 132)
    assert fresh.item_flops == per_key * (256 + 64)
