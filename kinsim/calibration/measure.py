"""``kinsim calibrate measure``: time the reference kernels over a grid of shapes on one GPU.

Run on the GPU machine (which needs torch, Triton, numpy and pyyaml, not SimPy or pandas)::

    python -m kinsim.calibration.measure --out DIR [--quick]

Each shape is timed with ``triton.testing.do_bench`` (median of repeated runs after warm-up), on random
inputs, rotating over enough copies of the data that each run reads it from HBM, not from L2. FLOPs and
HBM bytes per shape come from kinsim's own operator formulas (:mod:`kinsim.ops`), so a measured row and
the op kinsim prices for it describe the same work. Output: ``DIR/measurements.csv`` (the columns of
:mod:`kinsim.calibration.measurements`, plus shape columns) and ``DIR/metadata.json`` (device, driver,
versions, date, L2 size, the measured copy bandwidth and bf16 GEMM rate). The default grid takes a few
minutes on an H200 (well under 8); ``--quick`` under one.

``--cpu-smoke`` runs a tiny grid in Triton's interpreter on the CPU with a wall-clock timer: it checks the
harness end to end (the tests use it), its times mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: Qwen3 attention heads per GPU at TP 1: (query heads, KV heads), head dimension 128.
QWEN3_HEADS = ((16, 8), (32, 8), (40, 8), (64, 8))
#: Qwen3-8B and Qwen3-32B projection shapes (N, K) and the LM head.
GEMM_SHAPES = ((6144, 4096), (4096, 4096), (24576, 4096), (4096, 12288), (151936, 4096),
               (10240, 5120), (51200, 5120), (5120, 25600))
PAGE = 16
TOP_K = 64  # blocks (pages) kept by block top-k, plus one local page
#: Most bytes of KV cache one shape may use (leaves room for rotation copies on a 141 GB H200).
KV_BUDGET = 24e9


def grid(quick: bool) -> dict[str, list[dict]]:
    """The shapes to measure, per kernel kind."""
    batches = (1, 16, 256) if quick else (1, 4, 16, 64, 256, 1024)
    contexts = (2048, 16384, 131072) if quick else (128, 512, 2048, 8192, 32768, 131072)
    heads = ((32, 8),) if quick else QWEN3_HEADS
    dense = [{"batch": b, "context": c, "q_heads": q, "kv_heads": kv, "head_dim": 128}
             for q, kv in heads for b in batches for c in contexts if b * c * kv * 128 * 4 <= KV_BUDGET]
    sparse = [{"batch": b, "context": c, "q_heads": q, "kv_heads": kv, "head_dim": 128, "top_k": TOP_K}
              for q, kv in heads if q in (32, 64) for b in batches[:4] for c in contexts if c >= 2 * TOP_K * PAGE
              if b * c * kv * 128 * 4 <= KV_BUDGET]
    ms = (1, 64, 4096) if quick else (1, 16, 64, 256, 1024, 4096, 16384)
    shapes = GEMM_SHAPES[:3] if quick else GEMM_SHAPES
    gemm = [{"m": m, "n": n, "k": k} for n, k in shapes for m in ms]
    return {"attention_decode": dense, "attention_sparse": sparse, "gemm": gemm}


def cpu_smoke_grid() -> dict[str, list[dict]]:
    return {
        "attention_decode": [{"batch": b, "context": c, "q_heads": 8, "kv_heads": 2, "head_dim": 32}
                             for b in (1, 2) for c in (16, 40, 64)],
        "attention_sparse": [{"batch": b, "context": c, "q_heads": 8, "kv_heads": 2, "head_dim": 32, "top_k": 2}
                             for b in (1, 2) for c in (64, 96, 128)],
        "gemm": [{"m": m, "n": n, "k": 32} for m in (1, 8, 16) for n in (32, 64)],
    }


# ------------------------------------------------------------------------------------------ work
def attention_work(kernel: str, shape: dict, kv_dtype: str = "bf16") -> list[tuple[str, float, float]]:
    """(kernel kind, FLOPs, bytes) rows of one attention shape, from kinsim's operator formulas. A sparse
    shape yields two rows: the selection (scores and top-k) and the sparse attention."""
    import numpy as np

    from kinsim.ops.attention import AttentionDims, decode_attention_ops
    from kinsim.ops.sharding import HeadShard
    from kinsim.workload.spec import BlockTopKAttention, DenseAttention

    dims = AttentionDims(HeadShard(shape["q_heads"], shape["kv_heads"], shape["head_dim"], 1), kv_dtype=kv_dtype,
                         act_dtype=kv_dtype)
    context = np.full(shape["batch"], shape["context"] - 1.0)  # tokens cached before the new one
    if kernel == "attention_decode":
        policy = DenseAttention()
    else:
        policy = BlockTopKAttention(block_size=PAGE, top_k=shape["top_k"], local_window=PAGE)
    return [(op.kernel, float(op.flops), float(op.bytes)) for op in decode_attention_ops(dims, policy, context)]


def gemm_work(shape: dict) -> tuple[float, float]:
    from kinsim.ops.layers import gemm_op

    op = gemm_op("gemm", shape["m"], shape["n"], shape["k"], weight_dtype="bf16")
    return float(op.flops), float(op.bytes)


def dtype_name(dtype) -> str:
    """kinsim's name of a torch data type."""
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(str(dtype).split(".")[-1], str(dtype))


