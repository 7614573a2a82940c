"""Derived figures of each kind of input, as plain dicts of SI numbers (what ``kinsim info`` shows).

Keys name their unit where it is not obvious: ``*_bytes`` in bytes, ``*_bandwidth`` in B/s,
``*_flop_per_s`` in FLOP/s, ``*_s`` in seconds, ``*_w`` in watts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kinsim.hardware import HardwareSpec
from kinsim.hardware.topology import gpu_to_gpu_bandwidth
from kinsim.model import ModelSpec
from kinsim.schema import to_raw
from kinsim.workload import Request, WorkloadSpec

KV_REFERENCE_TOKENS = 32_768


def describe_hardware(hw: HardwareSpec) -> dict[str, Any]:
    """Figures of a hardware spec: per GPU, per node and for the whole system."""
    gpu, node = hw.gpu, hw.node
    return {
        "kind": "hardware",
        "name": hw.name,
        "gpu_name": gpu.name,
        "peak_flop_per_s": dict(gpu.compute.peak),
        "ridge_flop_per_byte": hw.ridge_flop_per_byte,
        "hbm_bytes_per_gpu": gpu.memory.capacity,
        "hbm_bandwidth_per_gpu": gpu.memory.bandwidth,
        "hbm_channels": gpu.memory.channels,
        "hbm_channel_bandwidth": gpu.memory.channel_bandwidth,
        "l2_cache_bytes": gpu.l2_cache,
        "launch_overhead_s": gpu.launch_overhead,
        "gpus_per_node": node.gpus,
        "nodes": hw.cluster.nodes if hw.cluster else 1,
        "total_gpus": hw.total_gpus,
        "gpu_link_bandwidth": node.gpu_link.bandwidth,
        "gpu_to_gpu_bandwidth": gpu_to_gpu_bandwidth(hw),
        "host_link_bandwidth": node.host_link.bandwidth,
        "host_link_dma_bandwidth": node.host_link.dma_bandwidth,
        "host_link_shared_by": node.host_link.shared_by,
        "network_bandwidth_per_gpu": hw.cluster.network.bandwidth_per_gpu if hw.cluster else None,
        "total_hbm_bytes": gpu.memory.capacity * hw.total_gpus,
        "total_hbm_bandwidth": gpu.memory.bandwidth * hw.total_gpus,
        "tdp_w": gpu.power.tdp,
        "spec": to_raw(hw),
    }


def describe_model(model: ModelSpec) -> dict[str, Any]:
    """Figures of a model: parameter counts, weight bytes, KV bytes per token (of the full-attention layers)
    and of one sequence at 32k tokens (with its sliding-window layers' windows)."""
    return {
        "kind": "model",
        "name": model.name,
        "architecture": "moe" if model.moe else "dense",
        "params_total": model.params_total,
        "params_active": model.params_active,
        "weight_bytes": model.weight_bytes,
        "kv_bytes_per_token": model.kv_bytes_per_token,
        "kv_bytes_at_32k": model.kv_bytes_per_token * KV_REFERENCE_TOKENS + model.window_kv_bytes,
        "gqa_ratio": model.gqa_ratio,
        "weight_dtype": model.weight_dtype,
        "expert_weight_dtype": model.expert_weight_dtype if model.moe else None,
        "kv_dtype": model.kv_dtype,
        "spec": to_raw(model),
    }


def describe_requests(requests: list[Request]) -> dict[str, Any]:
    """Counts and token totals of a list of requests."""
    prompts = np.array([r.prompt_tokens for r in requests], dtype=np.int64)
    outputs = np.array([r.output_tokens for r in requests], dtype=np.int64)
    groups = {r.group_id for r in requests}
    unique_prompt_tokens = sum({r.group_id: r.prompt_tokens for r in requests}.values())
    return {
        "requests": len(requests),
        "groups": len(groups),
        "prompt_tokens_total": int(prompts.sum()),
        "prompt_tokens_unique": int(unique_prompt_tokens),
        "output_tokens_total": int(outputs.sum()),
        "output_tokens_mean": float(outputs.mean()),
        "output_tokens_p50": float(np.percentile(outputs, 50)),
        "output_tokens_p99": float(np.percentile(outputs, 99)),
        "output_tokens_max": int(outputs.max()),
        "last_arrival_s": max(r.arrival_s for r in requests),
    }


def describe_workload(workload: WorkloadSpec, requests: list[Request]) -> dict[str, Any]:
    """Figures of a workload: its model, deployment, attention policy and requests."""
    return {
        "kind": "workload",
        "name": workload.name,
        "model": describe_model(workload.model),
        "gpus": workload.gpus,
        "attention_policy": workload.attention.KIND,
        "requests_kind": workload.requests.KIND,
        **describe_requests(requests),
        "spec": to_raw(workload),
    }

