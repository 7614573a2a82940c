"""Loading hardware files: YAML with ``extends:`` and dotted-key overrides, into a :class:`HardwareSpec`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.schema import apply_overrides, build
from kinsim.yamlio import read_with_extends, read_yaml_mapping


def load_hardware(path: str | Path, overrides: Mapping[str, Any] | None = None) -> HardwareSpec:
    """Read a hardware file, apply ``overrides`` (dotted keys, values as in YAML, e.g.
    ``{"gpu.memory.bandwidth": "6.7 TB/s"}``) and validate. Raises :class:`~kinsim.errors.SpecError`."""
    raw = read_with_extends(path)
    relative_to = _declaring_file(Path(path)).parent
    if overrides:
        raw = apply_overrides(raw, overrides, file=str(path))
        if "calibration" in overrides:  # a path given on the command line or in Python: relative to the cwd
            relative_to = Path.cwd()
    if isinstance(raw.get("calibration"), str):
        raw["calibration"] = _read_profile(Path(path), relative_to, raw["calibration"])
    return build(HardwareSpec, raw, file=str(path))


def _declaring_file(path: Path) -> Path:
    """The file of an ``extends`` chain whose ``calibration:`` is in effect (the nearest to ``path``)."""
    while True:
        data = read_yaml_mapping(path)
        if "calibration" in data or not isinstance(data.get("extends"), str):
            return path
        path = path.parent / data["extends"]


def _read_profile(hardware_file: Path, relative_to: Path, reference: str) -> dict[str, Any]:
    """The calibration profile a hardware file names, relative to the folder of the file that names it."""
    profile = (relative_to / reference).resolve()
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
