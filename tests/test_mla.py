"""Multi-head latent attention (DeepSeek-V3 and R1): sizes, the two forms of attention, the lowering, the
config reader, the silicon rows that run it, and all-reduces over more than one node (DeepSeek's TP16)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinsim import load_hardware
from kinsim.calibration.silicon import expressible, nodes_needed, workload_of
from kinsim.cost.registry import make_cost_model
from kinsim.engine.kv import kv_layout
from kinsim.errors import SpecError
from kinsim.model import load_model
from kinsim.model.presets import preset_raw
from kinsim.ops.attention import PrefillChunk, decode_attention_ops, model_attention_dims, prefill_attention_op
from kinsim.ops.layers import quantize_op
from kinsim.ops.lower import StepBatch, decode_batch, lower_step
from kinsim.schema import build, with_overrides
from kinsim.workload.load import workload_from_raw
from kinsim.workload.spec import DenseAttention, DeploymentSpec

from .conftest import HARDWARE, ROOT

PRESET = preset_raw("DeepSeek-V3")
H, HEADS, LAYERS = 7168, 128, 61
Q_LORA, KV_LORA, NOPE, ROPE, V = 1536, 512, 128, 64, 128


def test_deepseek_v3_total_and_active_parameters_by_hand():
    """deepseek-ai/DeepSeek-V3's config.json, counted by hand: the model card's 671B total and 37B active
    (its 685B on Hugging Face add the 14B multi-token-prediction module, which kinsim leaves out)."""
    m = load_model("DeepSeek-V3")
    attention = (H * Q_LORA + Q_LORA + Q_LORA * HEADS * (NOPE + ROPE)  # query down, norm, up
                 + H * (KV_LORA + ROPE) + KV_LORA + KV_LORA * HEADS * (NOPE + V)  # KV down, norm, up
                 + HEADS * V * H)  # O
    dense_mlp = 3 * H * 18432
    expert = 3 * H * 2048
    moe_all = H * 256 + 256 * expert + expert  # router, routed experts, one shared expert
    moe_active = H * 256 + 8 * expert + expert
    embeddings = 2 * 129_280 * H + H
    norms = 2 * H
    total = LAYERS * (attention + norms) + 3 * dense_mlp + 58 * moe_all + embeddings
    active = LAYERS * (attention + norms) + 3 * dense_mlp + 58 * moe_active + embeddings
    assert m.params_total == total
    assert m.params_active == active
    assert m.params_total == pytest.approx(671e9, rel=0.001)
    assert m.params_active == pytest.approx(37e9, rel=0.02)
    assert (m.moe_layers, m.dense_mlp_layers) == (58, 3)
    assert m.weight_dtype == "fp8" and m.weight_bytes == total  # one byte a weight
    # a token caches its 512-wide latent and 64 rotary dimensions per layer, once
    assert m.kv_bytes_per_token == (KV_LORA + ROPE) * LAYERS * 2


def test_mla_decode_attends_over_the_latent_and_prefill_over_heads():
    m = load_model({"preset": "DeepSeek-R1", "kv_dtype": "fp8"})
    dims = model_attention_dims(m, 16)
    # decode, absorbed: 8 query heads of this GPU over one latent that is key (576) and value (512)
    assert (dims.shard.q_heads, dims.shard.kv_heads, dims.shard.head_dim) == (8, 1, 576)
    assert dims.kv_bytes_per_token == 576 * 1  # fp8, K and V one tensor, replicated on every GPU
    assert dims.flops_per_key == 2 * 8 * (576 + 512)
    context = np.array([99.0, 199.0])
    op = decode_attention_ops(dims, DenseAttention(), context)[0]
    assert op.flops == 2 * 8 * (576 + 512) * (100 + 200)
    assert op.bytes_read == 576 * (100 + 200) + 2 * 8 * 576 * 2  # latents, and the bf16 queries
    # prefill, unabsorbed: multi-head attention with 192-wide queries and keys and 128-wide values
    pre = dims.prefill_form
    assert (pre.shard.q_heads, pre.shard.kv_heads, pre.shard.head_dim, pre.value_dim) == (8, 8, 192, 128)
    chunk = PrefillChunk(tokens=256)
    op = prefill_attention_op(dims, DenseAttention(), [chunk])
    assert op.flops == 2 * 8 * (192 + 128) * (256 * 257 // 2)
    assert op.shape["head_dim"] == 192 and op.shape["kv_bytes_per_element"] == 2  # up-projected, bf16
    # grouped-query attention keeps its numbers: 4 hq d a key, 2 hkv d per token
    q = model_attention_dims(load_model("Qwen3-8B"), 1)
    assert q.flops_per_key == 4 * 32 * 128 and q.kv_bytes_per_token == 2 * 8 * 128 * 2
    assert q.prefill_form is q


def test_a_deepseek_step_runs_its_dense_and_moe_layers_and_latent_projections():
    m = load_model({"preset": "DeepSeek-V3", "kv_dtype": "fp8"})
    dep = build(DeploymentSpec, {"tensor_parallel": 16})
    step = lower_step(m, dep, DenseAttention(), decode_batch([1000.0] * 4))
    by_name = {op.name: op for op in step.ops}
    assert by_name["mlp_gate_up"].count == 3 and by_name["moe_experts"].count == 58
    assert by_name["allreduce_mlp"].count == 3 and by_name["allreduce_moe"].count == 58
    assert by_name["attention_decode"].count == 61
    # the joint down-projection is replicated: every GPU computes h -> q_lora + kv_lora + rope whole
    assert by_name["qkv_a_proj"].shape == {"m": 4, "n": Q_LORA + KV_LORA + ROPE, "k": H}
    assert by_name["q_b_proj"].shape == {"m": 4, "n": 8 * (NOPE + ROPE), "k": Q_LORA}
    # the absorbed up-projections: per head nope -> kv_lora before attention, kv_lora -> v after
    assert by_name["mla_k_absorb"].flops == 2 * 4 * 8 * KV_LORA * NOPE
    assert by_name["mla_v_absorb"].flops == 2 * 4 * 8 * V * KV_LORA
    assert by_name["o_proj"].shape == {"m": 4, "n": H, "k": 8 * V}
    assert "qkv_proj" not in by_name
    # prefill's up-projection of keys and values costs the absorbed GEMMs' FLOPs per token
    up_projection = 2 * KV_LORA * 8 * (NOPE + V)
    assert (by_name["mla_k_absorb"].flops + by_name["mla_v_absorb"].flops) / 4 == up_projection
    prefill = lower_step(m, dep, DenseAttention(), StepBatch(prefill=(PrefillChunk(100),)))
    assert {op.name for op in prefill.ops} >= {"attention_prefill", "mla_k_absorb", "mla_v_absorb"}


def test_the_latent_cache_is_replicated_on_every_gpu_of_a_replica():
    m = load_model({"preset": "DeepSeek-R1", "kv_dtype": "fp8"})
    hw = with_overrides(load_hardware(HARDWARE / "h100.yaml"), {"cluster.nodes": 2})
    dep = build(DeploymentSpec, {"tensor_parallel": 16})
    layout = kv_layout(m, dep, DenseAttention(), hw)
    assert layout.block_bytes == 576 * LAYERS * dep.kv_block_size  # a GPU's block: the whole latent
    # 671 GB of fp8 weights over 16 GPUs leave 0.9 x 79.2 GiB visible - 41.9 GB - 2.1 GiB of buffers outside
    # PyTorch (kinsim.engine.memory_budget) - the activations' peak (under 2 GB) for KV
    free = 0.9 * 0.99 * 80 * 2**30 - m.weight_bytes / 16 - 2.1 * 2**30
    assert layout.total_blocks * layout.block_bytes < free
    assert layout.total_blocks * layout.block_bytes > free - 2e9


def test_mla_keys_are_checked():
    with pytest.raises(SpecError, match="qk_nope_head_dim"):
        load_model({"preset": "DeepSeek-V3", "head_dim": 128})
    with pytest.raises(SpecError) as error:
        load_model({"preset": "DeepSeek-V3", "kv_heads": 1})
    assert error.value.path.endswith("kv_heads")
    with pytest.raises(SpecError) as error:
        load_model({"preset": "DeepSeek-V3", "moe": {"experts": 256, "active_experts": 8,
                                                     "expert_intermediate_size": 2048, "dense_layers": 61}})
    assert "dense_layers" in error.value.path


def test_hf_config_of_deepseek_v3_matches_its_preset(tmp_path):
    """The keys of deepseek-ai/DeepSeek-V3's config.json that kinsim reads."""
    config = {
        "model_type": "deepseek_v3", "num_hidden_layers": 61, "hidden_size": 7168, "num_attention_heads": 128,
        "num_key_value_heads": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048,
        "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
        "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
        "v_head_dim": 128, "vocab_size": 129280, "tie_word_embeddings": False, "max_position_embeddings": 163840,
        "torch_dtype": "bfloat16", "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    m, p = load_model(path), load_model("DeepSeek-V3")
    assert (m.params_total, m.params_active, m.kv_bytes_per_token, m.weight_bytes) == (
        p.params_total, p.params_active, p.kv_bytes_per_token, p.weight_bytes)
    assert m.mla == p.mla and m.head_dim == 192 and m.moe.dense_layers == 3


SGLANG_DS = {"id": "2026_03_25_deepseek_r1_h100_sxm_sglang_fp8_disagg_1024x1024_c16_tp16_0_ep1_0_1",
             "mode": "disagg", "backend": "sglang", "model_path": "deepseek-ai/DeepSeek-R1",
             "gemm_quant_mode": "fp8", "moe_quant_mode": "fp8_block", "isl": 1024, "osl": 64,
             "prefill_batch_size": float("nan"), "prefill_num_workers": float("nan"), "prefill_tp_size": 16,
             "prefill_attention_dp_size": 1, "prefill_moe_tp_size": 16, "prefill_moe_ep_size": 1,
             "decode_batch_size": float("nan"), "decode_num_workers": float("nan"), "decode_tp_size": 16,
             "decode_attention_dp_size": 1, "decode_moe_tp_size": 16, "decode_moe_ep_size": 1,
             "silicon_ttft_ms": 368.0, "silicon_tpot_ms": 14.8}


def test_a_deepseek_row_without_worker_counts_takes_one_worker_per_role_at_its_recorded_concurrency():
    row, why = expressible(SGLANG_DS)
    assert why == "" and row.model == "DeepSeek-R1" and row.weight_dtype == "fp8"
    assert (row.prefill.workers, row.prefill.tp, row.decode.workers, row.decode.tp) == (1, 16, 1, 16)
    assert row.concurrency == 16 == row.decode.batch_size  # c16 in its id
    assert nodes_needed(row) == 4  # 32 GPUs
    workload = workload_from_raw(workload_of(row), ROOT)
    assert workload.model.mla is not None and workload.model.kv_dtype == "fp8"
    # without a recorded concurrency nothing is guessed
    unrecorded = {**SGLANG_DS, "id": "deepseek_r1_disagg_1024x1024"}
    assert expressible(unrecorded) == (None, "missing figures")
    # a row that gives some of the counts keeps its own rule: all four must be there
    partial = {**SGLANG_DS, "decode_num_workers": 2}
    assert expressible(partial) == (None, "missing figures")


def test_a_deepseek_decode_step_over_two_nodes_is_bounded_by_its_reads():
    """A decode step of 16 sequences on TP16 over two H100 nodes takes at least its HBM reads (the weights
    other than the routed experts and every GPU's copy of the latents) at full bandwidth, plus 122
    all-reduces at the network's latency twice each; and the engine's pricing of it (decode attention in
    its direct form) equals its ops priced one by one."""
    from kinsim.engine.pricer import StepPricer

    m = load_model({"preset": "DeepSeek-R1", "kv_dtype": "fp8"})
    hw = with_overrides(load_hardware(HARDWARE / "h100.yaml"), {"cluster.nodes": 2})
    dep = build(DeploymentSpec, {"tensor_parallel": 16})
    pricer = StepPricer(m, dep, DenseAttention(), make_cost_model("roofline", hw))
    step_s = float(pricer.step(decode_batch([2000.0] * 16)).time_s[0])
    non_expert = (m.weight_bytes - 58 * 256 * m.expert_params) / 16
    latents = 16 * 2001 * 576 * LAYERS
    floor = (non_expert + latents) / hw.gpu.memory.bandwidth + 122 * 2 * hw.cluster.network.latency
    assert step_s > floor
    cost = pricer.cost_model
    one_by_one = sum(op.count * float(cost.op_cost(op).time_s) for op in
                     lower_step(m, dep, DenseAttention(), decode_batch([2000.0] * 16)).ops)
    assert step_s == pytest.approx(one_by_one + pricer.host_s(16), rel=1e-9)  # and the engine's host time
    assert pricer._direct_of(16) is not None  # the direct form ran


def test_mla_kernel_tables_are_priced_row_by_row_as_a_deepseek_layer(tmp_path):
    """Two made-up rows in aiconfigurator's MLA layout: a generation row is one fp8 decode kernel over the
    latent (plus the query's quantization), a context row a bf16 prefill kernel of 192/128-wide heads."""
    import pandas as pd

    from kinsim.calibration.mla_tables import score_system

    folder = tmp_path / "h100_sxm" / "mla" / "sglang" / "0.5.14"
    folder.mkdir(parents=True)
    pd.DataFrame({"num_heads": [16], "batch_size": [4], "kv_cache_dtype": ["fp8"], "step": [1023],
                  "isl": [1], "tp_size": [8], "latency": [0.05]}).to_parquet(folder / "generation_mla_perf.parquet")
    pd.DataFrame({"num_heads": [8], "batch_size": [2], "kv_cache_dtype": ["bfloat16"], "step": [0],
                  "isl": [512], "tp_size": [16], "latency": [0.2]}).to_parquet(folder / "context_mla_perf.parquet")
    hw = load_hardware(HARDWARE / "h100.yaml")
    cost = make_cost_model("roofline", hw)
    decode, prefill = score_system(tmp_path, "h100_sxm", cost)
    assert (decode.phase, prefill.phase) == ("decode", "prefill")
    m = load_model("DeepSeek-V3")
    # decode: 16 heads over 4 x 1,024 latents of 576 fp8 bytes; queries 16 x 576 quantized per sequence
    dims = model_attention_dims(build(type(m), {**PRESET, "attention_heads": 16,
                                                "kv_heads": 16, "kv_dtype": "fp8"}), 1)
    ops = decode_attention_ops(dims, DenseAttention(), np.full(4, 1023.0))
    assert ops[0].flops == 2 * 16 * (576 + 512) * 4 * 1024
    quant = cost.op_cost(quantize_op("q", 4 * 16 * 576, op_class="attention")).time_s
    assert decode.frame["predicted_s"].iloc[0] == pytest.approx(float(cost.op_cost(ops[0]).time_s) + quant)
    assert decode.frame["measured_s"].iloc[0] == pytest.approx(50e-6)
    # prefill: 8 heads, 2 prompts of 512, causal: 512 x 513 / 2 keys each
    op = prefill.frame["predicted_s"].iloc[0]
    pre = prefill_attention_op(model_attention_dims(build(type(m), {**PRESET, "attention_heads": 8, "kv_heads": 8}),
                                                    1), DenseAttention(), [PrefillChunk(512)] * 2)
    assert pre.flops == 2 * 8 * (192 + 128) * 2 * (512 * 513 // 2)
    assert op == pytest.approx(float(cost.op_cost(pre).time_s))
    assert prefill.frame["error"].iloc[0] == pytest.approx(op / 200e-6 - 1)
