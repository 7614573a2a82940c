"""Architectures of common open models, as raw mappings validated like any model file.

Figures are from each model's Hugging Face ``config.json`` (Qwen/Qwen3-*, meta-llama/Llama-3.1-*,
MiniMaxAI/MiniMax-M2.5, openai/gpt-oss-*, deepseek-ai/DeepSeek-V3 and -R1).
"""

from __future__ import annotations

import difflib
from typing import Any

from kinsim.errors import SpecError


def _qwen3(name: str, layers: int, hidden: int, heads: int, kv_heads: int, intermediate: int,
           tied: bool, moe: dict[str, int] | None = None) -> dict[str, Any]:
    raw = {
        "name": name, "layers": layers, "hidden_size": hidden, "attention_heads": heads,
        "kv_heads": kv_heads, "head_dim": 128, "intermediate_size": intermediate, "vocab_size": 151936,
        "tie_embeddings": tied, "qk_norm": True, "max_position_embeddings": 40960,
    }
    if moe:
        raw["moe"] = moe
    return raw


def _llama31(name: str, layers: int, hidden: int, heads: int, intermediate: int) -> dict[str, Any]:
    return {
        "name": name, "layers": layers, "hidden_size": hidden, "attention_heads": heads, "kv_heads": 8,
        "head_dim": 128, "intermediate_size": intermediate, "vocab_size": 128256, "tie_embeddings": False,
        "max_position_embeddings": 131072,
    }


def _minimax_m2(name: str) -> dict[str, Any]:
    """MiniMax-M2 and M2.5 (the same architecture): 256 routed experts, 8 a token, no shared expert, QK norm.

    Its QK norm is over all heads' queries and keys at once (``qk_norm_type: per_layer``), which under
    tensor parallelism costs an all-reduce a layer (:mod:`kinsim.ops.lower`). Not modelled, as they do not
    change a step's cost by more than an elementwise pass: rotary embedding on 64 of each head's 128
    dimensions, sigmoid routing with a bias, and the three multi-token prediction modules (unused unless a
    serving engine is told to speculate with them)."""
    return {
        "name": name, "layers": 62, "hidden_size": 3072, "attention_heads": 48, "kv_heads": 8, "head_dim": 128,
        "intermediate_size": 0, "vocab_size": 200064, "tie_embeddings": False, "qk_norm": True,
        "qk_norm_type": "per_layer", "max_position_embeddings": 196608,
        "moe": {"experts": 256, "active_experts": 8, "expert_intermediate_size": 1536},
    }


def _gpt_oss(name: str, layers: int, experts: int) -> dict[str, Any]:
    """gpt-oss-120b and -20b: attention with biases over 64 query and 8 KV heads of 64, every other layer
    over a 128-token sliding window, 4 of ``experts`` experts a token, the experts in MXFP4 and the rest in
    bf16, as the checkpoints ship (``quantization_config``: mxfp4, attention, router, embeddings and LM
    head not converted).

    Not modelled: the attention sinks (a learned logit per head, one more key that holds no KV), the
    experts' and the output projection's biases and the router's (vectors, against matrices), the clamped
    SwiGLU (an elementwise pass like SiLU's) and YaRN rotary scaling (the same rotary pass)."""
    return {
        "name": name, "layers": layers, "hidden_size": 2880, "attention_heads": 64, "kv_heads": 8, "head_dim": 64,
        "intermediate_size": 0, "vocab_size": 201088, "tie_embeddings": False, "attention_bias": True,
        "max_position_embeddings": 131072, "sliding_window": 128, "sliding_window_layers": layers // 2,
        "moe": {"experts": experts, "active_experts": 4, "expert_intermediate_size": 2880,
                "expert_weight_dtype": "mxfp4"},
    }


