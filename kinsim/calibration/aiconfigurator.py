"""Importing public silicon measurements: the tables of the ``aiconfigurator-core`` package (Apache-2.0).

``kinsim calibrate import aiconfigurator --system SYSTEM --framework vllm [--version V] --out DIR``
converts one system's tables into kinsim's measurement format (:mod:`kinsim.calibration.measurements`),
so that ``kinsim calibrate fit`` and ``validate`` read them like measurements of kinsim's own kernels.
The package is read at run time (``pip install kinsim[aic]``); nothing of it is copied into kinsim.

Layout read: ``<data>/<system>/<op>/<framework>/<version>/<table>.parquet`` with ``<data>`` the
package's ``systems/data`` folder (or ``--data DIR`` in the same layout). Tables and their conversion:

=============================== ================= ===========================================================
table                           kernel kind       rows kept, and how kinsim describes them
=============================== ================= ===========================================================
generation_attention_perf       attention_decode  dense (window 0); ``step`` tokens cached, so the kernel
                                                  attends over ``context`` = step + 1 (the column's meaning
                                                  in kinsim's own measurements); the time includes the
                                                  KV-cache write
context_attention_perf          attention_prefill dense; ``batch_size`` prompts of ``isl`` tokens, none cached
gemm_perf                       gemm              bf16 (``torch.nn.functional.linear``) and per-tensor fp8
comm/nccl/<v>/nccl_perf         allreduce (nccl)  ``all_reduce`` in half precision; ``message_size`` counts
                                                  elements (2 bytes each)
comm/<fw>/<v>/custom_allreduce  allreduce         the CUDA-graph rows (``*_graph``), as serving engines
                                (custom)          replay them; ``message_size`` counts bf16 elements
moe/<fw>/<v>/moe_perf           moe               the fused routed experts of an MoE layer on one GPU,
                                                  bf16 and fp8 weights, tokens spread evenly over the
                                                  experts (``balanced``): ``num_tokens`` tokens choosing
                                                  ``topk`` of ``num_experts``, split ``moe_tp_size`` x
                                                  ``moe_ep_size`` ways; ``m`` the GPU's token-expert
                                                  pairs, ``n`` its share of the expert width, ``k`` the
                                                  hidden size, ``experts`` the experts it computes;
                                                  non-gated experts (``*nongated*`` kernels) dropped
quantize/<fw>/<v>/scale_matrix  elementwise       fp8 quantization of an ``m x k`` bf16 activation with a
                                                  static scale: a streaming kernel reading 2 bytes and
                                                  writing 1 per element, the kernel an fp8 GEMM's input
                                                  passes through (:func:`kinsim.ops.layers.quantize_op`);
                                                  timed like the attention rows (``warm_l2 = 1``)
=============================== ================= ===========================================================

FLOPs and bytes of every row come from kinsim's own operator formulas, so a row describes the work that
kinsim prices. Repeated rows are dropped (some tables repeat each row). Times are converted from ms to s.
The attention and quantization tables were timed inside a CUDA graph without flushing L2 between
replays: their rows carry ``warm_l2 = 1`` so the fitter knows that a working set smaller than L2 was read
from L2. Each op defaults
to the newest version of the framework that has its table; every version and table path is recorded in
``metadata.json``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from kinsim.errors import SpecError
from kinsim.ops.attention import AttentionDims, PrefillChunk, decode_attention_ops, prefill_attention_op
from kinsim.ops.layers import gemm_op, moe_experts_op, quantize_op
from kinsim.ops.sharding import HeadShard
from kinsim.reading import checked_file
from kinsim.workload.spec import DenseAttention

PACKAGE = "aiconfigurator-core"
MODULE = "aiconfigurator_core"
FRAMEWORKS = ("vllm", "sglang", "trtllm")
#: KV-cache types of the tables (``kv_cache_dtype``) and kinsim's names for them.
KV_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8"}
_GEMM_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8"}


def package_data_dir() -> tuple[Path, str]:
    """(the package's ``systems/data`` folder, the package version); a clear error when not installed."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(f"the {PACKAGE} package is not installed", path="aiconfigurator",
                        hint="pip install 'kinsim[aic]', or give --data DIR in the package's layout")
    root = Path(next(iter(spec.submodule_search_locations)))
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version(PACKAGE)
    except PackageNotFoundError:
        package_version = "unknown"
    return root / "systems" / "data", package_version


