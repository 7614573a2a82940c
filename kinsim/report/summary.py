"""The human-readable summary of a run, from its metrics."""

from __future__ import annotations

import math
from typing import Any

from kinsim.ops.op import OP_CLASSES
from kinsim.units import format_quantity as fq


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:,.1f} ms"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def _tokens(tok: dict[str, Any]) -> str:
    """Output tokens (delivered, and any generated for requests that did not finish), prompt, prefilled."""
    text = f"{tok['generated']:,} generated"
    if "delivered" in tok:  # run files of earlier versions lack it
        text = f"{tok['delivered']:,} delivered" + (f", {tok['undelivered']:,} generated for unfinished requests"
                                                    if tok["undelivered"] else "")
    return text + f", {tok['prompt']:,} prompt, {tok['prefill_computed']:,} prefilled (with recomputation)"


def summary_rows(s: dict[str, Any], wall_time: bool = True) -> list[tuple[str, str]]:
    """(label, text) rows of the human-readable summary of a run's metrics; ``wall_time=False`` leaves out
    how long the simulation took, which differs between two runs of one simulation."""
    req, tok, thr, lat = s["requests"], s["tokens"], s["throughput"], s["latency"]
    kv, util = s["kv"], s["utilization"]
    seconds = {c: s["breakdown_s"][c] for c in OP_CLASSES}  # the declared classes only, whatever else a file holds
    busy = sum(seconds.values()) or 1.0
    breakdown = ", ".join(f"{c} {v / busy:.0%}" for c, v in seconds.items() if v > 0)
    jobs = s.get("engine", {}).get("jobs", 1)  # kinsim run --jobs: the replicas' processes
    processes = f", {jobs} processes" if jobs > 1 else ""
    rows = [
        ("simulated", f"{s['workload']} ({s['model']}, {s['attention']} attention) on {s['gpus']} x "
                      f"{s['hardware']}"),
        ("makespan", f"{s['sim_time_s']:,.2f} s simulated" + (f" in {s['wall_time_s']:.2f} s" if wall_time else "")
                     + f" ({s['mode']}{processes})"),
        ("requests", f"{req['completed']:,} completed, {req['unfinished']:,} unfinished, "
                     f"{req['preemptions']:,} preemptions"),
        ("tasks", f"{s['tasks']['completed']:,} of {s['tasks']['total']:,} completed"),
        ("tokens", _tokens(tok)),
        ("throughput", f"{thr['output_tokens_per_s']:,.0f} output tokens/s, {thr['tasks_per_s']:.4f} tasks/s"),
        ("TTFT p50/p90/p99", " / ".join(_ms(lat['request']['ttft'][p]) for p in ("p50", "p90", "p99"))),
        ("TPOT p50/p90/p99", " / ".join(_ms(lat['request']['tpot'][p]) for p in ("p50", "p90", "p99"))),
        ("request e2e p50/p90/p99", " / ".join(_s(lat['request']['e2e'][p]) for p in ("p50", "p90", "p99"))),
        ("task e2e p50/p99", " / ".join(_s(lat['task']['e2e'][p]) for p in ("p50", "p99"))),
        ("time by op class", breakdown),
        ("utilisation", f"compute {util['compute']:.1%}, HBM {util['hbm']:.1%}, links {util['link']:.1%}"),
        ("KV per replica", f"capacity {fq('bytes', kv['capacity_bytes'])}, peak {fq('bytes', kv['peak_bytes'])}, "
                           f"mean {fq('bytes', kv['mean_bytes'])}"),
        ("energy", f"{s['energy_j'] / 3.6e6:,.3f} kWh" + (f", cost ${s['cost_usd']:,.2f}"
                                                          if s["cost_usd"] is not None else "")),
    ]
    # host_link and memory: absent from run files of earlier versions (kinsim.report.runfile.LATER_SHAPE)
    host = s["host_link"]["bytes"] if "host_link" in s else 0.0
    if host:
        share = util.get("host_link")
        busy = f", busy {share:.1%} of the time" if isinstance(share, float) and math.isfinite(share) else ""
        rows.insert(-2, ("host link", f"{fq('bytes', host)} of KV fetched from host memory{busy}"))
    for label, text in _memory_rows(s.get("memory")):
        rows.insert(-2, (label, text))
    spec = s.get("speculative")  # present only with deployment.speculative
    if spec:
        rows.insert(-2, ("speculative", f"{spec['tokens_per_verify']:.2f} tokens per verify step, "
                                        f"{spec['acceptance_rate']:.1%} of drafts accepted, draft passes "
                                        f"{spec['draft_share']:.1%} of busy time"))
    split = s.get("disaggregation")  # present only with deployment.disaggregation
    if split:
        def words(role: str) -> str:
            on = split[role]["hardware"]
            return (f"{role} {split[role]['replicas']} x TP{split[role]['tensor_parallel']}"
                    + (f" on {on}" if on != s["hardware"] else "") + f" busy {split[role]['utilization']:.0%}")

        roles = ", ".join(words(role) for role in ("prefill", "decode"))
        rows.insert(-2, ("disaggregation", roles))
        moved = split["transfer_s"]["p50"]
        queue = split["decode_queue_s"]["p50"]
        rows.insert(-2, ("KV handoff", f"{split['transfers']:,} transfers, "
                                       f"{fq('bytes', split['kv_transferred_bytes'])}, transfer p50 {_ms(moved)}, "
                                       f"wait for a decode seat p50 {_ms(queue)}"))
    scores = s.get("scores")  # present only when the trace has scores
    if scores:
        rows.insert(-2, ("scores", _score_words(scores)))
    for reason, count in req["unfinished_reasons"].items():
        rows.append(("unfinished", f"{count} x {reason}"))
    return rows


def _memory_rows(memory: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Rows for the prefix cache and the host tier, where they did something."""
    if not memory:
        return []
    rows = []
    prefix, preemptions, host = memory["prefix"], memory["preemptions"], memory["host"]
    if prefix["hit_tokens"]:
        rows.append(("prefix cache", f"{prefix['token_hit_rate']:.1%} of prefill tokens found cached "
                                     f"({prefix['hit_tokens']:,} tokens not computed)"))
    if preemptions["swap"] or host["load_bytes"] or host["offload_bytes"]:
        rows.append(("host memory", f"{preemptions['swap']:,} swaps ({fq('bytes', host['swap_out_bytes'])} out), "
                                    f"{fq('bytes', host['offload_bytes'])} of prefix blocks offloaded, "
                                    f"{fq('bytes', host['load_bytes'])} loaded; {host['stall_s']:,.2f} s waiting on "
                                    "copies"))
    return rows


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The summary of a run's metrics as aligned text lines (what ``kinsim run`` prints)."""
    rows = summary_rows(s)
    width = max(len(label) for label, _ in rows)
    return [f"{label:<{width}}  {value}" for label, value in rows]


def _score_words(scores: dict) -> str:
    """The ``scores`` section in words: mean and best-of-task scores, and GPU-seconds per task."""
    def per_task(part: dict) -> str:
        value = part["gpu_s_per_task"]
        return "-" if value is None else f"{value:.3g}"

    return (f"mean {scores['mean']:.3g} over {scores['requests']:,} requests, best per task "
            f"{scores['task_best_mean']:.3g} over {scores['tasks']:,} tasks; GPU-s per task "
            f"{scores['gpu_s_per_task']:.3g} (solved "
            f"{per_task(scores['solved'])}, unsolved {per_task(scores['unsolved'])})")
