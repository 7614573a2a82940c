"""Loading hardware files: YAML with ``extends:`` and dotted-key overrides, into a :class:`HardwareSpec`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.reading import checked_reference, resolved
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
    reference = raw.get("calibration")
    if isinstance(reference, str) or (isinstance(reference, Mapping) and "from" in reference):
        build(HardwareSpec, {**raw, "calibration": None}, file=str(path))  # the file's own keys first
    if isinstance(reference, str):
        raw["calibration"] = _read_profile(Path(path), relative_to, reference)
    elif isinstance(reference, Mapping) and "from" in reference:
        raw["calibration"] = _transferred_profile(Path(path), relative_to, reference)
    return build(HardwareSpec, raw, file=str(path))


def _transferred_profile(hardware_file: Path, relative_to: Path, reference: Mapping[str, Any]) -> dict[str, Any]:
    """``calibration: {from: PATH}``: a profile fitted on another GPU, applied to this one. Its terms are
    stated relative to the hardware (shares of peaks, seconds, bytes per second per work item), so they
    carry over as they are; ``transferred_from`` records the device they were measured on."""
    extra = sorted(set(reference) - {"from"})
    if extra:
        raise SpecError(f"unknown key {extra[0]!r}", path=f"calibration.{extra[0]}", file=str(hardware_file),
                        hint="calibration: {from: PATH} takes only from")
    if not isinstance(reference["from"], str):
        raise SpecError("expected the path of a profile", path="calibration.from", value=reference["from"],
                        file=str(hardware_file))
    raw = _read_profile(hardware_file, relative_to, reference["from"])
    raw["transferred_from"] = raw.get("transferred_from") or raw.get("device", reference["from"])
    return raw


def _declaring_file(path: Path) -> Path:
    """The file of an ``extends`` chain whose ``calibration:`` is in effect (the nearest to ``path``)."""
    while True:
        data = read_yaml_mapping(path)
        if "calibration" in data or not isinstance(data.get("extends"), str):
            return path
        path = path.parent / data["extends"]


def _read_profile(hardware_file: Path, relative_to: Path, reference: str) -> dict[str, Any]:
    """The calibration profile a hardware file names, relative to the folder of the file that names it."""
    profile = resolved(relative_to / reference, str(hardware_file), "calibration")
    if not os.path.lexists(profile):
        raise SpecError("calibration profile not found", path="calibration", value=reference,
                        file=str(hardware_file), hint=f"looked for {profile}; write one with kinsim calibrate fit")
    checked_reference(profile, "yaml", str(hardware_file), "calibration", reference)
    raw = read_with_extends(profile)
    if not isinstance(raw, dict):
        raise SpecError("expected a mapping (a profile written by kinsim calibrate fit)", file=str(profile))
    return raw


def hardware_from_dict(raw: Mapping[str, Any]) -> HardwareSpec:
    """A hardware description written in Python, as a hardware file's mapping (quantities with units, e.g.
    ``"3.35 TB/s"``); validated like a file. ``calibration`` may name a profile (a path, or ``{"from": path}``
    for one fitted on another GPU), relative to the working directory. Raises
    :class:`~kinsim.errors.SpecError`."""
    raw = dict(raw)
    reference = raw.get("calibration")
    here = Path("<python>")
    if isinstance(reference, str) or (isinstance(reference, Mapping) and "from" in reference):
        build(HardwareSpec, {**raw, "calibration": None}, file=str(here))
    if isinstance(reference, str):
        raw["calibration"] = _read_profile(here, Path.cwd(), reference)
    elif isinstance(reference, Mapping) and "from" in reference:
        raw["calibration"] = _transferred_profile(here, Path.cwd(), reference)
    return build(HardwareSpec, raw, file=str(here))