# ------------------------------------------------------------------------------------------ timing
def copies_for(working_set: float, l2_bytes: float, memory_left: float) -> int:
    """Copies of the data to rotate over so that each run misses L2 (at least 4x L2 in all), within
    memory."""
    wanted = max(1, math.ceil(4 * l2_bytes / max(working_set, 1.0)))
    return int(max(1, min(wanted, 16, memory_left // max(working_set, 1.0))))


class Timer:
    """``do_bench`` on a GPU; a median of wall-clock runs in the CPU smoke test."""

    def __init__(self, cpu: bool) -> None:
        self.cpu = cpu

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cpu:
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - start)
            return statistics.median(runs)
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3


def rotating(builders: list) -> Callable[[], object]:
    """A function that runs the next of ``builders`` each call."""
    state = {"i": 0}

    def run():
        fn = builders[state["i"] % len(builders)]
        state["i"] += 1
        return fn()

    return run


# ------------------------------------------------------------------------------------------ measuring
def measure_attention(kernel: str, shape: dict, device, dtype, timer: Timer, l2: float, free: float) -> list[dict]:
    import torch

    from kinsim.calibration.kernels.attention import (
        block_topk_decode_attention,
        page_scores,
        page_summaries,
        paged_decode_attention,
    )

    b, c, hq, hkv, d = (shape[k] for k in ("batch", "context", "q_heads", "kv_heads", "head_dim"))
    pages_per_seq = -(-c // PAGE)
    kv_bytes = 2 * b * pages_per_seq * PAGE * hkv * d * torch.tensor([], dtype=dtype).element_size()
    copies = copies_for(kv_bytes, l2, free)
    pages = b * pages_per_seq * copies
    k_cache = torch.randn(pages, PAGE, hkv, d, device=device, dtype=dtype)
    v_cache = torch.randn(pages, PAGE, hkv, d, device=device, dtype=dtype)
    lens = torch.full((b,), c, dtype=torch.int32, device=device)
    order = torch.randperm(pages, device=device).to(torch.int32)
    tables = [order[i * b * pages_per_seq:(i + 1) * b * pages_per_seq].reshape(b, pages_per_seq).contiguous()
              for i in range(copies)]
    q = torch.randn(b, hq, d, device=device, dtype=dtype)
    rows = []
    if kernel == "attention_decode":
        run = rotating([lambda t=t: paged_decode_attention(q, k_cache, v_cache, t, lens) for t in tables])
        (kind, flops, nbytes), = attention_work(kernel, shape)
        rows.append({"kernel": kind, "time_s": timer(run), "flops": flops, "bytes": nbytes})
    else:
        summaries = page_summaries(k_cache)
        work = {kind: (flops, nbytes) for kind, flops, nbytes in attention_work(kernel, shape)}
        total = timer(rotating([lambda t=t: block_topk_decode_attention(q, k_cache, v_cache, t, lens, summaries,
                                                                        shape["top_k"]) for t in tables]))
        # The selection alone: scores and top-k (the sparse attention is the rest of the pipeline).
        selection = timer(rotating([lambda t=t: page_scores(q, summaries, t, lens, shape["top_k"], page_size=PAGE)
                                    for t in tables]))
        rows.append({"kernel": "selection", "time_s": selection, "flops": work["selection"][0],
                     "bytes": work["selection"][1]})
        rows.append({"kernel": "attention_sparse", "time_s": max(total - selection, 1e-9),
                     "flops": work["attention_sparse"][0], "bytes": work["attention_sparse"][1]})
    for row in rows:
        row.update(shape, impl="triton", dtype=dtype_name(dtype))
    return rows


def measure_gemm(shape: dict, device, dtype, timer: Timer, l2: float, free: float) -> list[dict]:
    import torch

    from kinsim.calibration.kernels.gemm import gemm

    m, n, k = shape["m"], shape["n"], shape["k"]
    size = torch.tensor([], dtype=dtype).element_size()
    copies = copies_for(size * (m * k + k * n), l2, free)
    a = [torch.randn(m, k, device=device, dtype=dtype) for _ in range(copies)]
    w = [torch.randn(k, n, device=device, dtype=dtype) for _ in range(copies)]
    flops, nbytes = gemm_work(shape)
    label = dtype_name(dtype)
    rows = []
    for impl, fn in (("triton", gemm), ("torch.matmul", torch.matmul)):
        run = rotating([lambda i=i, fn=fn: fn(a[i], w[i]) for i in range(copies)])
        rows.append({"kernel": "gemm", "impl": impl, "dtype": label, "time_s": timer(run), "flops": flops,
                     "bytes": nbytes, **shape})
    return rows


def ceilings(device, timer: Timer) -> dict[str, float]:
    """Device-to-device copy bandwidth (B/s, read plus write) and a large bf16 GEMM rate (FLOP/s)."""
    import torch

    size = 2 * 2**30
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy = timer(lambda: dst.copy_(src))
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    matmul = timer(lambda: torch.matmul(a, b))
    return {"copy_bandwidth": 2 * size / copy, "gemm_flop_rate": 2 * n**3 / matmul}


COLUMNS = ("kernel", "impl", "dtype", "flops", "bytes", "time_s", "batch", "context", "q_heads", "kv_heads",
           "head_dim", "top_k", "m", "n", "k")


def run(out: Path, quick: bool, cpu_smoke: bool, log=print) -> Path:
    """Measure the grid into ``out``; return the measurements file."""
    if cpu_smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch
    import triton

    if cpu_smoke:
        device, dtype, l2, free = torch.device("cpu"), torch.float16, 0.0, 1e9
        shapes = cpu_smoke_grid()
        name, driver = "CPU (Triton interpreter; smoke test, times mean nothing)", "none"
    else:
        if not torch.cuda.is_available():
            from kinsim.errors import KinsimError

            raise KinsimError("calibrate measure: no CUDA GPU is visible (use --cpu-smoke to test the harness)")
        device, dtype = torch.device("cuda"), torch.bfloat16
        props = torch.cuda.get_device_properties(device)
        l2, free = float(getattr(props, "L2_cache_size", 50 * 2**20)), float(torch.cuda.mem_get_info()[0]) * 0.5
        shapes = grid(quick)
        name, driver = torch.cuda.get_device_name(device), f"CUDA {torch.version.cuda}"
    timer = Timer(cpu_smoke)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[dict] = []
    total = sum(len(v) for v in shapes.values())
    done = 0
    for kernel, entries in shapes.items():
        for shape in entries:
            if kernel == "gemm":
                rows += measure_gemm(shape, device, dtype, timer, l2, free)
            else:
                rows += measure_attention(kernel, shape, device, dtype, timer, l2, free)
            done += 1
            if done % 10 == 0 or done == total:
                log(f"{done}/{total} shapes, {time.perf_counter() - started:.0f} s")
    meta = {"device": name, "driver": driver, "torch": torch.__version__, "triton": triton.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "l2_bytes": l2, "grid": "cpu-smoke" if cpu_smoke else ("quick" if quick else "default"),
            "seconds": round(time.perf_counter() - started, 1), "page_size": PAGE}
    if not cpu_smoke:
        meta.update(ceilings(device, timer))
    path = out / "measurements.csv"
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinsim calibrate measure", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    from kinsim.errors import KinsimError
    from kinsim.outputs import Outputs

    try:
        with Outputs() as outputs:  # all or nothing: a failed measurement leaves no folder
            out = outputs.directory("--out", args.out)
            outputs.write("--out", lambda directory: run(directory, args.quick, args.cpu_smoke))
    except KinsimError as error:  # as the kinsim command does: one line, exit 2
        print(f"kinsim: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'measurements.csv'}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for measurements.csv and metadata.json")
    parser.add_argument("--quick", action="store_true", help="a small grid (under a minute on an H200)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny grid in Triton's interpreter on the CPU, to test the harness (times mean nothing)")


if __name__ == "__main__":
    sys.exit(main())
