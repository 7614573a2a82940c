"""Models whose layers mix sliding-window and full attention (gpt-oss), and experts stored in MXFP4: the
parameter and KV arithmetic, the attention ops of each kind of layer, the KV cache's capacity, the engine's
fast = exact rule, and the silicon rows of such a model. Numbers are worked by hand here."""

from __future__ import annotations

import numpy as np
import pytest

from kinsim import load_hardware, simulate
from kinsim.calibration.silicon import consistent, decode_floor_s, expressible, workload_of
from kinsim.cost.roofline import RooflineCost
from kinsim.engine.kv import kv_layout
from kinsim.engine.memory_budget import kv_budget_bytes
from kinsim.engine.pricer import StepPricer
from kinsim.errors import SpecError
from kinsim.model import load_model
from kinsim.ops.attention import PrefillChunk
from kinsim.ops.lower import StepBatch, lower_step
from kinsim.workload.load import workload_from_raw

from .conftest import HARDWARE, ROOT
from .test_engine import assert_same_figures, figures, workload

H100 = load_hardware(HARDWARE / "h100.yaml")

#: Qwen3-0.6B with 12 of its 28 layers over a 64-token window.
HYBRID = {"preset": "Qwen3-0.6B", "sliding_window": 64, "sliding_window_layers": 12}


def test_gpt_oss_120b_parameters_weights_and_kv():
    """openai/gpt-oss-120b's config.json; the model card's 116.8B total and 5.1B active parameters (active
    counted without the embeddings, with the unembedding)."""
    m = load_model("gpt-oss-120b")
    h, layers, q, kv = 2880, 36, 64 * 64, 8 * 64
    attention = h * q + 2 * h * kv + q * h + q + 2 * kv  # Q, K, V, O and the Q, K, V biases
    expert = 3 * h * 2880
    router = h * 128
    embeddings = 2 * 201_088 * h + h
    total = layers * (attention + router + 128 * expert + 2 * h) + embeddings
    assert m.params_total == total == 116_789_232_960
    assert m.params_active == layers * (attention + router + 4 * expert + 2 * h) + embeddings
    assert m.params_total == pytest.approx(116.8e9, rel=0.002)
    assert m.params_active - 201_088 * h == pytest.approx(5.13e9, rel=0.01)
    experts = layers * 128 * expert
    assert m.weight_bytes == (total - experts) * 2 + experts * 17 / 32  # bf16, and MXFP4: 4 bits + a byte per 32
    assert m.weight_bytes == pytest.approx(65.2e9, rel=0.01)  # the checkpoint's 65 GB of safetensors
    assert m.kv_bytes_per_token == 2 * 8 * 64 * 18 * 2 == 36_864  # the 18 full-attention layers
    assert m.window_kv_bytes == 2 * 8 * 64 * 18 * 128 * 2


def test_sliding_window_layers_need_a_window_and_fit_the_stack():
    with pytest.raises(SpecError, match="sliding_window"):
        load_model({"preset": "Qwen3-0.6B", "sliding_window_layers": 4})
    with pytest.raises(SpecError, match="must be less than layers"):  # at least one layer pages its KV
        load_model({"preset": "Qwen3-0.6B", "sliding_window": 64, "sliding_window_layers": 28})
    with pytest.raises(SpecError, match="expert_weight_dtype"):
        load_model({"preset": "Qwen3-30B-A3B", "moe": {"experts": 128, "active_experts": 8,
                                                         "expert_intermediate_size": 768,
                                                         "expert_weight_dtype": "fp5"}})


def _ops(model, batch, name):
    w = workload(model=model)
    return [op for op in lower_step(w.model, w.deployment, w.attention, batch).ops if op.name == name]


def test_decode_reads_the_whole_context_in_full_layers_and_the_window_in_the_others():
    batch = StepBatch(decode_context=np.array([10.0, 500.0]))
    (full,) = _ops(HYBRID, batch, "attention_decode")
    (window,) = _ops(HYBRID, batch, "attention_decode_window")
    assert (full.count, window.count) == (16, 12)
    assert full.shape["kv_tokens_read"] == 11 + 501
    assert window.shape["kv_tokens_read"] == 11 + 64
    assert window.kernel == full.kernel == "attention_decode"  # FlashAttention's local window, not a sparse kernel
    # K and V of 8 heads of 128 in bf16 per token read; each of the 2 sequences' query, 16 heads of 128
    assert window.bytes_read == 75 * 2 * 8 * 128 * 2 + 2 * 16 * 128 * 2