def version_key(name: str) -> tuple:
    """Sort key of a version folder name (``0.24.0`` after ``0.14.0``, ``1.3.0rc20`` after ``1.3.0rc5``)."""
    return tuple(int(part) if part.isdigit() else -1 for part in re.findall(r"\d+|[a-z]+", name.lower()))


@dataclass(frozen=True)
class TableChoice:
    """One table to read: which op folder, framework folder and file."""

    op: str
    framework: str
    table: str


def find_table(data: Path, system: str, choice: TableChoice, version: str | None) -> Path | None:
    """The table file for ``choice`` at ``version`` (default: the newest version that has it)."""
    return next(iter(table_versions(data, system, choice, version)), None)


def table_versions(data: Path, system: str, choice: TableChoice, version: str | None) -> list[Path]:
    """The table files for ``choice``, newest version first (only ``version``'s when given)."""
    folder = data / system / choice.op / choice.framework
    if not folder.is_dir():
        return []
    versions = [version] if version else sorted((p.name for p in folder.iterdir() if p.is_dir()), key=version_key,
                                                  reverse=True)
    return [path for path in (folder / name / f"{choice.table}.parquet" for name in versions) if path.is_file()]


def _read_table(path: Path):
    import pandas as pd

    checked_file(path, "parquet")
    try:
        frame = pd.read_parquet(path)
    except ImportError as error:
        raise SpecError(f"reading Parquet needs pyarrow ({error})", file=str(path),
                        hint="pip install 'kinsim[aic]'") from None
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise SpecError(f"not a readable Parquet table ({type(error).__name__}: {error})", file=str(path)) from None
    return frame.drop_duplicates().reset_index(drop=True)


def _need(frame, path: Path, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SpecError("missing columns " + ", ".join(missing), file=str(path),
                        hint="a table in aiconfigurator-core's layout")


def _attention_rows(frame, path: Path, kernel: str, length: str, make_op) -> list[dict[str, Any]]:
    """Rows of an attention table: dense (window 0) rows in a KV-cache type kinsim knows, each priced by
    ``make_op(dims, batch, length) -> (op, shape columns)``."""
    _need(frame, path, ("batch_size", length, "num_heads", "num_key_value_heads", "head_dim", "latency"))
    if "window_size" in frame.columns:
        frame = frame[frame["window_size"] == 0]
    rows = []
    for r in frame.itertuples(index=False):
        kv_dtype = KV_DTYPES.get(str(getattr(r, "kv_cache_dtype", "bfloat16")))
        if kv_dtype is None:
            continue
        q_heads, kv_heads, head_dim = int(r.num_heads), int(r.num_key_value_heads), int(r.head_dim)
        dims = AttentionDims(HeadShard(q_heads, kv_heads, head_dim, 1), kv_dtype=kv_dtype)
        op, shape = make_op(dims, int(r.batch_size), int(getattr(r, length)))
        rows.append({"kernel": kernel, "impl": str(getattr(r, "kernel_source", "unknown")), "dtype": "bf16",
                     "flops": float(op.flops), "bytes": float(op.bytes), "bytes_read": float(op.bytes_read),
                     "time_s": float(r.latency) * 1e-3, "warm_l2": 1, "batch": int(r.batch_size), **shape,
                     "q_heads": q_heads, "kv_heads": kv_heads, "head_dim": head_dim, "kv_dtype": kv_dtype})
    return rows


def _decode_rows(frame, path: Path) -> list[dict[str, Any]]:
    def make_op(dims, batch, step):  # ``step`` tokens cached: the kernel attends over step + 1
        return decode_attention_ops(dims, DenseAttention(), np.full(batch, float(step)))[0], {"context": step + 1}

    return _attention_rows(frame, path, "attention_decode", "step", make_op)


def _prefill_rows(frame, path: Path) -> list[dict[str, Any]]:
    def make_op(dims, batch, isl):  # ``batch`` prompts of ``isl`` tokens, none cached
        return prefill_attention_op(dims, DenseAttention(), [PrefillChunk(isl, 0)] * batch), {"tokens": isl}

    return _attention_rows(frame, path, "attention_prefill", "isl", make_op)


def _gemm_rows(frame, path: Path) -> list[dict[str, Any]]:
    _need(frame, path, ("m", "n", "k", "latency"))
    rows = []
    for r in frame.itertuples(index=False):
        dtype = _GEMM_DTYPES.get(str(getattr(r, "gemm_dtype", "bfloat16")))
        if dtype is None:
            continue
        m, n, k = int(r.m), int(r.n), int(r.k)
        op = gemm_op("gemm", m, n, k, weight_dtype=dtype)
        rows.append({"kernel": "gemm", "impl": str(getattr(r, "kernel_source", "unknown")), "dtype": dtype,
                     "flops": float(op.flops), "bytes": float(op.bytes), "bytes_read": float(op.bytes_read),
                     "time_s": float(r.latency) * 1e-3, "warm_l2": 0, "m": m, "n": n, "k": k})
    return rows


def _allreduce_rows(frame, path: Path, impl: str) -> list[dict[str, Any]]:
    _need(frame, path, ("num_gpus", "message_size", "latency"))
    if "op_name" in frame.columns:
        frame = frame[frame["op_name"] == "all_reduce"]
    if impl == "nccl" and "nccl_dtype" in frame.columns:
        frame = frame[frame["nccl_dtype"] == "half"]
    if impl == "custom" and "kernel_source" in frame.columns:
        frame = frame[frame["kernel_source"].astype(str).str.contains("graph")]
    return [{"kernel": "allreduce", "impl": impl, "dtype": "bf16", "flops": 0.0,
             "bytes": float(r.message_size) * 2.0, "bytes_read": float(r.message_size) * 2.0,
             "time_s": float(r.latency) * 1e-3, "warm_l2": 0, "gpus": int(r.num_gpus)}
            for r in frame.itertuples(index=False)]


#: MoE weight types of the tables and kinsim's (fp8 with block scales has fp8's bytes and tensor-core rate;
#: w4a16_mxfp4, gpt-oss's experts, MXFP4 weights with bf16 activations).
_MOE_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8", "fp8_block": "fp8",
               "w4a16_mxfp4": "mxfp4"}


