"""Resolving a model reference (preset name, ``config.json`` path or explicit keys) into a ModelSpec.

A workload's ``model`` key accepts::

    model: Qwen3-8B                     # a preset
    model: {preset: Qwen3-8B, kv_dtype: fp8}   # a preset with keys changed
    model: {config: models/my/config.json}     # a Hugging Face config, relative to the workload file
    model: {name: tiny, layers: 2, ...}        # every key written out
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.model.hf_config import read_hf_config
from kinsim.model.presets import preset_raw
from kinsim.model.spec import ModelSpec
from kinsim.schema import build


def expand_model_ref(value: Any, *, base_dir: Path, path: str = "model", file: str | None = None) -> dict:
    """The full raw model mapping that ``value`` stands for (preset and config keys expanded)."""
    if isinstance(value, str):
        value = _looks_like_file(value, base_dir) or {"preset": value}
    if not isinstance(value, Mapping):
        raise SpecError("expected a preset name or a mapping", path=path, value=value, file=file)
    value = dict(value)
    if "preset" in value and "config" in value:
        raise SpecError("give either preset or config, not both", path=path, file=file)
    if "preset" in value:
        base = preset_raw(value.pop("preset"), path=f"{path}.preset", file=file)
    elif "config" in value:
        config = value.pop("config")
        if not isinstance(config, str):
            raise SpecError("expected a path to a config.json", path=f"{path}.config", value=config,
                            file=file)
        base = read_hf_config(base_dir / config)
    else:
        base = {}
    base.update(value)
    return base


def _looks_like_file(value: str, base_dir: Path) -> dict | None:
    if value.endswith(".json") or (base_dir / value / "config.json").is_file():
        return {"config": value}
    return None


def load_model(ref: str | Path | Mapping[str, Any], base_dir: str | Path = ".") -> ModelSpec:
    """A validated :class:`ModelSpec` from a preset name, a ``config.json`` path or a mapping."""
    value = str(ref) if isinstance(ref, Path) else ref
    raw = expand_model_ref(value, base_dir=Path(base_dir))
    file = str(Path(base_dir) / value) if isinstance(value, str) and value.endswith(".json") else None
    return build(ModelSpec, raw, file=file)