def test_prefill_of_a_window_layer_attends_to_at_most_the_window():
    batch = StepBatch(prefill=(PrefillChunk(300, 0, True),))
    (full,) = _ops(HYBRID, batch, "attention_prefill")
    (window,) = _ops(HYBRID, batch, "attention_prefill_window")
    per_key = 4 * 16 * 128  # q.k and p.v over 16 query heads of 128
    assert full.flops == per_key * (300 * 301 // 2)
    assert window.flops == per_key * (64 * 65 // 2 + (300 - 64) * 64)


def test_a_model_without_window_layers_lowers_as_before():
    batch = StepBatch(decode_context=np.array([10.0, 500.0]), prefill=(PrefillChunk(300, 0, True),))
    names = [op.name for op in lower_step(*_wdp("Qwen3-0.6B"), batch).ops]
    assert "attention_decode_window" not in names and "attention_prefill_window" not in names
    (full,) = _ops("Qwen3-0.6B", batch, "attention_decode")
    assert full.count == 28


def _wdp(model):
    w = workload(model=model)
    return w.model, w.deployment, w.attention


def test_mxfp4_experts_are_read_in_17_32_of_a_byte_and_computed_at_the_fp4_rate_where_there_is_one():
    w = workload(model="gpt-oss-20b")
    (experts,) = [op for op in lower_step(w.model, w.deployment, w.attention,
                                          StepBatch(decode_context=np.array([100.0]))).ops
                  if op.name == "moe_experts"]
    assert experts.dtype == "mxfp4"
    weights = 4 * 3 * 2880 * 2880 * 17 / 32  # one token: 4 experts, gate, up and down of 2880 x 2880
    activations = 4 * (2 * 2880 + 3 * 2880) * 2  # gathered inputs and the gate/up output, bf16, per pair
    assert experts.bytes_read == pytest.approx(weights + activations)
    b200 = load_hardware(HARDWARE / "b200.yaml")
    assert b200.peak("mxfp4") == b200.peak("nvfp4") == b200.peak("fp4") == 9000e12
    assert H100.peak("mxfp4") == H100.peak("nvfp4") == H100.peak("bf16")  # no FP4 tensor cores: W4A16


def test_window_layers_take_their_windows_off_the_pool_and_count_no_further():
    w = workload(model=HYBRID)
    layout = kv_layout(w.model, w.deployment, w.attention, H100)
    layer_kv = 2 * 8 * 128 * 2  # one token, one layer, bf16, one GPU
    block = w.deployment.kv_block_size
    reserve = w.deployment.max_num_seqs * 12 * (-(-64 // block) + 1) * block * layer_kv
    free = kv_budget_bytes(w.model, w.deployment, H100, w.model.weight_bytes) - reserve
    assert layout.block_bytes == block * 16 * layer_kv  # the 16 full-attention layers
    assert layout.total_blocks == int(free // layout.block_bytes)


def test_fast_forward_equals_exact_steps_with_window_layers():
    w = workload(**{"model": HYBRID, "requests.problems": 3, "requests.samples": 4, "requests.output_tokens": 200,
                    "requests.max_output_tokens": 200, "requests.prompt_tokens": 300})
    fast = simulate(w, H100)
    exact = simulate(w, H100, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    assert fast["engine.segments"] < exact["engine.segments"]


def test_segment_pricing_matches_the_steps_priced_one_by_one():
    w = workload(model=HYBRID)
    cost = RooflineCost(H100)
    pricer = StepPricer(w.model, w.deployment, w.attention, cost)
    context = np.array([30, 63, 64, 400])
    run = pricer.decode_run(context, 5)
    for k in range(5):
        one = pricer.step(StepBatch(decode_context=(context + k).astype(float)))
        assert run.time_s[k] == pytest.approx(one.time_s[0], rel=1e-12)


def test_speculative_decoding_or_offloaded_kv_of_a_window_model_is_refused():
    with pytest.raises(SpecError, match="deployment.speculative: Qwen3-0.6B has sliding-window layers"):
        workload(model=HYBRID, **{"deployment.speculative": {"tokens": 3, "acceptance": 0.7}})
    with pytest.raises(SpecError, match="Qwen3-0.6B has sliding-window layers"):  # as the draft
        workload(model="Qwen3-8B", **{"deployment.speculative": {"tokens": 3, "acceptance": 0.7, "draft": HYBRID}})
    with pytest.raises(SpecError, match="attention.offload: Qwen3-0.6B has sliding-window layers"):
        workload(model=HYBRID, attention={"policy": "block_topk", "block_size": 16, "top_k": 4, "offload": True})


GPT_OSS_ROW = {"id": "made_up_gpt_oss", "mode": "agg", "backend": "vllm", "model_path": "openai/gpt-oss-120b",
               "gemm_quant_mode": "nvfp4", "isl": 1024, "osl": 1024, "batch_size": 512, "tp_size": 2,
               "pp_size": 1, "moe_tp_size": 2, "moe_ep_size": 1, "silicon_ttft_ms": 100.0, "silicon_tpot_ms": 5.0}


def test_a_gpt_oss_row_runs_as_its_checkpoint_ships():
    row, why = expressible(GPT_OSS_ROW)
    assert why == "" and row.model == "gpt-oss-120b" and row.weight_dtype == "bf16"
    model = workload_from_raw(workload_of(row), ROOT).model
    assert (model.weight_dtype, model.expert_weight_dtype, model.kv_dtype) == ("bf16", "mxfp4", "bf16")
    qwen, _ = expressible({**GPT_OSS_ROW, "model_path": "Qwen/Qwen3-32B"})  # nvfp4 of another model: NVFP4
    assert qwen.weight_dtype == "nvfp4"


def test_a_row_faster_than_reading_its_weights_once_a_step_did_not_run_its_batch():
    bandwidth = H100.gpu.memory.bandwidth
    one, _ = expressible({**GPT_OSS_ROW, "batch_size": 1})
    model = workload_from_raw(workload_of(one), ROOT).model
    # one token chooses 4 experts (its choice probabilities sum to 4): the other 124 of each layer are not read
    unread = 124 * 36 * 3 * 2880 * 2880 * 17 / 32
    kv = (1024 + 512) * model.kv_bytes_per_token + model.window_kv_bytes
    assert decode_floor_s(one, model, bandwidth) == pytest.approx(
        (model.weight_bytes - unread + kv) / (2 * bandwidth), rel=1e-9)
    row, _ = expressible(GPT_OSS_ROW)  # 512 sequences, 5 ms a token measured
    floor = decode_floor_s(row, model, bandwidth)
    everything = (model.weight_bytes + 512 * kv) / (2 * bandwidth)
    assert 5e-3 < floor <= everything and not consistent(row, model, bandwidth)
    slow, _ = expressible({**GPT_OSS_ROW, "silicon_tpot_ms": floor * 1e3 * 1.01})
    assert consistent(slow, model, bandwidth)


def test_info_tells_the_window_layers_and_the_experts_type():
    from kinsim.describe import describe_model

    m = load_model("gpt-oss-120b")
    facts = describe_model(m)
    assert facts["expert_weight_dtype"] == "mxfp4"
    # one sequence of 32k tokens: the full-attention layers' KV per token, plus each window layer's 128 tokens
    assert facts["kv_bytes_at_32k"] == 32768 * 36_864 + 2 * 8 * 64 * 18 * 128 * 2


def test_a_window_layers_prefill_tiles_read_only_their_rows_window():
    """An 8,192-token prompt over a 128-token window (gpt-oss's window layers), 8 query heads on 8 KV heads of
    64: each 128-row tile reads its rows' window, at most 128 + 128 = 256 keys in 2 blocks of 128, not half
    the prompt (the work of a full-attention layer, which the window op was priced as before)."""
    from kinsim.ops.attention import AttentionDims, prefill_attention_op
    from kinsim.ops.kernel_work import kernel_work
    from kinsim.ops.sharding import HeadShard
    from kinsim.workload.spec import DenseAttention, SlidingWindowAttention

    dims = AttentionDims(HeadShard(8, 8, 64, 1))
    window = prefill_attention_op(dims, SlidingWindowAttention(window=128), [PrefillChunk(8192)], model_window=True)
    full = prefill_attention_op(dims, DenseAttention(), [PrefillChunk(8192)])
    assert window.shape["window"] == 128 and full.shape["window"] == 0
    # a 128-row tile's FLOPs per key, and its exponentials' exposed share at head dim 64 against 128:
    # 0.7 x 256 / 4 = 44.8 FLOP-equivalents a row and key, (1 + 44.8 / 64) / (1 + 44.8 / 128)
    per_key = 4.0 * 128 * 64 * (1 + 44.8 / 64) / (1 + 44.8 / 128)
    work = kernel_work(window, 132)
    assert work.items == 64 * 8  # 64 tiles of 128 rows per KV head, 8 heads: no split at this grid
    assert work.item_flops == pytest.approx(per_key * 256)
    assert work.longest_item_flops == pytest.approx(per_key * 2 * 128)
    dense = kernel_work(full, 132)
    assert dense.item_flops == pytest.approx(per_key * (8192 / 2 + 64))
    assert dense.longest_item_flops == pytest.approx(per_key * 8192)
    # priced, a window layer's prefill grows with the prompt, not with its square
    cost = RooflineCost(load_hardware(HARDWARE / "h100.yaml"))
    longer = prefill_attention_op(dims, SlidingWindowAttention(window=128), [PrefillChunk(16384)], model_window=True)
    assert cost.op_cost(longer).time_s < 2.1 * cost.op_cost(window).time_s
    # its compute: the slower of the whole GPU's rate over its FLOPs (exponentials included) and 4 waves of
    # 132 tiles reading 256 keys each at a tile's rate, against 8192 / 2 + 64 keys a tile in the full layer;
    # its HBM bytes are the full layer's (each key read once either way)
    hw = load_hardware(HARDWARE / "h100.yaml")
    curve, peak = hw.calibration.attention_prefill, hw.peak("bf16")
    scale, waves, tile_rate = per_key / (4.0 * 128 * 64), 4, curve.item_compute_share * peak / 132
    for op, keys in ((window, 256), (full, 8192 / 2 + 64)):
        by_hand = max(op.flops * scale / (peak * curve.compute_max), waves * per_key * keys / tile_rate)
        assert cost.op_cost(op).compute_s == pytest.approx(by_hand, rel=1e-12)
    assert window.bytes == full.bytes
