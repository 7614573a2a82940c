"""Metrics of a run, computed from the engine's records only.

Conventions (see ``docs/metrics.md`` for each metric's formula):

* ``sim_time_s`` (makespan) is when the last request ended; throughputs divide by it.
* Throughput counts what was delivered: output tokens of finished requests (``tokens.delivered``). Tokens
  generated for requests that did not finish (``tokens.undelivered``) were work done for nothing; they
  count in ``tokens.generated`` (all tokens the engine produced) but in no throughput. With no finished
  request every throughput is 0.
* Latency percentiles are over finished requests (tasks: over completed tasks), linear interpolation
  between order statistics; ``null`` when there is nothing to measure.
* TTFT is first token minus arrival (it includes the serving frontend's time before the engine admits the
  request, ``frontend_s`` of the engine preset); TPOT is (finish - first token) / (output tokens - 1), for requests
  of at least two output tokens; e2e is finish minus arrival. A task's e2e runs from its first request's
  arrival to its last request's finish.
* ``breakdown_s`` sums step time per op class over replicas (replica-seconds; each GPU of a
  tensor-parallel group spends the same time).
* Utilisation averages over the deployment's GPUs and the makespan: ``compute`` is FLOPs over the bf16
  peak, ``hbm`` bytes over the HBM bandwidth, ``link`` the share of time the links are busy.
* KV figures are per replica: capacity; the highest occupancy any replica reached; the time-mean
  occupancy over the makespan, averaged over replicas.
* Energy: each GPU draws its idle power for the whole makespan plus (TDP - idle) while its replica runs
  a step, an upper-bound style estimate (a memory-bound step draws less than TDP).
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from kinsim.engine.kv import KVLayout
from kinsim.engine.records import Records, SegmentTable
from kinsim.engine.request_records import RequestRecords
from kinsim.engine.segment_totals import SegmentTotals
from kinsim.engine.streaming import LogHistogram, RequestTotals
from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.ops.op import OP_CLASSES
from kinsim.schema import to_raw
from kinsim.workload.spec import WorkloadSpec

PERCENTILES = (50, 90, 99)

#: Bins of the plot series over the makespan.
TIMELINE_BINS = 200
#: Segments the timeline bins at a time (its temporary arrays: a few of this many numbers).
TIMELINE_CHUNK = 1 << 20

#: Every reported metric: (dotted key, with ``{a,b}`` for alternatives; unit; definition). A key also
#: covers everything under it. ``docs/metrics.md`` shows this table and a test checks it against a run.
METRIC_DOCS = (
    ("workload, hardware, model, attention", "", "names of what was simulated; attention is the policy"),
    ("seed", "", "seed of the workload's random draws"),
    ("gpus", "GPUs", "tensor_parallel x data_parallel (disaggregated: each role's replicas x its tensor_parallel, "
                     "summed)"),
    ("sim_time_s", "s", "makespan: when the last request ended (simulated time)"),
    ("requests.{total,completed,unfinished}", "requests", "all requests; every one ends completed or unfinished"),
    ("requests.preemptions", "count", "preemptions by recompute or swap, over all requests (by kind: "
                                      "memory.preemptions)"),
    ("requests.unfinished_reasons", "{reason: count}", "why requests did not finish"),
    ("tasks.{total,completed}", "tasks", "groups (Best-of-N problems); complete when all their requests are"),
    ("tokens.generated", "tokens", "output tokens produced, for every request (delivered + undelivered)"),
    ("tokens.delivered", "tokens", "output tokens of finished requests: what throughput counts"),
    ("tokens.undelivered", "tokens", "output tokens produced for requests that did not finish (work done, nothing "
                                     "delivered)"),
    ("tokens.prompt", "tokens", "prompt tokens of all requests, once per request"),
    ("tokens.prefill_computed", "tokens", "prompt tokens computed: one prefill per group on a replica, plus "
                                          "recomputation after preemption"),
    ("throughput.output_tokens_per_s", "tokens/s", "tokens.delivered / sim_time_s (0 when no request finished)"),
    ("throughput.tasks_per_s", "tasks/s", "tasks.completed / sim_time_s"),
    ("throughput.requests_per_s", "requests/s", "requests.completed / sim_time_s"),
    ("latency.request.ttft.{p50,p90,p99,mean}", "s", "first token minus arrival (the serving frontend's "
                                                     "time included), over finished requests (request "
                                                     "latencies leave out requests.warmup)"),
    ("latency.request.tpot.{p50,p90,p99,mean}", "s", "(finish - first token) / (output tokens - 1), finished "
                                                     "requests with at least two output tokens"),
    ("latency.request.e2e.{p50,p90,p99,mean}", "s", "finish minus arrival, over finished requests"),
    ("latency.task.e2e.{p50,p90,p99,mean}", "s", "last finish minus first arrival of a task's requests, over "
                                                 "completed tasks"),
    ("breakdown_s.{attention,selection,linear,moe,communication,other}", "replica-seconds",
     "step time per op class summed over replicas; the classes add up to the replicas' busy time"),
    ("by_class.{attention,selection,linear,moe,communication,other}.{seconds,flops,hbm_bytes}",
     "replica-s, FLOP, B", "per op class: step time, and FLOPs and HBM bytes per GPU, summed over the run"),
    ("ceilings.{peak_flop_per_s,hbm_bandwidth}", "FLOP/s, B/s", "the GPU's bf16 dense peak and HBM bandwidth"),
    ("utilization.compute", "fraction", "FLOPs per GPU / (bf16 peak x sim_time_s), mean over the GPUs"),
    ("utilization.hbm", "fraction", "HBM bytes per GPU / (HBM bandwidth x sim_time_s), mean over the GPUs"),
    ("utilization.link", "fraction", "time a GPU's links are busy (the cost model's network term) / sim_time_s, "
                                     "mean over the GPUs"),
    ("utilization.host_link", "fraction", "time a GPU's host link is busy carrying KV from host memory / "
                                          "sim_time_s, mean over the GPUs (0 unless the KV is offloaded)"),
    ("host_link.bytes", "B", "KV bytes fetched from host memory over the host link per GPU, summed over the run "
                             "(block top-k with offload; 0 otherwise)"),
    ("host_link.busy_s", "replica-seconds", "seconds a GPU's host link was busy carrying them, summed over replicas"),
    ("kv.capacity_bytes", "B", "KV cache of one replica (all its GPUs; disaggregated: of a decode replica, as "
                               "every kv figure)"),
    ("kv.peak_bytes", "B", "most KV bytes allocated on any replica in any step"),
    ("kv.mean_bytes", "B", "time-mean of allocated KV bytes over sim_time_s, mean over replicas"),
    ("kv.{block_tokens,capacity_blocks}", "tokens, blocks", "block size; blocks per replica"),
    ("memory.prefix.prefills", "count", "prefills started (one per group admission, and again after a "
                                        "preemption by recompute)"),
    ("memory.prefix.{queried_tokens,hit_tokens}", "tokens", "tokens those prefills would compute with nothing "
     "cached (prompt, plus output generated before a preemption); of them, found computed and skipped (the "
     "prefill tokens prefix caching saved; without deployment.prefix_caching only while the group is resident)"),
    ("memory.prefix.{queried_blocks,hit_blocks}", "blocks", "whole prompt blocks of those prefills; of them, "
                                                            "found computed"),
    ("memory.prefix.{token_hit_rate,block_hit_rate}", "fraction", "hit_tokens / queried_tokens, hit_blocks / "
                                                                  "queried_blocks (0 with no prefill)"),
    ("memory.prefix.evicted_blocks", "blocks", "cached prompt blocks no request held, evicted to make room"),
    ("memory.preemptions.{recompute,swap}", "count", "preemptions by kind (deployment.preemption: swap falls back "
                                                     "to recompute when the host share is full)"),
    ("memory.host.{swap_out_bytes,swap_in_bytes}", "B", "KV copied to host memory and back by swaps, all GPUs"),
    ("memory.host.{offload_bytes,load_bytes}", "B", "prefix blocks written to the host tier when evicted from HBM "
                                                    "(kv_offload; overlapped with compute), and loaded back for "
                                                    "hits, all GPUs"),
    ("memory.prefix.host_hit_blocks", "blocks", "of hit_blocks, those found in the host tier (kv_offload)"),
    ("memory.host.stall_s", "replica-seconds", "time replicas waited for host copies before their steps"),
    ("memory.host.{capacity_bytes,peak_bytes}", "B", "host memory for one replica's KV (0 unless it swaps or "
                                                     "offloads); the most any replica held there"),
    ("speculative.verify_steps", "sequence-steps", "verify steps of speculative decoding, one per decoding sequence "
                                                   "per speculative step, summed over the run (the section is "
                                                   "present only with deployment.speculative)"),
    ("speculative.drafted_tokens", "tokens", "draft tokens proposed: deployment.speculative.tokens per "
                                             "sequence-step"),
    ("speculative.accepted_tokens", "tokens", "draft tokens accepted and used: the tokens each sequence-step "
                                              "advanced less the one the target adds itself"),
    ("speculative.acceptance_rate", "fraction", "accepted_tokens / drafted_tokens (0 with no draft)"),
    ("speculative.tokens_per_verify", "tokens", "tokens advanced per sequence-step (1 + accepted_tokens / "
                                                "verify_steps; tau where no sequence hit its end)"),
    ("speculative.draft_s", "replica-seconds", "seconds of draft passes (their kernels), summed over replicas"),
    ("speculative.draft_share", "fraction", "draft_s / the replicas' busy seconds (the sum of breakdown_s; "
                                            "disaggregated: the decode role's)"),
    ("energy_j", "J", "per GPU: idle power x sim_time_s + (TDP - idle) x its replica's busy time; summed (each "
                      "GPU's own figures where a disaggregated role has hardware of its own)"),
    ("cost_usd", "$", "GPU price x GPUs x sim_time_s (each GPU's own price); null without gpu.price"),
    ("engine.{events,segments,steps}", "count", "SimPy events, recorded segments, simulated steps (they "
                                                "differ between modes; not figures of the simulated system)"),
    ("engine.jobs", "count", "processes the replicas ran in (kinsim run --jobs; kinsim.engine.parallel, lockstep)"),
    ("series.{t_s,output_tokens_per_s,kv_bytes}", "s, tokens/s, B", f"plot series in {TIMELINE_BINS} equal bins of "
     "sim_time_s: bin centres, output rate (tokens produced, delivered or not), mean KV bytes per replica (a "
     "segment's tokens and KV spread evenly over it)"),
    ("series.latency_quantiles.{q,ttft,tpot,e2e,task_e2e}", "fraction, s", "the 0th to 100th percentiles of "
     "each latency (for CDFs)"),
    ("disaggregation.{prefill,decode}.{replicas,tensor_parallel}", "count", "each role's replicas and GPUs per "
     "replica (only with deployment.disaggregation, as every disaggregation key)"),
    ("disaggregation.{prefill,decode}.hardware", "", "the name of the role's hardware (its own file's, or --hw's)"),
    ("disaggregation.{prefill,decode}.busy_s", "replica-seconds", "time the role's replicas ran steps"),
    ("disaggregation.{prefill,decode}.utilization", "fraction", "busy_s / (replicas x sim_time_s)"),
    ("disaggregation.{prefill,decode}.kv_capacity_bytes", "B", "KV cache of one replica of the role, all its GPUs"),
    ("disaggregation.{prefill,decode}.kv_peak_bytes", "B", "most KV bytes allocated on any replica of the role "
     "(the prefill role's include KV held until it has moved)"),
    ("disaggregation.transfers", "count", "KV transfers from prefill to decode replicas (one per group admitted "
                                          "together by a decode replica)"),
    ("disaggregation.kv_transferred_bytes", "B", "KV moved, all GPUs of the decode replicas"),
    ("disaggregation.transfer_s", "s", "percentiles and mean of a transfer's time, admission to arrival"),
    ("disaggregation.decode_queue_s", "s", "percentiles and mean, per request that moved, of the wait from its "
                                           "first token to its admission by a decode replica"),
    ("disaggregation.transfer_stall_s", "s", "percentiles and mean, per request that moved, of the time from "
                                             "its admission to the arrival of its KV (it holds a seat but cannot "
                                             "decode)"),
    ("scores.{requests,tasks}", "count", "requests with a trace score, and tasks (groups) with one or more (the "
     "section is present only when the trace has a score column and the run keeps its request table)"),
    ("scores.mean", "score", "mean trace score of those requests"),
    ("scores.task_best_mean", "score", "mean over those tasks of the best score among their requests (Best-of-N "
                                       "with a perfect verifier: the coverage when scores are 0 or 1)"),
    ("scores.gpu_s_per_request", "GPU-s", "mean GPU-seconds of a scored request (its share of the GPU time of "
                                          "the steps it took part in; docs/reports.md)"),
    ("scores.gpu_s_per_task", "GPU-s", "mean over those tasks of their scored requests' GPU-seconds summed"),
    ("scores.{solved,unsolved}.tasks", "count", "tasks whose best score is above 0, and the others"),
    ("scores.{solved,unsolved}.gpu_s_per_task", "GPU-s", "their mean GPU-seconds per task (null with none)"),
    ("inputs.{workload,hardware}", "", "the resolved input files, every key written out"),
    ("inputs.trace", "", "what a replayed trace kept, skipped and capped (rows by reason); null without a trace"),
    ("mode", "", "fast_forward or exact_steps"),
    ("records", "", "what the run kept: full, summary or none (kinsim run --records; docs/engine.md)"),
    ("wall_time_s", "s", "wall-clock time of the simulation, loading included"),
)


def expand_key(pattern: str) -> list[str]:
    """``"a.{b,c}.d"`` -> ``["a.b.d", "a.c.d"]``; ``"x, y"`` -> ``["x", "y"]``."""
    if ", " in pattern and "{" not in pattern:
        return pattern.split(", ")
    head, brace, rest = pattern.partition("{")
    if not brace:
        return [pattern]
    options, _, tail = rest.partition("}")
    return [key for option in options.split(",") for key in expand_key(head + option + tail)]


#: Sections a run has only when the feature they describe is on (absent from other runs, whose files stay
#: as they were).
OPTIONAL_SECTIONS = ("speculative", "disaggregation", "scores")

#: Documented keys that are not figures of the simulated system: names, inputs, plot series, engine counters.
NOT_FIGURES = ("workload", "hardware", "model", "attention", "seed", "mode", "records", "wall_time_s", "engine.",
               "series.", "inputs.", "requests.unfinished_reasons", "ceilings.", "disaggregation.prefill.hardware",
               "disaggregation.decode.hardware")

#: Every numeric figure of a run, by dotted key: what a regression suite may guard and a sweep may tabulate.
FIGURE_KEYS = tuple(key for pattern, _, _ in METRIC_DOCS for key in expand_key(pattern)
                    if not key.startswith(NOT_FIGURES))

#: The unit of each documented key (``"s"``, ``"B"``, ``"tokens/s"``, ``"fraction"``...), as in METRIC_DOCS.
_KEY_UNITS = {key: unit for pattern, unit, _ in METRIC_DOCS for key in expand_key(pattern)}


def figure_unit(key: str) -> str:
    """The unit of figure ``key`` as :data:`METRIC_DOCS` gives it (``"B"`` for ``kv.peak_bytes``); for a
    ``by_class`` figure the one of its own column (``"FLOP"`` for ``by_class.linear.flops``); ``""``
    for a key the reference does not list."""
    unit = _KEY_UNITS.get(key, "")
    if key.startswith("by_class."):
        return {"seconds": "replica-seconds", "flops": "FLOP", "hbm_bytes": "B"}.get(key.rsplit(".", 1)[-1], "")
    return unit


#: The top-level sections of a run's JSON (``kinsim run --json``).
SECTIONS = tuple(dict.fromkeys(key.split(".")[0] for pattern, _, _ in METRIC_DOCS for key in expand_key(pattern)))

#: Figure key prefixes where a larger value is better; every other figure is better smaller.
HIGHER_IS_BETTER = ("throughput.", "tasks.completed", "requests.completed", "tokens.generated", "tokens.delivered",
                    "utilization.", "kv.capacity")


def better_direction(key: str) -> int:
    """+1 when a larger value of figure ``key`` is better, -1 when a smaller one is."""
    return 1 if key.startswith(HIGHER_IS_BETTER) else -1


def check_figure_key(key: str, path: str, file: str | None = None) -> None:
    """:class:`SpecError` unless ``key`` is one of :data:`FIGURE_KEYS`; the nearest keys are the hint."""
    if not isinstance(key, str):
        raise SpecError("expected a dotted figure key such as throughput.tasks_per_s", path=path, value=key,
                        file=file, hint="see docs/metrics.md")
    if key in FIGURE_KEYS:
        return
    near = difflib.get_close_matches(str(key), FIGURE_KEYS, n=3, cutoff=0.6)
    raise SpecError("not a figure a run reports", path=path, value=key, file=file,
                    hint=f"did you mean {' or '.join(near)}? see docs/metrics.md" if near else "see docs/metrics.md")


def render_metrics_table() -> str:
    """The Markdown table of :data:`METRIC_DOCS` (``docs/metrics.md``)."""
    lines = ["| key | unit | definition |", "|---|---|---|"]
    lines += [f"| `{key}` | {unit} | {text} |" for key, unit, text in METRIC_DOCS]
    return "\n".join(lines)


def percentiles(values: list[float] | np.ndarray | LogHistogram,
                which: tuple[int, ...] = PERCENTILES) -> dict[str, float | None]:
    """``{"p50": ..., "p90": ..., "p99": ..., "mean": ...}`` of ``values`` (``None`` when empty); from a
    :class:`LogHistogram`, percentiles within its documented error."""
    if isinstance(values, LogHistogram):
        out = {f"p{p}": values.percentile(p) for p in which}
        out["mean"] = values.mean
        return out
    data = np.asarray(values, dtype=float)
    out: dict[str, float | None] = {f"p{p}": (float(np.percentile(data, p)) if data.size else None) for p in which}
    out["mean"] = float(data.mean()) if data.size else None
    return out


def summarize(records: Records, workload: WorkloadSpec, hardware: HardwareSpec, layout: KVLayout,
              role_layouts: dict[str, KVLayout] | None = None,
              role_hardware: dict[str, HardwareSpec] | None = None) -> dict[str, Any]:
    """The headline metrics of a run as a JSON-ready nested dict, from full records or from running totals
    (``--records``: the same figures; see :func:`segment_figures` and :func:`request_figures`). ``layout``:
    a replica's KV layout (the decode role's when disaggregated); ``role_layouts`` and ``role_hardware``:
    each role's layout and hardware (a disaggregated role may run on hardware of its own)."""
    tp = workload.deployment.tensor_parallel
    replica_tp = [len(gpus) for gpus in records.replica_gpus] or [tp] * workload.deployment.data_parallel
    dp = len(replica_tp)
    gpus = workload.gpus
    seg = segment_figures(records.segments, dp)
    req = request_figures(records.sequences, getattr(workload.requests, "warmup", 0))
    makespan = max(req["last_finish_s"], seg["last_end_s"])
    generated, completed, tasks_done = req["generated"], req["completed"], req["tasks_completed"]
    delivered = req["delivered"]  # tokens of finished requests: the only ones a throughput counts
    ttft, tpot, e2e, task_e2e = req["ttft"], req["tpot"], req["e2e"], req["task_e2e"]
    busy_by_replica = seg["busy_s"]
    denominator = dp * makespan if makespan > 0 else float("inf")
    power = hardware.gpu.power
    replica_gpu = [role_hardware[role].gpu for role in records.replica_roles] if role_hardware else []
    if len(set(replica_tp)) == 1 and all(gpu == hardware.gpu for gpu in replica_gpu):
        energy = replica_tp[0] * sum(power.idle * makespan + (power.tdp - power.idle) * busy
                                     for busy in busy_by_replica)
        price = hardware.gpu.price
        cost = price * gpus * makespan if price is not None else None
    else:  # roles of different tensor parallelism or hardware: each replica's GPUs draw their own power
        replica_gpu = replica_gpu or [hardware.gpu] * dp
        energy = sum(n * (gpu.power.idle * makespan + (gpu.power.tdp - gpu.power.idle) * busy)
                     for n, gpu, busy in zip(replica_tp, replica_gpu, busy_by_replica))
        prices = [gpu.price for gpu in replica_gpu]
        cost = None if None in prices else sum(n * p * makespan for n, p in zip(replica_tp, prices))
    replica_bytes = layout.block_bytes * layout.gpus
    kv_peak_blocks, kv_block_s, kv_denominator = seg["kv_peak_blocks"], seg["kv_block_s"], denominator
    if records.disaggregation is not None:  # the kv figures describe the decode role's replicas (``layout``)
        decode = [r for r, role in enumerate(records.replica_roles) if role == "decode"]
        kv_peak_blocks = max(seg["kv_peak_by_replica"][r] for r in decode)
        kv_block_s = sum(seg["kv_block_s_by_replica"][r] for r in decode)
        kv_denominator = len(decode) * makespan if makespan > 0 else float("inf")
    summary = {
        "workload": workload.name,
        "hardware": hardware.name,
        "model": workload.model.name,
        "attention": type(workload.attention).KIND,
        "seed": workload.seed,
        "gpus": gpus,
        "sim_time_s": makespan,
        "requests": {
            "total": req["total"], "completed": completed, "unfinished": req["total"] - completed,
            "preemptions": req["preemptions"],
            "unfinished_reasons": dict(sorted(req["reasons"].items())),
        },
        "tasks": {"total": req["tasks_total"], "completed": tasks_done},
        "tokens": {
            "generated": generated,
            "delivered": delivered,
            "undelivered": generated - delivered,
            "prompt": req["prompt"],
            "prefill_computed": seg["prefill_tokens"],
        },
        "throughput": {
            "output_tokens_per_s": delivered / makespan if makespan else 0.0,
            "tasks_per_s": tasks_done / makespan if makespan else 0.0,
            "requests_per_s": completed / makespan if makespan else 0.0,
        },
        "latency": {
            "request": {"ttft": percentiles(ttft), "tpot": percentiles(tpot), "e2e": percentiles(e2e)},
            "task": {"e2e": percentiles(task_e2e)},
        },
        "breakdown_s": dict(zip(OP_CLASSES, seg["class_s"])),
        "utilization": {
            "compute": seg["flops"] / (hardware.peak("bf16") * denominator),
            "hbm": seg["hbm_bytes"] / (hardware.gpu.memory.bandwidth * denominator),
            "link": seg["network_s"] / denominator,
            "host_link": seg["host_link_s"] / denominator,
        },
        "host_link": {"bytes": seg["host_link_bytes"], "busy_s": seg["host_link_s"]},
        "kv": {
            "capacity_bytes": layout.capacity_bytes,
            "peak_bytes": kv_peak_blocks * replica_bytes,
            "mean_bytes": kv_block_s / kv_denominator * replica_bytes,
            "block_tokens": layout.block_size,
            "capacity_blocks": layout.total_blocks,
        },
        "memory": memory_figures(records.memory, replica_bytes),
        **({"speculative": speculative_figures(records.memory, _drafting_busy_s(records, busy_by_replica))}
           if workload.deployment.speculative is not None else {}),
        "energy_j": energy,
        "cost_usd": cost,
        "engine": {"events": records.events, "segments": seg["segments"], "steps": seg["steps"],
                   "jobs": records.jobs},
        "by_class": {c: {"seconds": t, "flops": f, "hbm_bytes": b}
                     for c, t, f, b in zip(OP_CLASSES, seg["class_s"], seg["class_flops"], seg["class_bytes"])},
        "ceilings": {"peak_flop_per_s": hardware.peak("bf16"), "hbm_bandwidth": hardware.gpu.memory.bandwidth},
        "series": {
            **_series(records.segments, makespan, dp, replica_bytes),
            "latency_quantiles": {
                "q": [q / 100 for q in range(101)],
                "ttft": quantiles(ttft), "tpot": quantiles(tpot), "e2e": quantiles(e2e),
                "task_e2e": quantiles(task_e2e),
            },
        },
        "inputs": {"workload": to_raw(workload), "hardware": to_raw(hardware)},
    }
    if records.disaggregation is not None:
        role_hardware = role_hardware or dict.fromkeys(("prefill", "decode"), hardware)
        summary["disaggregation"] = disaggregation_figures(records, seg, makespan, role_layouts, role_hardware)
    scores = score_figures(records.sequences)
    if scores is not None:
        summary["scores"] = scores
    return summary


