"""Regression suites: cases (a workload, a hardware file, overrides) and the metrics they guard.

```yaml
name: kinsim
metrics:                                  # guarded in every case, with relative tolerances
  throughput.output_tokens_per_s: 1.0e-6
  throughput.tasks_per_s: 1.0e-6
  latency.task.e2e.p99: 1.0e-6
  kv.peak_bytes: 1.0e-6
cases:
  aime_bon32_h100:
    workload: ../workloads/aime_bon32.yaml      # relative to the suite file
    hardware: ../hardware/h100.yaml
    overrides: {deployment.max_num_seqs: 128}  # optional; hw. for the hardware
    metrics: {throughput.tasks_per_s: 0.01}    # optional, added to or replacing the suite's
```

Which way is worse is known per metric (:func:`kinsim.metrics.better_direction`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.metrics import check_figure_key
from kinsim.reading import checked_reference, resolved
from kinsim.yamlio import read_yaml_mapping

DEFAULT_METRICS = {"throughput.output_tokens_per_s": 1e-6, "throughput.tasks_per_s": 1e-6,
                   "latency.task.e2e.p99": 1e-6, "kv.peak_bytes": 1e-6}

@dataclass(frozen=True)
class Case:
    name: str
    workload: Path
    hardware: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    cases: tuple[Case, ...]
    file: str


def _tolerances(value: Any, path: str, file: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise SpecError("expected a mapping of dotted metric keys to relative tolerances", path=path, file=file)
    out = {}
    for key, tol in value.items():
        check_figure_key(key, f"{path}.{key}", file)
        # not (0 <= tol < inf) refuses NaN too: a NaN tolerance made every comparison fail (identical values
        # reported as regressions), an infinite one let every change pass
        number = finite_number(tol)
        if number is None or number < 0:
            raise SpecError("must be a relative tolerance, a finite number 0 or more (0.01 is 1%)",
                            path=f"{path}.{key}", value=tol, file=file)
        out[str(key)] = number
    return out


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number (booleans are not) or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return number if math.isfinite(number) else None


def _check_inputs(workload: Path, hardware: Path, overrides: dict, path: str, file: str) -> None:
    """Load a case's workload and hardware with its overrides, so that a bad case fails before any runs."""
    from kinsim.hardware.load import load_hardware
    from kinsim.runner import split_overrides
    from kinsim.workload.load import load_workload

    workload_overrides, hardware_overrides = split_overrides({str(k): v for k, v in overrides.items()})
    try:
        load_workload(workload, workload_overrides)
        load_hardware(hardware, hardware_overrides)
    except SpecError as error:
        raise SpecError(str(error), path=path, file=file) from None


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file (:class:`SpecError` naming the key on any problem)."""
    path = Path(path)
    file = str(path)
    raw = read_yaml_mapping(path)
    for key in raw:
        if key not in ("name", "description", "metrics", "cases"):
            raise SpecError("unknown key", path=str(key), file=file, hint="keys: name, description, metrics, cases")
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise SpecError("expected a string", path=key, value=raw[key], file=file)
    metrics = _tolerances(raw.get("metrics", DEFAULT_METRICS), "metrics", file)
    cases_raw = raw.get("cases")
    if not isinstance(cases_raw, dict) or not cases_raw:
        raise SpecError("expected a mapping of case names to cases", path="cases", file=file)
    cases = []
    for name, case in cases_raw.items():
        where = f"cases.{name}"
        if not isinstance(case, dict):
            raise SpecError("expected a mapping with workload and hardware", path=where, file=file)
        for key in case:
            if key not in ("workload", "hardware", "overrides", "metrics"):
                raise SpecError("unknown key", path=f"{where}.{key}", file=file,
                                hint="keys: workload, hardware, overrides, metrics")
        files = {}
        for key in ("workload", "hardware"):
            if key not in case:
                raise SpecError("missing required key", path=f"{where}.{key}", file=file)
            if not isinstance(case[key], str):
                raise SpecError("expected a file name", path=f"{where}.{key}", value=case[key], file=file)
            target = resolved(path.parent / case[key], file, f"{where}.{key}")
            if not os.path.lexists(target):
                raise SpecError("file not found", path=f"{where}.{key}", value=case[key], file=file,
                                hint=f"looked for {target}")
            files[key] = checked_reference(target, "yaml", file, f"{where}.{key}", case[key])
        overrides = case.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise SpecError("expected a mapping of dotted keys to values", path=f"{where}.overrides", file=file)
        own = _tolerances(case.get("metrics") or {}, f"{where}.metrics", file)
        _check_inputs(files["workload"], files["hardware"], overrides, f"{where}.overrides", file)
        cases.append(Case(str(name), files["workload"], files["hardware"], {str(k): v for k, v in overrides.items()},
                          {**metrics, **own}))
    return Suite(str(raw.get("name", path.stem)), tuple(cases), file)
