"""The measurement files a calibration run writes and the fitter reads.

``DIR/measurements.csv``: one row per kernel and shape, with at least the columns

    kernel    kernel kind (gemm, attention_decode, attention_sparse, attention_prefill, selection, elementwise,
              or allreduce with impl nccl or custom and a gpus column)
    impl      what ran it (triton, torch.matmul, ...); optional, default "triton"
    dtype     data type of the FLOP rate that bounds it (bf16, fp8, ...: kinsim.dtypes.DTYPES); optional
              column, default bf16 (also for an empty cell); a name kinsim does not know is an error (it
              was silently priced as bf16)
    flops     floating-point operations of one run
    bytes     HBM bytes of one run (read plus written)
    time_s    median time of one run, seconds

and the shape columns that give a kernel's structure (batch, context, q_heads, kv_heads, head_dim, tokens,
m, n, k, gpus), read by :mod:`kinsim.calibration.rows`; ``warm_l2`` (0 or 1) marks rows timed without
flushing L2 between replays. ``DIR/metadata.json``:
device name, driver, library versions, date, and the two ceilings measured on the device
(``copy_bandwidth`` B/s, ``gemm_flop_rate`` FLOP/s), all optional.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from kinsim.dtypes import DTYPES
from kinsim.errors import SpecError
from kinsim.hardware.spec import CALIBRATED_KERNELS
from kinsim.reading import read_json, read_text

REQUIRED_COLUMNS = ("kernel", "flops", "bytes", "time_s")
#: Kinds a measurement row may have: the calibrated kernel kinds and the all-reduce (``impl``: nccl or custom).
MEASURED_KINDS = (*CALIBRATED_KERNELS, "allreduce")
MEASUREMENTS = "measurements.csv"
METADATA = "metadata.json"


def read_measurements(directory: str | Path):
    """The measurements of ``directory`` as a pandas DataFrame, checked row by row."""
    import pandas as pd

    directory = Path(directory)
    path = directory / MEASUREMENTS
    if not os.path.lexists(path):
        raise SpecError("measurement file not found", file=str(path),
                        hint="a directory written by kinsim calibrate measure")
    text = read_text(path, "csv")
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
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
    frame["dtype"] = frame["dtype"].fillna("bf16")  # an empty cell is the documented default, a wrong name an error
    path_s = str(path)
    _check_names(frame, "kernel", MEASURED_KINDS, path_s)
    _check_names(frame, "dtype", DTYPES, path_s)
    if "kv_dtype" in frame.columns:  # an fp8 KV cache selects its own curves: a misspelt one would not
        _check_names(frame, "kv_dtype", DTYPES, path_s, frame["kv_dtype"].notna())
    _check_names(frame, "impl", ALLREDUCE_IMPLS, path_s, frame["kernel"] == "allreduce")
    for column, rule, least in (("flops", "must be a number, zero or more", 0.0),
                                ("bytes", "must be a number, zero or more", 0.0),
                                ("time_s", "must be a positive number of seconds", None)):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        wrong = ~np.isfinite(values) | ((values < least) if least is not None else (values <= 0))
        if wrong.any():
            index = int(np.flatnonzero(wrong)[0])  # the header is line 1
            raise SpecError(rule, path=f"row {index + 2}.{column}", value=frame[column].iloc[index], file=path_s)
        frame[column] = values
    allreduce = frame["kernel"] == "allreduce"
    if allreduce.any():
        if "gpus" not in frame.columns:
            raise SpecError("missing column", path="gpus", file=path_s, hint="all-reduce rows need gpus")
        gpus = pd.to_numeric(frame.loc[allreduce, "gpus"], errors="coerce").to_numpy(dtype=float)
        wrong = ~np.isfinite(gpus) | (gpus < 1) | (gpus != np.round(gpus))
        if wrong.any():
            index = int(np.flatnonzero(allreduce.to_numpy())[np.flatnonzero(wrong)[0]])
            raise SpecError("must be a whole number of GPUs, at least 1", path=f"row {index + 2}.gpus",
                            value=frame["gpus"].iloc[index], file=path_s)
    return frame


#: The all-reduce implementations a measurement row may name (``impl`` of ``allreduce`` rows).
ALLREDUCE_IMPLS = ("nccl", "custom")


def _check_names(frame, column: str, allowed: tuple[str, ...], file: str, rows=None) -> None:
    """A :class:`SpecError` naming the file, the row (the header is row 1) and the column of the first cell of
    ``column`` (among ``rows``, a boolean mask) that is not one of ``allowed``."""
    bad = ~frame[column].isin(allowed)
    if rows is not None:
        bad &= rows
    if bad.any():
        index = int(np.flatnonzero(bad.to_numpy())[0])
        value = frame[column].iloc[index]
        raise SpecError("must be one of " + ", ".join(allowed), path=f"row {index + 2}.{column}",
                        value=None if value != value else value, file=file)  # NaN: an empty cell


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """``DIR/metadata.json`` as a dict (empty when absent)."""
    path = Path(directory) / METADATA
    if not os.path.lexists(path):
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise SpecError("expected a JSON object", file=str(path))
    return data
