"""Model sizes, checked against arithmetic written out here (figures from each model's config.json)."""

import json

import pytest

from kinsim.errors import SpecError
from kinsim.model import PRESETS, load_model
from kinsim.schema import with_overrides


def dense_params(layers, h, heads, kv, d, inter, vocab, tied, qk_norm=False):
    attention = h * heads * d + 2 * h * kv * d + heads * d * h + (2 * d if qk_norm else 0)
    per_layer = attention + 3 * h * inter + 2 * h
    return layers * per_layer + vocab * h * (1 if tied else 2) + h


def test_qwen3_8b_by_hand():
    m = load_model("Qwen3-8B")
    # per layer: q 4096*4096 + k,v 2*4096*1024 + o 4096*4096 + mlp 3*4096*12288 + norms 2*4096 + qk-norm 2*128
    per_layer = 16_777_216 + 8_388_608 + 16_777_216 + 150_994_944 + 8_192 + 256
    expected = 36 * per_layer + 2 * 151_936 * 4096 + 4096
    assert m.params_total == expected == 8_190_735_360
    assert m.params_active == m.params_total
    assert m.kv_bytes_per_token == 2 * 8 * 128 * 36 * 2 == 147_456
    assert m.weight_bytes == 2 * expected


def test_qwen3_30b_a3b_total_and_active():
    m = load_model("Qwen3-30B-A3B")
    h, layers = 2048, 48
    attention = h * 4096 + 2 * h * 512 + 4096 * h + 2 * 128
    expert = 3 * h * 768
    router = h * 128
    embeddings = 2 * 151_936 * h + h
    total = layers * (attention + router + 128 * expert + 2 * h) + embeddings
    active = layers * (attention + router + 8 * expert + 2 * h) + embeddings
    assert m.params_total == total
    assert m.params_active == active
    assert m.params_total == pytest.approx(30.5e9, rel=0.01)
    assert m.params_active == pytest.approx(3.3e9, rel=0.03)
    assert m.kv_bytes_per_token == 2 * 4 * 128 * 48 * 2 == 98_304


def test_minimax_m25_total_and_active():
    """MiniMax-M2.5's config.json (MiniMaxAI/MiniMax-M2.5): the model card's 229B total, about 10B active
    (11.0B here: the card leaves out the embeddings and the LM head, 1.2B)."""
    m = load_model("MiniMax-M2.5")
    h, layers = 3072, 62
    # its QK norm is over all heads at once: one weight per dimension of the 48 query and 8 key heads
    # (q_norm.weight [6144], k_norm.weight [1024] in the checkpoint)
    attention = h * 48 * 128 + 2 * h * 8 * 128 + 48 * 128 * h + (48 + 8) * 128
    expert = 3 * h * 1536
    router = h * 256
    embeddings = 2 * 200_064 * h + h
    total = layers * (attention + router + 256 * expert + 2 * h) + embeddings
    active = layers * (attention + router + 8 * expert + 2 * h) + embeddings
    assert m.params_total == total == 228_689_748_992
    assert m.params_active == active
    assert m.params_total == pytest.approx(229e9, rel=0.01)
    assert m.params_active - embeddings == pytest.approx(10e9, rel=0.03)
    assert m.kv_bytes_per_token == 2 * 8 * 128 * 62 * 2


@pytest.mark.parametrize(
    "name, args, kv_bytes",
    [
        ("Qwen3-0.6B", (28, 1024, 16, 8, 128, 3072, 151_936, True, True), 114_688),
        ("Qwen3-4B", (36, 2560, 32, 8, 128, 9728, 151_936, True, True), 147_456),
        ("Qwen3-32B", (64, 5120, 64, 8, 128, 25600, 151_936, False, True), 262_144),
        ("Llama-3.1-8B", (32, 4096, 32, 8, 128, 14336, 128_256, False, False), 131_072),
        ("Llama-3.1-70B", (80, 8192, 64, 8, 128, 28672, 128_256, False, False), 327_680),
    ],
)
def test_dense_presets(name, args, kv_bytes):
    m = load_model(name)
    assert m.params_total == dense_params(*args)
    assert m.kv_bytes_per_token == kv_bytes


