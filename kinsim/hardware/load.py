"""Loading hardware files: YAML with ``extends:`` and dotted-key overrides, into a :class:`HardwareSpec`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.schema import apply_overrides, build
from kinsim.yamlio import read_with_extends


def load_hardware(path: str | Path, overrides: Mapping[str, Any] | None = None) -> HardwareSpec:
    """Read a hardware file, apply ``overrides`` (dotted keys, values as in YAML, e.g.
    ``{"gpu.memory.bandwidth": "6.7 TB/s"}``) and validate. Raises :class:`~kinsim.errors.SpecError`."""
    raw = read_with_extends(path)
    if isinstance(raw.get("calibration"), str):
        raw["calibration"] = _read_profile(Path(path), raw["calibration"])
    if overrides:
        raw = apply_overrides(raw, overrides, file=str(path))
    return build(HardwareSpec, raw, file=str(path))


def _read_profile(hardware_file: Path, reference: str) -> dict[str, Any]:
    """The calibration profile a hardware file names, relative to that file."""
    profile = (hardware_file.parent / reference).resolve()
    if not profile.is_file():
        raise SpecError("calibration profile not found", path="calibration", value=reference,
                        file=str(hardware_file), hint=f"looked for {profile}; write one with kinsim calibrate fit")
    raw = read_with_extends(profile)
    if not isinstance(raw, dict):
        raise SpecError("expected a mapping (a profile written by kinsim calibrate fit)", file=str(profile))
    return raw


def hardware_from_dict(raw: Mapping[str, Any]) -> HardwareSpec:
    """A hardware description written in Python, as a hardware file's mapping (quantities with units, e.g.
    ``"3.35 TB/s"``); validated like a file. Raises :class:`~kinsim.errors.SpecError`."""
    return build(HardwareSpec, dict(raw), file="<python>")