def _moe_rows(frame, path: Path) -> list[dict[str, Any]]:
    _need(frame, path, ("num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
                        "moe_ep_size", "latency"))
    if "distribution" in frame.columns:
        frame = frame[frame["distribution"] == "balanced"]
    if "kernel_source" in frame.columns:  # kinsim's experts are gated MLPs (gate and up, then down)
        frame = frame[~frame["kernel_source"].astype(str).str.contains("nongated")]
    rows = []
    for r in frame.itertuples(index=False):
        dtype = _MOE_DTYPES.get(str(getattr(r, "moe_dtype", "bfloat16")))
        if dtype is None:
            continue
        tokens, topk, experts, ep = int(r.num_tokens), int(r.topk), int(r.num_experts), int(r.moe_ep_size)
        # balanced: the pairs are spread evenly, so min(pairs, experts) experts receive one
        local = min(tokens * topk, experts) / ep
        routed = tokens * topk / ep
        width = int(r.inter_size) / int(r.moe_tp_size)
        op = moe_experts_op("moe_experts", tokens, routed, local, width, int(r.hidden_size), pairs=tokens * topk,
                            weight_dtype=dtype)
        rows.append({"kernel": "moe", "impl": str(getattr(r, "kernel_source", "unknown")), "dtype": dtype,
                     "flops": float(op.flops), "bytes": float(op.bytes), "bytes_read": float(op.bytes_read),
                     "time_s": float(r.latency) * 1e-3, "warm_l2": 0, **op.shape})  # tokens, m, n, k, experts, pairs
    return rows