def score_figures(outcomes: RequestRecords | RequestTotals) -> dict[str, Any] | None:
    """The ``scores`` section: the trace's scores beside the GPU time spent on them, per request and per task
    (group); None without scores or without the request table (``--records none``)."""
    if not isinstance(outcomes, RequestRecords):
        return None
    score = outcomes.table.score_column()
    scored = ~np.isnan(score)
    if not scored.any():
        return None
    group = outcomes.table.group[scored]
    gpu_s = outcomes.gpu_s[scored]
    groups, index = np.unique(group, return_inverse=True)
    best = np.full(len(groups), -np.inf)
    np.maximum.at(best, index, score[scored])
    task_gpu_s = np.bincount(index, weights=gpu_s, minlength=len(groups))
    solved = best > 0

    def mean_or_none(values: np.ndarray) -> float | None:
        return float(values.mean()) if values.size else None

    return {"requests": int(scored.sum()), "tasks": len(groups), "mean": float(score[scored].mean()),
            "task_best_mean": float(best.mean()), "gpu_s_per_request": float(gpu_s.mean()),
            "gpu_s_per_task": float(task_gpu_s.mean()),
            "solved": {"tasks": int(solved.sum()), "gpu_s_per_task": mean_or_none(task_gpu_s[solved])},
            "unsolved": {"tasks": int((~solved).sum()), "gpu_s_per_task": mean_or_none(task_gpu_s[~solved])}}


