"""Architectures of common open models, as raw mappings validated like any model file.

Figures are from each model's Hugging Face ``config.json`` (Qwen/Qwen3-*, meta-llama/Llama-3.1-*).
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
