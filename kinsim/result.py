"""The result of a simulation: headline metrics, and the records they came from."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kinsim.engine.records import Records
from kinsim.hardware.spec import HardwareSpec
from kinsim.workload.spec import WorkloadSpec


@dataclass
class Result:
    """What :func:`kinsim.simulate` returns.

    Attributes:
        summary: the headline metrics (see :mod:`kinsim.metrics`), as written by ``kinsim run --json``.
        records: the engine's records (request lifecycles, steps or segments).
        workload, hardware: the resolved inputs that were simulated.
    """

    summary: dict[str, Any]
    records: Records
    workload: WorkloadSpec
    hardware: HardwareSpec

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``kinsim run --json`` (a deep copy)."""
        return copy.deepcopy(self.summary)

    def __getitem__(self, dotted: str) -> Any:
        """A metric by dotted key, e.g. ``result["throughput.tasks_per_s"]``."""
        value: Any = self.summary
        for part in dotted.split("."):
            value = value[part]
        return value