def test_fp8_kv_halves_kv_bytes():
    m = with_overrides(load_model("Qwen3-8B"), {"kv_dtype": "fp8"})
    assert m.kv_bytes_per_token == 147_456 / 2


def test_every_preset_validates():
    for name in PRESETS:
        assert load_model(name).name == name


def test_hf_config_matches_preset(tmp_path):
    config = {
        "model_type": "qwen3", "num_hidden_layers": 36, "hidden_size": 4096, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936,
        "tie_word_embeddings": False, "max_position_embeddings": 40960, "torch_dtype": "bfloat16",
        "rope_theta": 1000000, "rms_norm_eps": 1e-6,
    }
    path = tmp_path / "Qwen3-8B" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(config))
    m = load_model(path)
    assert m.name == "Qwen3-8B"
    assert m.params_total == load_model("Qwen3-8B").params_total
    assert m.qk_norm and m.kv_bytes_per_token == 147_456


def test_hf_moe_config(tmp_path):
    config = {
        "model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "num_attention_heads": 32,
        "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
        "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936, "tie_word_embeddings": False,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    m = load_model(path)
    assert m.params_total == load_model("Qwen3-30B-A3B").params_total
    assert m.params_active == load_model("Qwen3-30B-A3B").params_active


def test_hf_config_of_gpt_oss_and_minimax_match_their_presets(tmp_path):
    """The keys of openai/gpt-oss-120b's and MiniMaxAI/MiniMax-M2.5's config.json that kinsim reads."""
    gpt_oss = {
        "model_type": "gpt_oss", "num_hidden_layers": 36, "hidden_size": 2880, "num_attention_heads": 64,
        "num_key_value_heads": 8, "head_dim": 64, "intermediate_size": 2880, "num_local_experts": 128,
        "experts_per_token": 4, "num_experts_per_tok": 4, "vocab_size": 201088, "tie_word_embeddings": False,
        "attention_bias": True, "sliding_window": 128, "max_position_embeddings": 131072,
        "layer_types": ["sliding_attention", "full_attention"] * 18,
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn"]},
    }
    minimax = {
        "model_type": "minimax_m2", "num_hidden_layers": 62, "hidden_size": 3072, "num_attention_heads": 48,
        "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 1536, "num_local_experts": 256,
        "num_experts_per_tok": 8, "vocab_size": 200064, "tie_word_embeddings": False, "use_qk_norm": True,
        "qk_norm_type": "per_layer", "shared_intermediate_size": 0, "max_position_embeddings": 196608,
        "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    }
    for config, preset in ((gpt_oss, "gpt-oss-120b"), (minimax, "MiniMax-M2.5")):
        path = tmp_path / f"{preset}.json"
        path.write_text(json.dumps(config))
        m, p = load_model(path), load_model(preset)
        assert (m.params_total, m.params_active, m.kv_bytes_per_token) == (
            p.params_total, p.params_active, p.kv_bytes_per_token)
        assert (m.sliding_window, m.sliding_window_layers, m.qk_norm, m.qk_norm_type) == (
            p.sliding_window, p.sliding_window_layers, p.qk_norm, p.qk_norm_type)
    assert load_model(tmp_path / "gpt-oss-120b.json").weight_bytes == load_model("gpt-oss-120b").weight_bytes
    assert load_model(tmp_path / "MiniMax-M2.5.json").weight_dtype == "fp8"


def test_unknown_preset_suggests_near_names():
    with pytest.raises(SpecError, match="did you mean Qwen3-8B"):
        load_model("Qwen3-8b-instruct")


def test_hf_config_missing_key_names_it(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4}))
    with pytest.raises(SpecError, match=r"config.json: num_hidden_layers: missing required key"):
        load_model(path)
