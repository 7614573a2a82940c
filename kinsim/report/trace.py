"""A run as a Chrome Trace Event file, which Perfetto (ui.perfetto.dev) and chrome://tracing open.

Layout:

* one process per GPU, with a track for its compute units, one for its HBM and one per link it drives;
  each step (or run of decode steps with the same batch) is a slice on each, whose ``busy`` argument is
  the share of the slice that resource is busy;
* one process per replica: a ``steps`` track with a slice per step or decode run, counters (batch size,
  prompt tokens per step, tokens in flight, KV occupancy, output tokens/s), and each request's lifecycle
  as async slices (``request`` with ``waiting``, ``prefill`` and ``decode`` inside);
* with op records (``kinsim run --trace-ops``, inside ``--trace-window``), a ``kernels`` track per GPU
  with one slice per kind of kernel per step.

Consecutive decode steps of one replica with the same batch are drawn as one slice, so the file has the
same size whether the run used fast-forward or exact steps. Timestamps are microseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kinsim import __version__
from kinsim.engine.records import Records, SegmentTable
from kinsim.engine.request_records import RequestRecords
from kinsim.engine.sequence import FINISHED
from kinsim.files import write_text_atomically

US = 1e6
REPLICA_PID = 100_000  # replica processes follow the GPU processes


#: What a step slice of the trace reads from a segment.
_KEYS = ("replica", "start_s", "end_s", "steps", "decode_seqs", "prefill_tokens", "tokens_out", "kv_block_s",
         "kv_peak_blocks", "compute_s", "memory_s", "network_s")


def _merged(segments: SegmentTable, window: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """Segments with consecutive decode-only steps of one replica and one batch size merged; with a
    ``window`` (seconds), only the merged slices that overlap it.

    The window is applied to the columns first: a run of merged segments is kept whole when any of it
    overlaps the window, so the slices are the same as without one, and only their rows are read."""
    rows = None
    if window is not None and len(segments):
        rows = np.flatnonzero(_runs_overlapping(segments, window))
    values = [segments.column(key) if rows is None else segments.column(key)[rows] for key in _KEYS]
    merged: list[dict[str, Any]] = []
    last: dict[int, dict[str, Any]] = {}
    for row in zip(*(v.tolist() for v in values)):
        seg = dict(zip(_KEYS, row))
        prev = last.get(seg["replica"])
        if (prev is not None and seg["prefill_tokens"] == 0 and prev["prefill_tokens"] == 0
                and prev["decode_seqs"] == seg["decode_seqs"] and prev["end_s"] == seg["start_s"]):
            prev["end_s"] = seg["end_s"]
            for key in ("steps", "tokens_out", "kv_block_s", "compute_s", "memory_s", "network_s"):
                prev[key] += seg[key]
            prev["kv_peak_blocks"] = max(prev["kv_peak_blocks"], seg["kv_peak_blocks"])
            continue
        merged.append(seg)
        last[seg["replica"]] = seg
    return merged


def _runs_overlapping(segments: SegmentTable, window: tuple[float, float]) -> np.ndarray:
    """Per segment: whether the run :func:`_merged` puts it in overlaps ``window``. A segment continues the
    run of its replica's previous segment when both are decode-only with the same batch and it starts
    where that one ended."""
    column = segments.column
    order = np.argsort(column("replica"), kind="stable")  # each replica's segments, in record order
    replica, start, end = column("replica")[order], column("start_s")[order], column("end_s")[order]
    prefill, decode = column("prefill_tokens")[order], column("decode_seqs")[order]
    joins = np.zeros(len(order), dtype=bool)
    joins[1:] = ((replica[1:] == replica[:-1]) & (prefill[1:] == 0) & (prefill[:-1] == 0)
                 & (decode[1:] == decode[:-1]) & (start[1:] == end[:-1]))
    first = np.flatnonzero(~joins)  # each run's first segment
    last = np.append(first[1:] - 1, len(order) - 1)
    overlaps = (end[last] >= window[0]) & (start[first] <= window[1])
    keep = np.empty(len(order), dtype=bool)
    keep[order] = overlaps[np.cumsum(~joins) - 1]
    return keep


def _in_window(start: float, end: float, window: tuple[float, float] | None) -> bool:
    return window is None or (end >= window[0] and start <= window[1])


def chrome_trace(records: Records, summary: dict[str, Any], window: tuple[float, float] | None = None) -> dict:
    """The trace of a run as a JSON-ready dict. ``window`` (seconds) keeps only what overlaps it."""
    if not isinstance(records.segments, SegmentTable) or not isinstance(records.sequences, RequestRecords):
        raise ValueError("a timeline needs every step and request: rerun with --records full")
    events: list[dict[str, Any]] = []
    meta: list[dict[str, Any]] = []
    gpu_pid: dict[str, int] = {}
    link_tid: dict[tuple[int, str], int] = {}
    block_bytes = summary["kv"]["capacity_bytes"] / max(summary["kv"]["capacity_blocks"], 1)

    def name_process(pid: int, name: str, sort: int) -> None:
        meta.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}})
        meta.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": sort}})

    def name_thread(pid: int, tid: int, name: str) -> None:
        meta.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})

    for r, gpus in enumerate(records.replica_gpus):
        for gpu in gpus:
            pid = len(gpu_pid) + 1
            gpu_pid[gpu] = pid
            name_process(pid, f"GPU {gpu} (replica {r})", pid)
            name_thread(pid, 1, "compute")
            name_thread(pid, 2, "HBM")
            name_thread(pid, 3, "kernels")
            for link in records.replica_links[r]:
                if link.startswith(f"{gpu}->"):
                    tid = 4 + sum(1 for key in link_tid if key[0] == pid)
                    link_tid[(pid, link)] = tid
                    name_thread(pid, tid, f"link {link}")
        rpid = REPLICA_PID + r
        name_process(rpid, f"replica {r}", rpid)
        name_thread(rpid, 1, "steps")

    for seg in _merged(records.segments, window):
        start, end = seg["start_s"], seg["end_s"]
        if not _in_window(start, end, window):
            continue
        ts, dur = start * US, (end - start) * US
        span = max(end - start, 1e-30)
        r = seg["replica"]
        rpid = REPLICA_PID + r
        kind = "prefill+decode" if seg["prefill_tokens"] else "decode"
        events.append({"ph": "X", "name": kind, "cat": "step", "pid": rpid, "tid": 1, "ts": ts, "dur": dur,
                       "args": {"steps": seg["steps"], "decode_seqs": seg["decode_seqs"],
                                "prefill_tokens": seg["prefill_tokens"], "tokens_out": seg["tokens_out"]}})
        counters = {
            "batch": {"decode_seqs": seg["decode_seqs"],
                      "prefill_tokens_per_step": seg["prefill_tokens"] / seg["steps"]},
            "tokens in flight": {"kv_tokens": seg["kv_block_s"] / span * summary["kv"]["block_tokens"]},
            "KV cache (GB)": {"mean": seg["kv_block_s"] / span * block_bytes / 1e9,
                              "peak": seg["kv_peak_blocks"] * block_bytes / 1e9},
            "output tokens/s": {"rate": seg["tokens_out"] / span},
        }
        for name, args in counters.items():
            events.append({"ph": "C", "name": name, "pid": rpid, "tid": 0, "ts": ts, "args": args})
        for gpu in records.replica_gpus[r]:
            pid = gpu_pid[gpu]
            events.append({"ph": "X", "name": kind, "cat": "compute", "pid": pid, "tid": 1, "ts": ts, "dur": dur,
                           "args": {"busy": min(seg["compute_s"] / span, 1.0)}})
            events.append({"ph": "X", "name": kind, "cat": "hbm", "pid": pid, "tid": 2, "ts": ts, "dur": dur,
                           "args": {"busy": min(seg["memory_s"] / span, 1.0)}})
            if seg["network_s"] > 0:
                for (lpid, _link), tid in link_tid.items():
                    if lpid == pid:
                        events.append({"ph": "X", "name": "collectives", "cat": "link", "pid": pid, "tid": tid,
                                       "ts": ts, "dur": dur, "args": {"busy": min(seg["network_s"] / span, 1.0)}})

    for op in records.ops:
        if not _in_window(op.start_s, op.start_s + op.duration_s, window):
            continue
        for gpu in records.replica_gpus[op.replica]:
            events.append({"ph": "X", "name": op.name, "cat": op.op_class, "pid": gpu_pid[gpu], "tid": 3,
                           "ts": op.start_s * US, "dur": op.duration_s * US, "args": {"count": op.count}})

    for seq in records.sequences:
        end = seq.finish_s if seq.finish_s is not None else seq.arrival_s
        if seq.replica < 0 or not _in_window(seq.arrival_s, end, window):
            continue
        pid, ident = REPLICA_PID + seq.replica, seq.order
        phases = [("waiting", seq.arrival_s, seq.admitted_s), ("prefill", seq.admitted_s, seq.first_token_s),
                  ("decode", seq.first_token_s, seq.finish_s if seq.state == FINISHED else None)]
        args = {"request_id": seq.request.request_id, "group": seq.request.group_id, "state": seq.state,
                "prompt_tokens": seq.request.prompt_tokens, "output_tokens": seq.request.output_tokens,
                "generated": seq.generated, "preemptions": seq.preemptions}
        if seq.reason:
            args["reason"] = seq.reason
        events.append({"ph": "b", "name": "request", "cat": "request", "id": ident, "pid": pid, "tid": 0,
                       "ts": seq.arrival_s * US, "args": args})
        for name, begin, finish in phases:
            if begin is not None and finish is not None:
                events.append({"ph": "b", "name": name, "cat": "request", "id": ident, "pid": pid, "tid": 0,
                               "ts": begin * US})
                events.append({"ph": "e", "name": name, "cat": "request", "id": ident, "pid": pid, "tid": 0,
                               "ts": finish * US})
        events.append({"ph": "e", "name": "request", "cat": "request", "id": ident, "pid": pid, "tid": 0,
                       "ts": end * US})

    events.sort(key=lambda e: e["ts"])  # stable: nested async slices keep their begin/end order
    return {
        "traceEvents": meta + events,
        "displayTimeUnit": "ms",
        "otherData": {"kinsim": __version__, "workload": summary["workload"], "hardware": summary["hardware"],
                      "window_s": list(window) if window else None},
    }


def write_trace(path: str | Path, records: Records, summary: dict[str, Any],
                window: tuple[float, float] | None = None) -> Path:
    """Write :func:`chrome_trace` to ``path`` (compact JSON); return the path."""
    return write_text_atomically(path, json.dumps(chrome_trace(records, summary, window), separators=(",", ":")))