def _drafting_busy_s(records: Records, busy_by_replica: list[float]) -> float:
    """Busy seconds of the replicas that decode (and so draft): all, or a disaggregated deployment's decode
    role."""
    if records.disaggregation is None:
        return sum(busy_by_replica)
    return sum(busy for busy, role in zip(busy_by_replica, records.replica_roles) if role == "decode")


def disaggregation_figures(records: Records, seg: dict[str, Any], makespan: float,
                           role_layouts: dict[str, KVLayout], role_hardware: dict[str, HardwareSpec]) -> dict[str, Any]:
    """The ``disaggregation`` section: per role its hardware, replicas, busy time, utilisation, KV capacity and
    peak; the KV transfers' count, bytes and times (:class:`kinsim.engine.disagg.TransferStats`). ``seg``:
    :func:`segment_figures` of the run."""
    stats = records.disaggregation
    out: dict[str, Any] = {}
    busy_by_replica, peaks = seg["busy_s"], seg["kv_peak_by_replica"]
    for role in ("prefill", "decode"):
        members = [r for r, name in enumerate(records.replica_roles) if name == role]
        busy = sum(busy_by_replica[r] for r in members)
        layout = role_layouts[role]
        out[role] = {"hardware": role_hardware[role].name,
                     "replicas": len(members), "tensor_parallel": len(records.replica_gpus[members[0]]),
                     "busy_s": busy, "utilization": busy / (len(members) * makespan) if makespan else 0.0,
                     "kv_capacity_bytes": layout.capacity_bytes,
                     "kv_peak_bytes": max(peaks[r] for r in members) * layout.block_bytes * layout.gpus}
    out["transfers"] = int(stats["transfers"])
    out["kv_transferred_bytes"] = float(stats["bytes"])
    out["transfer_s"] = percentiles(stats["transfer_s"])
    out["decode_queue_s"] = percentiles(stats["queue_s"])
    out["transfer_stall_s"] = percentiles(stats["stall_s"])
    return out


