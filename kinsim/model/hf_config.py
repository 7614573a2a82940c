"""Reading a Hugging Face ``config.json`` into the raw mapping of a :class:`~kinsim.model.ModelSpec`.

Understood: Llama, Mistral, Qwen2/Qwen3 (dense and MoE), Mixtral, MiniMax-M2, gpt-oss and DeepSeek-V2/V3
keys:

* ``kv_lora_rank`` (DeepSeek) is multi-head latent attention, with ``q_lora_rank``, ``qk_nope_head_dim``,
  ``qk_rope_head_dim`` and ``v_head_dim``; its ``head_dim`` is ``qk_nope + qk_rope``;
* ``first_k_dense_replace`` (DeepSeek): that many first layers keep the dense MLP of ``intermediate_size``;

* ``layer_types`` (gpt-oss and recent transformers): the ``sliding_attention`` entries are the model's
  ``sliding_window_layers``, over ``sliding_window`` tokens (where some layers attend over the whole
  context: a model whose every layer slides is left to ``attention: {policy: sliding_window}``);
* ``quantization_config``: ``quant_method: fp8`` stores the weights in fp8 (the KV cache stays in
  ``torch_dtype``); ``mxfp4`` stores the routed experts in MXFP4 (gpt-oss; everything else unconverted);
* ``use_qk_norm`` (MiniMax) as well as the Qwen3-style model types turn on QK norm; ``qk_norm_type:
  per_layer`` (MiniMax-M2) normalizes over all heads at once.

Architectural details kinsim does not model (rope scaling, a sliding window without ``layer_types``,
multi-token-prediction layers) are ignored; the counts then describe a uniform stack of the configured
layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.reading import read_json

_TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
_QK_NORM_TYPES = {"qwen3", "qwen3_moe", "olmo2", "gemma3"}
_QKV_BIAS_TYPES = {"qwen2", "qwen2_moe"}


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """Read ``config.json`` at ``path`` (or a folder holding one) into a raw model mapping."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    file = str(path)
    config = read_json(path)
    if not isinstance(config, dict):
        raise SpecError("expected a JSON object at the top level", value=config, file=file)
    return hf_config_to_raw(config, default_name=path.parent.name or path.stem, file=file)


def hf_config_to_raw(config: dict[str, Any], *, default_name: str, file: str | None = None) -> dict[str, Any]:
    """Map the keys of a Hugging Face config dict to kinsim's model keys."""

    def need(key: str) -> Any:
        if key not in config:
            raise SpecError("missing required key", path=key, file=file,
                            hint="a decoder-only transformer config.json has it")
        return config[key]

    model_type = str(config.get("model_type", ""))
    heads = need("num_attention_heads")
    hidden = need("hidden_size")
    raw: dict[str, Any] = {
        "name": str(config.get("_name_or_path") or default_name),
        "layers": need("num_hidden_layers"),
        "hidden_size": hidden,
        "attention_heads": heads,
        "kv_heads": config.get("num_key_value_heads") or heads,
        "vocab_size": need("vocab_size"),
        "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
        "qk_norm": model_type in _QK_NORM_TYPES or bool(config.get("use_qk_norm", False)),
        "qk_norm_type": "per_layer" if config.get("qk_norm_type") == "per_layer" else "per_head",
        "attention_bias": bool(config.get("attention_bias", model_type in _QKV_BIAS_TYPES)),
    }
    head_dim = config.get("head_dim")
    if head_dim is None and isinstance(hidden, int) and isinstance(heads, int) and heads:
        head_dim = hidden // heads
    raw["head_dim"] = head_dim
    if config.get("kv_lora_rank"):
        raw["mla"] = {key: config.get(key) or 0 for key in
                      ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")}
        raw["head_dim"] = raw["mla"]["qk_nope_head_dim"] + raw["mla"]["qk_rope_head_dim"]
        raw["kv_heads"] = heads
    if "max_position_embeddings" in config:
        raw["max_position_embeddings"] = config["max_position_embeddings"]
    dtype = config.get("torch_dtype") or config.get("dtype")
    if dtype in _TORCH_DTYPES:
        raw["weight_dtype"] = raw["kv_dtype"] = _TORCH_DTYPES[dtype]
    quant = config.get("quantization_config")
    method = str(quant.get("quant_method", "")) if isinstance(quant, dict) else ""
    if method == "fp8":
        raw["weight_dtype"] = "fp8"
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and 0 < layer_types.count("sliding_attention") < len(layer_types):
        raw["sliding_window_layers"] = layer_types.count("sliding_attention")
        raw["sliding_window"] = need("sliding_window")

    experts = config.get("num_experts") or config.get("n_routed_experts") or config.get("num_local_experts")
    if experts:
        moe: dict[str, Any] = {
            "experts": experts,
            "active_experts": config.get("num_experts_per_tok") or need("experts_per_token"),
            "expert_intermediate_size": config.get("moe_intermediate_size") or need("intermediate_size"),
        }
        shared_width = config.get("shared_expert_intermediate_size")
        if shared_width:
            moe["shared_experts"] = 1
            moe["shared_expert_intermediate_size"] = shared_width
        elif config.get("n_shared_experts"):
            moe["shared_experts"] = config["n_shared_experts"]
        if method == "mxfp4":
            moe["expert_weight_dtype"] = "mxfp4"
        dense_layers = config.get("first_k_dense_replace") or 0
        if dense_layers:
            moe["dense_layers"] = dense_layers
        raw["moe"] = moe
        raw["intermediate_size"] = need("intermediate_size") if dense_layers else 0
    else:
        raw["intermediate_size"] = need("intermediate_size")
    return raw
