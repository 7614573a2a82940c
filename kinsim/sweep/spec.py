"""Sweep files: a base workload and hardware, optional fixed overrides, and axes of values.

```yaml
name: hbm_bandwidth
workload: ../workloads/aime_bon32.yaml     # relative to this file
hardware: ../hardware/h100.yaml
overrides: {deployment.max_num_seqs: 128}  # optional, for every point
mode: grid                                  # grid (every combination, default) or zip (the i-th of each)
axes:
  hw.gpu.memory.bandwidth: ["2 TB/s", "3.35 TB/s", "6.7 TB/s"]
plot: {x: hw.gpu.memory.bandwidth, y: throughput.tasks_per_s}   # optional default plot
```

Axis and override keys are dotted keys of the workload, or of the hardware with a ``hw.`` prefix, as
``kinsim run --set`` takes them. Every key is checked against the keys a workload or hardware file takes
before any point runs: a misspelt axis is refused with the nearest valid key as a hint (it used to fail
every point, and the sweep exit 0).
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.limits import MAX_SWEEP_POINTS
from kinsim.metrics import check_figure_key
from kinsim.reading import checked_reference, resolved
from kinsim.yamlio import read_yaml_mapping

KEYS = ("name", "description", "workload", "hardware", "overrides", "mode", "axes", "plot")


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep file."""

    name: str
    workload: Path
    hardware: Path
    axes: dict[str, list[Any]]
    mode: str = "grid"
    overrides: dict[str, Any] = field(default_factory=dict)
    plot: dict[str, str] = field(default_factory=dict)
    file: str = ""

    def points(self) -> list[dict[str, Any]]:
        """Every point: the fixed overrides plus one value per axis, in file order."""
        keys = list(self.axes)
        if self.mode == "zip":
            combos = list(zip(*(self.axes[k] for k in keys)))
        else:
            combos = list(itertools.product(*(self.axes[k] for k in keys)))
        return [dict(zip(keys, combo)) for combo in combos]


@functools.cache
def _valid_keys() -> tuple[frozenset[str], tuple[str, ...]]:
    """(every dotted key an axis or override may name, the keys under which any name goes), ``hw.`` for
    the hardware's keys."""
    from kinsim.hardware.spec import HardwareSpec
    from kinsim.runner import HARDWARE_PREFIXES
    from kinsim.schema import iter_keys
    from kinsim.workload.spec import WorkloadSpec

    keys, open_mappings = {"model.preset", "model.config"}, []
    for cls, prefixes in ((WorkloadSpec, ("",)), (HardwareSpec, HARDWARE_PREFIXES)):
        for doc in iter_keys(cls):
            path = doc.path.split(": ")[0]  # "attention.policy: dense" is the tag key attention.policy
            for prefix in prefixes:
                keys.add(prefix + path)
                if doc.type.startswith("mapping of name"):  # gpu.compute.peak.<dtype>: any name below
                    open_mappings.append(prefix + path + ".")
    return frozenset(keys), tuple(open_mappings)


def check_override_key(key: str, path: str, file: str) -> None:
    """A :class:`SpecError` at ``path`` unless ``key`` is a key of the workload (or, with ``hw.``, of the
    hardware); the nearest valid key is the hint."""
    keys, open_mappings = _valid_keys()
    if key in keys or key.startswith(open_mappings):
        return
    near = difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0.5)
    raise SpecError("not a key of the workload or, with hw., of the hardware", path=path, value=key, file=file,
                    hint=f"did you mean {near[0]}? see docs/file-formats.md" if near else "see docs/file-formats.md")


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (:class:`SpecError` naming the key on any problem)."""
    path = Path(path)
    file = str(path)
    raw = read_yaml_mapping(path)
    if not isinstance(raw, dict):
        raise SpecError("expected a mapping", file=file)
    for key in raw:
        if key not in KEYS:
            raise SpecError("unknown key", path=str(key), file=file, hint="keys: " + ", ".join(KEYS))
    for key in ("workload", "hardware", "axes"):
        if key not in raw:
            raise SpecError("missing required key", path=key, file=file)
    for key in ("name", "description", "mode"):
        if key in raw and not isinstance(raw[key], str):
            raise SpecError("expected a string", path=key, value=raw[key], file=file)
    files = {}
    for key in ("workload", "hardware"):
        if not isinstance(raw[key], str):
            raise SpecError("expected a file name", path=key, value=raw[key], file=file)
        target = resolved(path.parent / raw[key], file, key)
        if not os.path.lexists(target):
            raise SpecError("file not found", path=key, value=raw[key], file=file, hint=f"looked for {target}")
        files[key] = checked_reference(target, "yaml", file, key, raw[key])
    axes = raw["axes"]
    if not isinstance(axes, dict) or not axes:
        raise SpecError("expected a mapping of dotted keys to lists of values", path="axes", file=file)
    for key, values in axes.items():
        check_override_key(str(key), f"axes.{key}", file)
        if not isinstance(values, list) or not values:
            raise SpecError("expected a non-empty list of values", path=f"axes.{key}", value=values, file=file)
    mode = raw.get("mode", "grid")
    if mode not in ("grid", "zip"):
        raise SpecError("must be grid or zip", path="mode", value=mode, file=file)
    if mode == "zip" and len({len(v) for v in axes.values()}) > 1:
        raise SpecError("zip needs lists of one length", path="axes", value={k: len(v) for k, v in axes.items()},
                        file=file)
    points = math.prod(len(v) for v in axes.values()) if mode == "grid" else len(next(iter(axes.values())))
    if points > MAX_SWEEP_POINTS:
        raise SpecError(f"the {mode} has {points:,} points, more than kinsim's cap of {MAX_SWEEP_POINTS:,} (each point "
                        "is a simulation)", path="axes", value={k: len(v) for k, v in axes.items()}, file=file)
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise SpecError("expected a mapping of dotted keys to values", path="overrides", file=file)
    for key in overrides:
        check_override_key(str(key), f"overrides.{key}", file)
    plot = raw.get("plot") or {}
    if not isinstance(plot, dict) or set(plot) - {"x", "y"}:
        raise SpecError("expected {x: AXIS, y: METRIC}", path="plot", value=plot, file=file)
    if "x" in plot and (not isinstance(plot["x"], str) or plot["x"] not in axes):
        raise SpecError("must be one of the axes", path="plot.x", value=plot["x"], file=file)
    if "y" in plot:
        check_figure_key(plot["y"], "plot.y", file)
    return Sweep(name=str(raw.get("name", path.stem)), workload=files["workload"], hardware=files["hardware"],
                 axes={str(k): list(v) for k, v in axes.items()}, mode=mode,
                 overrides={str(k): v for k, v in overrides.items()}, plot=dict(plot), file=file)