def speculative_figures(counters: dict[str, float], busy_s: float) -> dict[str, Any]:
    """The ``speculative`` section from the engine's summed counters (:attr:`Records.memory`, the replicas'
    ``spec_*`` counters); ``busy_s``: the replicas' busy seconds summed."""
    steps, drafted = int(counters.get("spec_verify_steps", 0)), int(counters.get("spec_drafted", 0))
    accepted, advanced = int(counters.get("spec_accepted", 0)), int(counters.get("spec_advanced", 0))
    draft_s = float(counters.get("spec_draft_s", 0.0))
    return {"verify_steps": steps, "drafted_tokens": drafted, "accepted_tokens": accepted,
            "acceptance_rate": accepted / drafted if drafted else 0.0,
            "tokens_per_verify": advanced / steps if steps else 0.0,
            "draft_s": draft_s, "draft_share": draft_s / busy_s if busy_s > 0 else 0.0}


def figure_of(summary: dict[str, Any], key: str) -> Any:
    """The value of figure ``key`` in a run's summary; None where its section is one of
    :data:`OPTIONAL_SECTIONS` and the run lacks it (``KeyError`` for any other missing key)."""
    from kinsim.result import metric_at

    if key.split(".")[0] in OPTIONAL_SECTIONS and key.split(".")[0] not in summary:
        return None
    return metric_at(summary, key)