def _quantize_rows(frame, path: Path) -> list[dict[str, Any]]:
    _need(frame, path, ("m", "k", "latency"))
    if "quant_dtype" in frame.columns:
        frame = frame[frame["quant_dtype"] == "fp8"]
    rows = []
    for r in frame.itertuples(index=False):
        op = quantize_op("quantize", int(r.m) * int(r.k))
        rows.append({"kernel": "elementwise", "impl": str(getattr(r, "kernel_source", "unknown")), "dtype": "fp32",
                     "flops": float(op.flops), "bytes": float(op.bytes), "bytes_read": float(op.bytes_read),
                     "time_s": float(r.latency) * 1e-3, "warm_l2": 1, "m": int(r.m), "k": int(r.k)})
    return rows


Converter = Callable[[Any, Path], list[dict[str, Any]]]


def _tables(framework: str) -> list[tuple[TableChoice, Converter]]:
    return [
        (TableChoice("attention", framework, "generation_attention_perf"), _decode_rows),
        (TableChoice("attention", framework, "context_attention_perf"), _prefill_rows),
        (TableChoice("gemm", framework, "gemm_perf"), _gemm_rows),
        (TableChoice("comm", "nccl", "nccl_perf"), lambda f, p: _allreduce_rows(f, p, "nccl")),
        (TableChoice("comm", framework, "custom_allreduce_perf"), lambda f, p: _allreduce_rows(f, p, "custom")),
        (TableChoice("quantize", framework, "scale_matrix_perf"), _quantize_rows),
        (TableChoice("moe", framework, "moe_perf"), _moe_rows),
    ]


def import_tables(system: str, framework: str, out: str | Path, *, version: str | None = None,
                  data: str | Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Convert ``system``'s tables for ``framework`` into ``out/measurements.csv`` and ``metadata.json``;
    returns the metadata. ``version`` pins the framework version of the attention and GEMM tables (the
    NCCL, custom all-reduce, quantization and MoE tables keep their newest version with rows kinsim can
    use). It writes straight
    into ``out`` (made if missing); ``kinsim calibrate import`` hands it a temporary folder of
    :class:`kinsim.outputs.Outputs`, which puts the result in place all or nothing."""
    import pandas as pd

    from kinsim.calibration.measurements import MEASUREMENTS, METADATA
    if framework not in FRAMEWORKS:
        raise SpecError("must be one of " + ", ".join(FRAMEWORKS), path="framework", value=framework)
    if data is None:
        data_dir, package_version = package_data_dir()
    else:
        data_dir, package_version = Path(data), "local copy"
        if not data_dir.is_dir():
            raise SpecError("not a directory", path="data", value=str(data))
    if not (data_dir / system).is_dir():
        raise SpecError("no such system in the tables", path="system", value=system, file=str(data_dir),
                        hint="a folder name under systems/data, such as h100_sxm")
    rows: list[dict[str, Any]] = []
    tables = []
    for choice, convert in _tables(framework):
        pinned = version if choice.op in ("attention", "gemm") else None
        # the newest version with rows kinsim can use (TensorRT-LLM's newest MoE table holds only non-gated
        # experts, which it drops: an older one with gated experts serves)
        path, converted = None, []
        for path in table_versions(data_dir, system, choice, pinned):
            converted = convert(_read_table(path), path)
            if converted:
                break
        if path is None:
            continue
        rows += converted
        tables.append({"table": str(path.relative_to(data_dir)), "version": path.parent.name,
                       "framework": path.parent.parent.name, "rows": len(converted)})
        if progress:
            progress(f"{path.relative_to(data_dir)}: {len(converted)} rows")
    if not rows:
        raise SpecError("no tables found", path="system", value=f"{system}/{framework}", file=str(data_dir))
    frame = pd.DataFrame(rows)
    device = _device_name(data_dir, system)
    metadata = {"source": f"{PACKAGE} {package_version} (Apache-2.0), system {system}, framework {framework}",
                "device": device, "system": system, "framework": framework, "package": PACKAGE,
                "package_version": package_version, "tables": tables, "imported": date.today().isoformat(),
                "timing": "CUDA graph replays averaged, L2 not flushed (attention and quantization rows: "
                          "warm_l2 = 1)"}
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target / MEASUREMENTS, index=False)
    (target / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def _device_name(data_dir: Path, system: str) -> str:
    for path in sorted((data_dir / system).rglob("*.parquet"))[:1]:
        frame = _read_table(path)
        if "device" in frame.columns and len(frame):
            return str(frame["device"].iloc[0])
    return system
