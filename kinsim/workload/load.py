"""Loading workload files: YAML with ``extends:`` and overrides, model references and trace paths
resolved relative to the file, into a :class:`WorkloadSpec`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.model.load import expand_model_ref
from kinsim.reading import checked_reference, resolved
from kinsim.schema import apply_overrides, build
from kinsim.workload.spec import WorkloadSpec
from kinsim.yamlio import read_with_extends


def load_workload(path: str | Path, overrides: Mapping[str, Any] | None = None) -> WorkloadSpec:
    """Read a workload file, apply ``overrides`` (dotted keys, e.g. ``{"model.kv_dtype": "fp8",
    "deployment.tensor_parallel": 2}``) and validate. Raises :class:`~kinsim.errors.SpecError`.

    A trace path (or a disaggregated role's hardware file) in the file is relative to the file; one given as
    the override ``requests.path`` (``deployment.disaggregation.<role>.hardware``), typed on the command line,
    is relative to the current directory."""
    path = Path(path)
    file = str(path)
    raw = read_with_extends(path)
    if isinstance(raw.get("model"), str):
        raw["model"] = {"preset": raw["model"]}
    if overrides:
        overrides = dict(overrides)
        for key in ("requests.path", "deployment.disaggregation.prefill.hardware",
                    "deployment.disaggregation.decode.hardware"):
            if isinstance(overrides.get(key), str) and overrides[key].strip():  # typed on the command line: cwd
                overrides[key] = str(resolved(overrides[key], "--set", key))
        overrides = _role_hardware_from_cwd(overrides)
        raw = apply_overrides(raw, overrides, file=file)
    return workload_from_raw(raw, base_dir=path.parent, file=file)


def workload_from_raw(raw: Mapping[str, Any], base_dir: Path, file: str | None = None) -> WorkloadSpec:
    """Build a workload from a raw mapping whose relative paths are relative to ``base_dir``."""
    raw = dict(raw)
    if "model" not in raw:
        raise SpecError("missing required key", path="model", file=file,
                        hint="a preset name such as Qwen3-8B, or {config: path/to/config.json}")
    try:
        raw["model"] = expand_model_ref(raw["model"], base_dir=base_dir, file=file)
    except SpecError as error:
        raise error if error.file else error.within("", file) from None
    raw = _expand_draft(raw, base_dir, file)
    raw = _resolve_role_hardware(raw, base_dir, file)
    requests = raw.get("requests")
    if isinstance(requests, Mapping) and requests.get("kind") == "trace" and isinstance(requests.get("path"), str):
        trace = resolved(base_dir / requests["path"], file, "requests.path")
        if not os.path.lexists(trace):
            raise SpecError("trace file not found", path="requests.path", value=requests["path"], file=file,
                            hint=f"looked for {trace}")
        checked_reference(trace, "trace", file, "requests.path", requests["path"])
        raw["requests"] = {**requests, "path": str(trace)}
    return build(WorkloadSpec, raw, file=file)


def _expand_draft(raw: dict, base_dir: Path, file: str | None) -> dict:
    """``deployment.speculative.draft`` resolved: ``self`` to none (the target drafts for itself), a model
    reference (preset name, ``{preset: ...}``, ``{config: ...}``) to its full mapping, as ``model`` is."""
    deployment = raw.get("deployment")
    speculative = deployment.get("speculative") if isinstance(deployment, Mapping) else None
    if not isinstance(speculative, Mapping) or "draft" not in speculative:
        return raw
    draft = speculative["draft"]
    path = "deployment.speculative.draft"
    if draft == "self" or draft is None:
        draft = None
    elif isinstance(draft, str | Mapping):
        try:
            draft = expand_model_ref(draft, base_dir=base_dir, path=path, file=file)
        except SpecError as error:
            raise error if error.file else error.within("", file) from None
    else:
        raise SpecError("expected self, a preset name or a model mapping", path=path, value=draft, file=file,
                        hint="self, or a model as model: accepts (Qwen3-0.6B, {preset: ...}, {config: ...})")
    return {**raw, "deployment": {**deployment, "speculative": {**speculative, "draft": draft}}}


def _resolve_role_hardware(raw: dict, base_dir: Path, file: str | None) -> dict:
    """``deployment.disaggregation.{prefill,decode}.hardware``: a hardware file relative to the workload file,
    made absolute (and checked to exist) as a trace path is."""
    deployment = raw.get("deployment")
    split = deployment.get("disaggregation") if isinstance(deployment, Mapping) else None
    if not isinstance(split, Mapping):
        return raw
    split = dict(split)
    for role in ("prefill", "decode"):
        spec = split.get(role)
        if isinstance(spec, Mapping) and isinstance(spec.get("hardware"), str) and spec["hardware"].strip():
            key = f"deployment.disaggregation.{role}.hardware"
            target = resolved(base_dir / spec["hardware"], file, key)
            if not os.path.lexists(target):
                raise SpecError("hardware file not found", path=key, value=spec["hardware"], file=file,
                                hint=f"looked for {target}")
            checked_reference(target, "yaml", file, key, spec["hardware"])
            split[role] = {**spec, "hardware": str(target)}
    return {**raw, "deployment": {**deployment, "disaggregation": split}}


def _role_hardware_from_cwd(overrides: dict[str, Any]) -> dict[str, Any]:
    """Role hardware files inside a mapping given on the command line (``--set
    'deployment.disaggregation={decode: {hardware: h200.yaml}}'``), resolved from the current directory."""
    out = dict(overrides)
    for key, value in overrides.items():
        roles = None
        if key == "deployment.disaggregation" and isinstance(value, Mapping):
            roles = {role: value.get(role) for role in ("prefill", "decode")}
        elif key in ("deployment.disaggregation.prefill", "deployment.disaggregation.decode"):
            roles = {key.rsplit(".", 1)[1]: value}
        if not roles:
            continue
        fixed = {role: {**spec, "hardware": str(resolved(spec["hardware"], "--set",
                                                         f"deployment.disaggregation.{role}.hardware"))}
                 for role, spec in roles.items()
                 if isinstance(spec, Mapping) and isinstance(spec.get("hardware"), str) and spec["hardware"].strip()}
        if not fixed:
            continue
        if key == "deployment.disaggregation":
            out[key] = {**value, **fixed}
        else:
            out[key] = next(iter(fixed.values()))
    return out