def memory_figures(counters: dict[str, float], block_bytes: float) -> dict[str, Any]:
    """The ``memory`` section from the engine's summed counters (:attr:`Records.memory`); ``block_bytes``:
    one KV block of a replica, all its GPUs."""
    def count(name: str) -> int:
        return int(counters.get(name, 0))

    def rate(hit: str, queried: str) -> float:
        return count(hit) / count(queried) if count(queried) else 0.0

    prefix = {name: count(name) for name in ("prefills", "queried_tokens", "hit_tokens", "queried_blocks",
                                             "hit_blocks", "host_hit_blocks")}
    prefix["token_hit_rate"] = rate("hit_tokens", "queried_tokens")
    prefix["block_hit_rate"] = rate("hit_blocks", "queried_blocks")
    prefix["evicted_blocks"] = count("evicted_blocks")
    return {"prefix": prefix,
            "preemptions": {"recompute": count("preempt_recompute"), "swap": count("preempt_swap")},
            "host": {"swap_out_bytes": count("swap_out_blocks") * block_bytes,
                     "swap_in_bytes": count("swap_in_blocks") * block_bytes,
                     "offload_bytes": count("offload_blocks") * block_bytes,
                     "load_bytes": count("host_hit_blocks") * block_bytes,
                     "stall_s": float(counters.get("stall_s", 0.0)),
                     "capacity_bytes": count("host_capacity_blocks") * block_bytes,
                     "peak_bytes": count("host_peak_blocks") * block_bytes}}


