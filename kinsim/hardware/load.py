"""Loading hardware files: YAML with ``extends:`` and dotted-key overrides, into a :class:`HardwareSpec`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kinsim.hardware.spec import HardwareSpec
from kinsim.schema import apply_overrides, build
from kinsim.yamlio import read_with_extends


def load_hardware(path: str | Path, overrides: Mapping[str, Any] | None = None) -> HardwareSpec:
    """Read a hardware file, apply ``overrides`` (dotted keys, values as in YAML, e.g.
    ``{"gpu.memory.bandwidth": "6.7 TB/s"}``) and validate. Raises :class:`~kinsim.errors.SpecError`."""
    raw = read_with_extends(path)
    if overrides:
        raw = apply_overrides(raw, overrides, file=str(path))
    return build(HardwareSpec, raw, file=str(path))
