"""The result of a simulation: headline metrics, and the records they came from."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kinsim.engine.records import Records, SegmentTable
from kinsim.engine.request_records import STATES, RequestRecords
from kinsim.hardware.spec import HardwareSpec
from kinsim.ops.op import OP_CLASSES
from kinsim.workload.spec import WorkloadSpec

REQUEST_COLUMNS = ("request_id", "group_id", "replica", "arrival_s", "admitted_s", "first_token_s", "finish_s",
                   "prompt_tokens", "output_tokens", "generated_tokens", "preemptions", "state", "reason",
                   "gpu_s", "score")
STEP_COLUMNS = ("replica", "start_s", "end_s", "steps", "decode_seqs", "prefill_tokens", "tokens_out",
                "kv_peak_blocks", "kv_block_s", *(f"{c}_s" for c in OP_CLASSES), "flops", "hbm_bytes",
                "compute_s", "memory_s", "network_s", "host_link_s", "host_link_bytes")


def metric_at(summary: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a run's summary (``"latency.task.e2e.p99"``); ``KeyError`` if absent."""
    value: Any = summary
    for part in dotted.split("."):
        value = value[part]
    return value


def request_columns(records: Records) -> dict[str, Any]:
    """The columns of :data:`REQUEST_COLUMNS`, one value per request in generation order (times that never
    happened are NaN). Needs the requests' outcomes (``--records full`` or ``summary``)."""
    outcomes = records.sequences
    if not isinstance(outcomes, RequestRecords):
        raise ValueError("this run kept running totals only (--records none): rerun with --records summary or "
                         "full for the request table")
    table = outcomes.table
    reasons = np.array([*outcomes.reasons, ""], dtype=object)
    return {
        "request_id": [table.request_id(i) for i in range(len(table))],
        "group_id": [table.group_id(g) for g in table.group.tolist()],
        "replica": outcomes.replica, "arrival_s": outcomes.arrival_s, "admitted_s": outcomes.admitted_s,
        "first_token_s": outcomes.first_token_s, "finish_s": outcomes.finish_s,
        "prompt_tokens": table.prompt_tokens, "output_tokens": table.output_tokens,
        "generated_tokens": outcomes.generated, "preemptions": outcomes.preemptions,
        "state": np.array(STATES, dtype=object)[outcomes.state], "reason": reasons[outcomes.reason],
        "gpu_s": outcomes.gpu_s, "score": table.score_column(),
    }


def step_columns(records: Records) -> dict[str, np.ndarray]:
    """The columns of :data:`STEP_COLUMNS` (NumPy arrays, one value per recorded step or segment in the order
    they ended): the segment table's columns, with ``class_s`` split into one column per op class."""
    if not isinstance(records.segments, SegmentTable):
        raise ValueError("this run kept running totals of its steps (--records summary or none): rerun with "
                         "--records full for the step table")
    column = records.segments.column
    per_class = {f"{c}_s": i for i, c in enumerate(OP_CLASSES)}
    return {name: column("class_s")[:, per_class[name]] if name in per_class else column(name)
            for name in STEP_COLUMNS}


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

    # ---------------------------------------------------------------------------------- tables
    @property
    def requests(self):
        """One row per request (a ``pandas.DataFrame``): lifecycle times in seconds, tokens, replica."""
        import pandas as pd

        return pd.DataFrame(request_columns(self.records), columns=REQUEST_COLUMNS)

    @property
    def steps(self):
        """One row per recorded step or segment (a ``pandas.DataFrame``; see ``SegmentRecord``)."""
        import pandas as pd

        return pd.DataFrame(step_columns(self.records), columns=STEP_COLUMNS)

    @property
    def breakdown(self):
        """Per op class: seconds, share of busy time, FLOPs and HBM bytes (a ``pandas.DataFrame``)."""
        import pandas as pd

        frame = pd.DataFrame.from_dict(self.summary["by_class"], orient="index")
        total = frame["seconds"].sum()
        frame["share"] = frame["seconds"] / total if total else 0.0
        frame.index.name = "op_class"
        return frame[["seconds", "share", "flops", "hbm_bytes"]]

    def __getitem__(self, dotted: str) -> Any:
        """A metric by dotted key, e.g. ``result["throughput.tasks_per_s"]``."""
        return metric_at(self.summary, dotted)