def segment_figures(segments: SegmentTable | SegmentTotals, replicas: int) -> dict[str, Any]:
    """Totals over the recorded segments: per op class seconds, FLOPs and HBM bytes (lists in the order of
    ``OP_CLASSES``); ``flops``, ``hbm_bytes``, ``network_s``, ``host_link_s``, ``host_link_bytes``,
    ``prefill_tokens``, ``kv_block_s``,
    ``kv_peak_blocks``, ``segments``, ``steps``, ``last_end_s``, and per replica ``busy_s``,
    ``kv_peak_by_replica`` and ``kv_block_s_by_replica``. Sums add in
    the order the segments ended, from rows (:func:`ordered_sum`) as the running totals do, so both give the
    same bits."""
    if isinstance(segments, SegmentTotals):
        return {"class_s": list(segments.class_s), "class_flops": list(segments.class_flops),
                "class_bytes": list(segments.class_bytes), "flops": segments.flops, "hbm_bytes": segments.hbm_bytes,
                "network_s": segments.network_s, "host_link_s": segments.host_link_s,
                "host_link_bytes": segments.host_link_bytes, "prefill_tokens": segments.prefill_tokens,
                "kv_block_s": segments.kv_block_s, "kv_peak_blocks": segments.kv_peak_blocks,
                "segments": segments.rows, "steps": segments.steps, "last_end_s": segments.last_end_s,
                "busy_s": list(segments.busy_s), "kv_peak_by_replica": list(segments.kv_peak_by_replica),
                "kv_block_s_by_replica": list(segments.kv_block_s_by_replica)}
    column = segments.column
    start_s, end_s = column("start_s"), column("end_s")
    some = len(segments) > 0
    return {
        "class_s": ordered_sum(column("class_s")).tolist(),
        "class_flops": ordered_sum(column("class_flops")).tolist(),
        "class_bytes": ordered_sum(column("class_bytes")).tolist(),
        "flops": float(ordered_sum(column("flops"))), "hbm_bytes": float(ordered_sum(column("hbm_bytes"))),
        "network_s": float(ordered_sum(column("network_s"))),
        "host_link_s": float(ordered_sum(column("host_link_s"))),
        "host_link_bytes": float(ordered_sum(column("host_link_bytes"))),
        "prefill_tokens": int(column("prefill_tokens").sum()),
        "kv_block_s": float(ordered_sum(column("kv_block_s"))),
        "kv_peak_blocks": int(column("kv_peak_blocks").max()) if some else 0,
        "segments": len(segments), "steps": int(column("steps").sum()),
        "last_end_s": float(end_s.max()) if some else 0.0,
        # bincount adds each replica's durations in row order, as a loop over the segments would
        "busy_s": np.bincount(column("replica"), weights=end_s - start_s, minlength=replicas).tolist(),
        "kv_peak_by_replica": _peak_by_replica(column("replica"), column("kv_peak_blocks"), replicas),
        "kv_block_s_by_replica": np.bincount(column("replica"), weights=column("kv_block_s"),
                                             minlength=replicas).tolist(),
    }


