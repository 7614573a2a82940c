"""Telling what kind of input a file is, and loading it: hardware, workload, model, trace, sweep or suite.

Used by the commands that accept several of them (``kinsim validate``, ``kinsim info``).

* ``.jsonl`` and ``.csv`` files are request traces;
* ``.json`` files and folders holding a ``config.json`` are Hugging Face model configs;
* YAML files are hardware files when they (or the file they extend) have a ``gpu`` key, workload files
  when they have ``requests``, model files when they have ``layers``, sweep files when they have ``axes``,
  regression suites when they have ``cases``;
* a name that is not a file is a model preset (``Qwen3-8B``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError, show_value
from kinsim.hardware import HardwareSpec, load_hardware
from kinsim.model import ModelSpec, load_model
from kinsim.model.presets import PRESETS
from kinsim.schema import apply_overrides, build, with_overrides
from kinsim.workload import Request, WorkloadSpec, load_workload, read_trace, workload_requests
from kinsim.yamlio import read_with_extends

KINDS = ("hardware", "workload", "model", "trace", "sweep", "suite")


@dataclass(frozen=True)
class LoadedInput:
    """A loaded input: its ``kind`` (one of :data:`KINDS`), the spec, and for workloads and traces the
    requests (a workload's trace or generator is read, so that validation covers it)."""

    kind: str
    source: str
    spec: HardwareSpec | WorkloadSpec | ModelSpec | Any | None
    requests: list[Request] | None = None
    #: what else validation found, for the one line ``kinsim validate`` prints ("5 points")
    detail: str = ""


def input_kind(name: str) -> str:
    """The kind of input ``name`` is, without validating it."""
    path = Path(name)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".csv"):
        return "trace"
    if suffix == ".json" or (path.is_dir() and (path / "config.json").is_file()):
        return "model"
    if suffix in (".yaml", ".yml"):
        raw = read_with_extends(path)
        for key, kind in (("gpu", "hardware"), ("requests", "workload"), ("layers", "model"), ("axes", "sweep"),
                          ("cases", "suite")):
            if key in raw:
                return kind
        raise SpecError(
            "cannot tell what kind of file this is", file=name,
            hint="a hardware file has a gpu: section, a workload file a requests: section, a model "
                 "file a layers: key, a sweep axes:, a regression suite cases:")
    if not os.path.lexists(path) and (name in PRESETS or suffix == ""):
        return "model"
    if not os.path.lexists(path):
        raise SpecError("file not found", file=name)
    raise SpecError("unknown file type", value=path.suffix, file=name,
                    hint="expected .yaml, .json (model config), .jsonl or .csv (trace)")


def load_input(name: str, overrides: Mapping[str, Any] | None = None) -> LoadedInput:
    """Load and validate ``name`` as whatever kind of input it is."""
    kind = input_kind(name)
    if kind == "hardware":
        return LoadedInput(kind, name, load_hardware(name, overrides))
    if kind == "workload":
        workload = load_workload(name, overrides)
        return LoadedInput(kind, name, workload, workload_requests(workload))
    if kind == "trace":
        if overrides:
            raise SpecError("--set does not apply to a trace file", file=name)
        return LoadedInput(kind, name, None, read_trace(name))
    if kind in ("sweep", "suite"):
        if overrides:
            raise SpecError(f"--set does not apply to a {kind} file (it has overrides of its own)", file=name)
        return _load_sweep_or_suite(kind, name)
    if Path(name).suffix.lower() in (".yaml", ".yml"):
        raw = read_with_extends(name)
        if overrides:
            raw = apply_overrides(raw, overrides, file=name)
        return LoadedInput(kind, name, build(ModelSpec, raw, file=name))
    model = load_model(name)
    if overrides:
        model = with_overrides(model, overrides)
    return LoadedInput(kind, name, model)


def _load_sweep_or_suite(kind: str, name: str) -> LoadedInput:
    """A sweep with every point's inputs resolved (an invalid point is an error here, where ``kinsim sweep``
    would record it as failed), or a suite with every case's inputs checked."""
    if kind == "suite":
        from kinsim.regress.suite import load_suite

        suite = load_suite(name)
        return LoadedInput(kind, name, suite, detail=f"{len(suite.cases)} cases")
    from kinsim.sweep.execute import resolve
    from kinsim.sweep.spec import load_sweep

    sweep = load_sweep(name)
    points = resolve(sweep)
    for point in points:
        if point.error:
            raise SpecError(f"point {point.index + 1} of {len(points)} ({show_value(point.values)}): {point.error}",
                            file=name)
    return LoadedInput(kind, name, sweep, detail=f"{len(points)} points")