def _deepseek_v3(name: str) -> dict[str, Any]:
    """DeepSeek-V3 and DeepSeek-R1 (the same architecture, ``DeepseekV3ForCausalLM``): 61 layers of multi-head
    latent attention (128 heads, a 1,536-wide compressed query, a 512-wide KV latent and 64 shared rotary
    dimensions), the first 3 with a dense MLP of 18,432 and the other 58 with 256 routed experts of 2,048,
    8 a token, and one shared expert; the checkpoint ships fp8 weights with 128 x 128 block scales
    (``quantization_config``), so the preset's weights are fp8. 671B parameters, 37B active.

    Not modelled: the multi-token-prediction module (used only when an engine speculates with it), the
    grouped top-k routing with a bias (routing is priced by the power law, as other MoE models), and YaRN
    rotary scaling (the same rotary pass)."""
    return {
        "name": name, "layers": 61, "hidden_size": 7168, "attention_heads": 128, "kv_heads": 128, "head_dim": 192,
        "intermediate_size": 18432, "vocab_size": 129280, "tie_embeddings": False, "weight_dtype": "fp8",
        "max_position_embeddings": 163840,
        "mla": {"q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                "v_head_dim": 128},
        "moe": {"experts": 256, "active_experts": 8, "expert_intermediate_size": 2048, "shared_experts": 1,
                "dense_layers": 3, "routing_skew": 1.01},
    }


PRESETS: dict[str, dict[str, Any]] = {
    "Qwen3-0.6B": _qwen3("Qwen3-0.6B", 28, 1024, 16, 8, 3072, tied=True),
    "Qwen3-1.7B": _qwen3("Qwen3-1.7B", 28, 2048, 16, 8, 6144, tied=True),
    "Qwen3-4B": _qwen3("Qwen3-4B", 36, 2560, 32, 8, 9728, tied=True),
    "Qwen3-8B": _qwen3("Qwen3-8B", 36, 4096, 32, 8, 12288, tied=False),
    "Qwen3-14B": _qwen3("Qwen3-14B", 40, 5120, 40, 8, 17408, tied=False),
    "Qwen3-32B": _qwen3("Qwen3-32B", 64, 5120, 64, 8, 25600, tied=False),
    "Qwen3-30B-A3B": _qwen3("Qwen3-30B-A3B", 48, 2048, 32, 4, 0, tied=False,
                            moe={"experts": 128, "active_experts": 8, "expert_intermediate_size": 768}),
    "Qwen3-235B-A22B": _qwen3("Qwen3-235B-A22B", 94, 4096, 64, 4, 0, tied=False,
                              moe={"experts": 128, "active_experts": 8, "expert_intermediate_size": 1536}),
    "Llama-3.1-8B": _llama31("Llama-3.1-8B", 32, 4096, 32, 14336),
    "Llama-3.1-70B": _llama31("Llama-3.1-70B", 80, 8192, 64, 28672),
    "MiniMax-M2.5": _minimax_m2("MiniMax-M2.5"),
    "gpt-oss-20b": _gpt_oss("gpt-oss-20b", 24, 32),
    "gpt-oss-120b": _gpt_oss("gpt-oss-120b", 36, 128),
    "DeepSeek-V3": _deepseek_v3("DeepSeek-V3"),
    "DeepSeek-R1": _deepseek_v3("DeepSeek-R1"),
}


def preset_raw(name: str, *, path: str = "model.preset", file: str | None = None) -> dict[str, Any]:
    """The raw mapping of preset ``name`` (a copy), or a :class:`SpecError` suggesting near names."""
    if not isinstance(name, str):
        raise SpecError("expected a preset name", path=path, value=name, file=file,
                        hint="known presets: " + ", ".join(PRESETS))
    if name in PRESETS:
        return dict(PRESETS[name])
    lowered = {key.lower(): key for key in PRESETS}
    if name.lower() in lowered:
        return dict(PRESETS[lowered[name.lower()]])
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=3, cutoff=0.5)
    known = "known presets: " + ", ".join(PRESETS)
    hint = f"did you mean {' or '.join(lowered[c] for c in close)}? {known}" if close else known
    raise SpecError("unknown model preset", path=path, value=name, file=file, hint=hint)