def _peak_by_replica(replica: np.ndarray, peak: np.ndarray, replicas: int) -> list[int]:
    """The largest of ``peak`` per replica (0 for a replica with no segment)."""
    out = np.zeros(replicas, dtype=np.int64)
    np.maximum.at(out, replica.astype(np.int64), peak.astype(np.int64))
    return out.tolist()


def request_figures(outcomes: RequestRecords | RequestTotals, warmup: int) -> dict[str, Any]:
    """Counts, token totals and latency distributions of the requests: ``ttft``, ``tpot``, ``e2e`` and
    ``task_e2e`` are arrays (every request kept) or :class:`LogHistogram` (running totals); the first
    ``warmup`` requests stay out of the request latencies."""
    if isinstance(outcomes, RequestTotals):
        return {"total": outcomes.total, "completed": outcomes.completed, "preemptions": outcomes.preemptions,
                "reasons": dict(outcomes.reasons), "generated": outcomes.generated, "delivered": outcomes.delivered,
                "prompt": int(outcomes.table.prompt_tokens.sum()), "last_finish_s": outcomes.last_finish_s,
                "tasks_total": outcomes.table.groups, "tasks_completed": outcomes.tasks_completed,
                "ttft": outcomes.ttft, "tpot": outcomes.tpot, "e2e": outcomes.e2e, "task_e2e": outcomes.task_e2e}
    table = outcomes.table
    finished = outcomes.finished()
    ended = ~np.isnan(outcomes.finish_s)
    tasks_total, tasks_done, task_e2e = _tasks(outcomes)
    measured = finished.copy()
    measured[:warmup] = False  # request latencies leave out the warm-up requests (the first, in order)
    arrival, first, finish = outcomes.arrival_s[measured], outcomes.first_token_s[measured], outcomes.finish_s[measured]
    outputs = table.output_tokens[measured]
    several = outputs > 1
    return {"total": len(outcomes), "completed": int(finished.sum()), "preemptions": int(outcomes.preemptions.sum()),
            "reasons": outcomes.reason_counts(), "generated": int(outcomes.generated.sum()),
            "delivered": int(outcomes.generated[finished].sum()),
            "prompt": int(table.prompt_tokens.sum()),
            "last_finish_s": float(outcomes.finish_s[ended].max()) if ended.any() else 0.0,
            "tasks_total": tasks_total, "tasks_completed": tasks_done,
            "ttft": first - arrival, "tpot": (finish[several] - first[several]) / (outputs[several] - 1),
            "e2e": finish - arrival, "task_e2e": task_e2e}


