"""Data-parallel attention (``deployment.attention_data_parallel``): a replica's GPUs in groups that each
attend for their own share of the sequences while the experts stay split over all of them. Numbers by hand
from the module docstrings of kinsim.ops.lower and kinsim.engine.kv."""

from __future__ import annotations

import numpy as np
import pytest

from kinsim import load_hardware, simulate
from kinsim.cost.roofline import RooflineCost
from kinsim.engine.kv import kv_layout, weight_bytes_per_gpu
from kinsim.engine.pricer import StepPricer
from kinsim.errors import SpecError
from kinsim.model import load_model
from kinsim.ops.lower import decode_batch, lower_step
from kinsim.schema import build
from kinsim.workload.load import workload_from_raw
from kinsim.workload.spec import DenseAttention, DeploymentSpec

from .conftest import HARDWARE, ROOT
from .test_engine import assert_same_figures, figures

MODEL = {"preset": "Qwen3-30B-A3B"}  # 32 query heads, 4 KV heads of 128, 128 experts of 768, 8 a token


def deployment(ranks: int, tp: int = 8, ep: int = 8) -> DeploymentSpec:
    return build(DeploymentSpec, {"tensor_parallel": tp, "attention_data_parallel": ranks, "expert_parallel": ep})


def test_a_group_attends_for_its_share_with_its_heads_and_the_experts_see_every_token():
    m = load_model(MODEL)
    context = np.array([999.0] * 16)
    one = {op.name: op for op in lower_step(m, deployment(1), DenseAttention(), decode_batch(context)).ops}
    dp = {op.name: op for op in lower_step(m, deployment(4), DenseAttention(), decode_batch(context)).ops}
    # 4 groups of 2 GPUs: 16 query heads and 2 KV heads a GPU, 4 of the 16 sequences a group
    att = dp["attention_decode"]
    assert (att.shape["q_heads"], att.shape["kv_heads"], att.shape["batch"]) == (16, 2, 4)
    assert att.flops == 4 * 16 * 128 * 4 * 1000  # 4 hq d per key, 4 sequences of 1,000 keys
    assert att.bytes_read == 2 * 2 * 128 * 2 * 4 * 1000 + 4 * 16 * 128 * 2  # K and V of 2 heads, bf16; queries
    # without groups: 4 query heads, 1 KV head (of 4 over 8 GPUs, replicated), all 16 sequences
    assert one["attention_decode"].flops == 4 * 4 * 128 * 16 * 1000
    # the projections run on a group's 4 tokens with the group's heads: (16 + 2 x 2) x 128 outputs of 2,048
    assert dp["qkv_proj"].shape == {"m": 4.0, "n": (16 + 2 * 2) * 128, "k": 2048}
    assert dp["allreduce_attention"].collective.gpus == 2 and dp["allreduce_attention"].collective.bytes == 4 * 2048 * 2
    # the experts: all 16 tokens over the 8 GPUs, as without groups, and their exchange priced as an all-reduce
    assert dp["moe_experts"].shape == one["moe_experts"].shape and dp["moe_experts"].flops == one["moe_experts"].flops
    assert dp["allreduce_moe"].collective.gpus == 8 and dp["allreduce_moe"].collective.bytes == 16 * 2048 * 2
    # the LM head: a group's 4 rows over its 2 GPUs' slices of the vocabulary
    assert dp["lm_head"].shape == {"m": 4.0, "n": 151_936 / 2, "k": 2048}


def test_the_groups_hold_their_own_blocks_and_their_own_copy_of_the_weights():
    m = load_model(MODEL)
    hw = load_hardware(HARDWARE / "h100.yaml")
    one, dp = deployment(1), deployment(4)
    experts = 48 * 128 * 3 * 2048 * 768 * 2  # bytes, bf16
    assert weight_bytes_per_gpu(m, one) == m.weight_bytes / 8
    assert weight_bytes_per_gpu(m, dp) == pytest.approx(experts / 8 + (m.weight_bytes - experts) / 2)
    a, b = kv_layout(m, one, DenseAttention(), hw), kv_layout(m, dp, DenseAttention(), hw)
    # a block on a GPU: 1 KV head of 4 without groups (replicated), 2 of a group's
    assert a.block_bytes == 2 * 1 * 128 * 2 * 48 * 16 and b.block_bytes == 2 * a.block_bytes
    assert (a.gpus, b.gpus) == (8, 2)
    # a group's GPU has less room (more weights) for blocks twice the size, but the 4 groups pool them
    # vLLM's budget less the weights and 2.1 GiB of buffers outside PyTorch (tensor parallel); the
    # activations' peak (under 2 GB) is what the bounds leave open
    free = 0.9 * 0.99 * hw.gpu.memory.capacity - weight_bytes_per_gpu(m, dp) - 2.1 * 2**30
    assert b.total_blocks % 4 == 0 and b.total_blocks < 4 * free / b.block_bytes
    assert b.total_blocks > 4 * (free - 2e9) / b.block_bytes


def test_fast_forward_equals_exact_steps_with_attention_groups():
    raw = {"name": "dp", "model": MODEL,
           "deployment": {"tensor_parallel": 8, "attention_data_parallel": 4, "expert_parallel": 8},
           "requests": {"kind": "best_of_n", "problems": 3, "samples": 4, "prompt_tokens": 700,
                        "output_tokens": {"dist": "uniform", "low": 100, "high": 400}, "max_output_tokens": 400}}
    w = workload_from_raw(raw, ROOT)
    hw = load_hardware(HARDWARE / "h100.yaml")
    assert StepPricer(w.model, w.deployment, w.attention, RooflineCost(hw))._direct_of(4) is None  # generic path
    fast, exact = simulate(w, hw), simulate(w, hw, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    assert fast["engine.segments"] < exact["engine.segments"]
    # the groups' split changes the figures: the same deployment without them is another run
    other = simulate(workload_from_raw({**raw, "deployment": {**raw["deployment"], "attention_data_parallel": 1}},
                                       ROOT), hw)
    assert other["latency.request.tpot.mean"] != fast["latency.request.tpot.mean"]


def test_attention_groups_are_checked():
    base = {"name": "dp", "model": MODEL, "requests": {"kind": "long_cot", "problems": 1, "prompt_tokens": 10,
                                                        "output_tokens": 10, "max_output_tokens": 10}}
    with pytest.raises(SpecError) as error:
        workload_from_raw({**base, "deployment": {"tensor_parallel": 8, "attention_data_parallel": 3}}, ROOT)
    assert error.value.path.endswith("attention_data_parallel") and "divide tensor_parallel" in str(error.value)
    with pytest.raises(SpecError) as error:
        workload_from_raw({**base, "model": "Qwen3-8B", "deployment": {"tensor_parallel": 4,
                                                                       "attention_data_parallel": 2}}, ROOT)
    assert "MoE" in str(error.value)
    # 32 heads over 8 / 8 = 1 GPU per group is fine; 4 KV heads over 8 / 1 GPUs are replicated as before
    workload_from_raw({**base, "deployment": {"tensor_parallel": 8, "attention_data_parallel": 8}}, ROOT)
    with pytest.raises(SpecError) as error:
        workload_from_raw({**base, "deployment": {"tensor_parallel": 8, "attention_data_parallel": 2,
                                                  "disaggregation": {"prefill": {"replicas": 1},
                                                                     "decode": {"replicas": 1}}}}, ROOT)
    assert error.value.path.endswith("attention_data_parallel")
