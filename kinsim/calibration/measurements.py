"""The measurement files a calibration run writes and the fitter reads.

``DIR/measurements.csv``: one row per kernel and shape, with at least the columns

    kernel    kernel kind (gemm, attention_decode, attention_sparse, attention_prefill, selection, elementwise)
    impl      what ran it (triton, torch.matmul, ...); optional, default "triton"
    dtype     data type of the FLOP rate that bounds it (bf16, fp8, ...); optional, default bf16
    flops     floating-point operations of one run
    bytes     HBM bytes of one run (read plus written)
    time_s    median time of one run, seconds

and any shape columns (batch, context, heads, m, n, k ...), kept for reports. ``DIR/metadata.json``:
device name, driver, library versions, date, and the two ceilings measured on the device
(``copy_bandwidth`` B/s, ``gemm_flop_rate`` FLOP/s), all optional.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kinsim.errors import SpecError
from kinsim.hardware.spec import CALIBRATED_KERNELS

REQUIRED_COLUMNS = ("kernel", "flops", "bytes", "time_s")
MEASUREMENTS = "measurements.csv"
METADATA = "metadata.json"


def read_measurements(directory: str | Path):
    """The measurements of ``directory`` as a pandas DataFrame, checked row by row."""
    import pandas as pd

    directory = Path(directory)
    path = directory / MEASUREMENTS
    if not path.is_file():
        raise SpecError("measurement file not found", file=str(path),
                        hint="a directory written by kinsim calibrate measure")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SpecError(f"not a CSV file: {error}", file=str(path)) from None
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise SpecError("missing column", path=column, file=str(path),
                            hint="columns needed: " + ", ".join(REQUIRED_COLUMNS))
    frame = frame.copy()
    if "impl" not in frame.columns:
        frame["impl"] = "triton"
    if "dtype" not in frame.columns:
        frame["dtype"] = "bf16"
    for index, row in frame.iterrows():
        line = f"row {index + 2}"  # the header is line 1
        if row["kernel"] not in CALIBRATED_KERNELS:
            raise SpecError("must be one of " + ", ".join(CALIBRATED_KERNELS), path=f"{line}.kernel",
                            value=row["kernel"], file=str(path))
        for column in ("flops", "bytes"):
            value = row[column]
            if not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value) or value < 0:
                raise SpecError("must be a number, zero or more", path=f"{line}.{column}", value=value,
                                file=str(path))
        time = row["time_s"]
        if not isinstance(time, (int, float, np.integer, np.floating)) or not np.isfinite(time) or time <= 0:
            raise SpecError("must be a positive number of seconds", path=f"{line}.time_s", value=time,
                            file=str(path))
    return frame


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """``DIR/metadata.json`` as a dict (empty when absent)."""
    path = Path(directory) / METADATA
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SpecError(f"not JSON: {error}", file=str(path)) from None
    if not isinstance(data, dict):
        raise SpecError("expected a JSON object", file=str(path))
    return data