def _series(segments: SegmentTable | SegmentTotals, makespan: float, replicas: int, replica_bytes: float) -> dict:
    if isinstance(segments, SegmentTotals):
        if makespan <= 0:
            return {"t_s": [], "output_tokens_per_s": [], "kv_bytes": []}
        edges, tokens, block_s = segments.series(makespan, TIMELINE_BINS)
        width = edges[1] - edges[0]
        return {"t_s": ((edges[:-1] + edges[1:]) / 2).tolist(), "output_tokens_per_s": (tokens / width).tolist(),
                "kv_bytes": (block_s / width / replicas * replica_bytes).tolist()}
    column = segments.column
    return timeline(column("start_s"), column("end_s"), column("tokens_out"), column("kv_block_s"), makespan,
                    replicas, replica_bytes)


def quantiles(values) -> list[float] | None:
    """The 0th to 100th percentiles of ``values`` (101 numbers), ``None`` when empty."""
    if isinstance(values, LogHistogram):
        return [values.percentile(q) for q in range(101)] if values.count else None
    if not len(values):
        return None
    return np.percentile(np.asarray(values, dtype=float), np.arange(101)).tolist()


def ordered_sum(values: np.ndarray, chunk: int = 1 << 16) -> np.ndarray | float:
    """The sum of ``values`` over its first axis, added one row after another from the first.

    This is the order in which a Python loop (or ``sum()`` before Python 3.12) adds the records, so the
    figures keep their last bits; ``np.sum`` would add pairwise. A cumulative sum is sequential by
    definition; it runs over ``chunk`` rows at a time to bound its temporary array.
    """
    total = np.zeros(values.shape[1:])
    for i in range(0, len(values), chunk):
        total = np.cumsum(np.concatenate((total[None], values[i:i + chunk])), axis=0)[-1]
    return total if values.ndim > 1 else float(total)


def timeline(start: np.ndarray, end: np.ndarray, tokens_out: np.ndarray, kv_block_s: np.ndarray, makespan: float,
             replicas: int, replica_bytes: float, bins: int = TIMELINE_BINS) -> dict:
    """Output tokens/s and mean KV bytes per replica in ``bins`` equal bins of the makespan, from the
    segments' columns: start and end (s), output tokens and KV block-seconds.

    A segment's tokens and KV block-seconds are spread evenly over its duration (the records keep a
    segment's totals, not each step's), so these plot series are the one output that differs slightly
    between fast-forward and exact steps; their totals agree.
    """
    if makespan <= 0:
        return {"t_s": [], "output_tokens_per_s": [], "kv_bytes": []}
    edges = np.linspace(0.0, makespan, bins + 1)
    width = edges[1] - edges[0]
    tokens = np.zeros(bins)
    kv = np.zeros(bins)
    if len(start):
        produced = np.asarray(tokens_out, dtype=float)
        block_s = np.asarray(kv_block_s, dtype=float)
        duration = np.maximum(end - start, 1e-30)
        # most segments lie within one bin (a step is milliseconds, a bin a 200th of the run): all of such a
        # segment goes to its bin (its share, (end - start) / duration, is 1, or 0 for an empty one); only the
        # segments that cross a bin edge are spread by their overlap with each bin
        crossing = []
        for i in range(0, len(start), TIMELINE_CHUNK):  # (bounded temporaries)
            part = slice(i, i + TIMELINE_CHUNK)
            lo, hi = start[part], end[part]
            first_bin = np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, bins - 1)
            inside = hi <= edges[first_bin + 1]
            share = (hi - lo)[inside] / duration[part][inside]
            tokens += np.bincount(first_bin[inside], weights=produced[part][inside] * share, minlength=bins)
            kv += np.bincount(first_bin[inside], weights=block_s[part][inside] * share, minlength=bins)
            crossing.append(np.flatnonzero(~inside) + i)
        crossing = np.concatenate(crossing)
        chunk = max(1, 1_000_000 // bins)  # segments per (segments x bins) overlap matrix: 8 MB each
        for i in range(0, len(crossing), chunk):
            rows = crossing[i:i + chunk]
            lo, hi = start[rows, None], end[rows, None]
            # overlap of each segment with each bin, as a share of the segment
            overlap = np.clip(np.minimum(hi, edges[None, 1:]) - np.maximum(lo, edges[None, :-1]), 0.0, None)
            overlap /= duration[rows, None]
            tokens += produced[rows] @ overlap
            kv += block_s[rows] @ overlap
    return {
        "t_s": ((edges[:-1] + edges[1:]) / 2).tolist(),
        "output_tokens_per_s": (tokens / width).tolist(),
        "kv_bytes": (kv / width / replicas * replica_bytes).tolist(),
    }


def _tasks(outcomes) -> tuple[int, int, np.ndarray]:
    """Groups, completed groups, and each completed group's e2e (last finish minus first arrival), in
    group order."""
    group = outcomes.table.group
    groups = outcomes.table.groups
    if not groups:
        return 0, 0, np.zeros(0)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(groups))
    unfinished = np.bincount(group, weights=~outcomes.finished(), minlength=groups)
    done = unfinished == 0
    last = np.maximum.reduceat(np.nan_to_num(outcomes.finish_s[order], nan=-np.inf), starts)
    first = np.minimum.reduceat(outcomes.arrival_s[order], starts)
    return groups, int(done.sum()), (last - first)[done]
