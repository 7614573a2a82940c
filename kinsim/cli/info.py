"""``kinsim info FILE [--json]``: derived figures of a hardware, workload, model or trace file.

For a request trace (kinsim's own, Azure, BurstGPT or Mooncake) it prints what a workload would replay:
requests, duration, mean and peak arrival rate, length percentiles, shared-prefix share, and what was
skipped; the trace options of a workload (``--format``, ``--model``, ``--start``...) apply, and
``--plot OUT`` draws the arrival rate and the length distributions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kinsim.cli.options import add_set_option, overrides_of
from kinsim.cost.engine_overhead import engine_overhead
from kinsim.describe import describe_hardware, describe_model, describe_workload
from kinsim.errors import SpecError
from kinsim.inputs import input_kind, load_input
from kinsim.outputs import Outputs
from kinsim.schema import build
from kinsim.units import format_number, parse_quantity
from kinsim.units import format_quantity as fq
from kinsim.workload.formats import FORMATS, read_table
from kinsim.workload.replay import CHANGES, SKIP_REASONS, select
from kinsim.workload.spec import TraceRequests, schedules_ahead
from kinsim.workload.trace_summary import summarize_trace


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info", help="derived figures of a hardware, workload, model or trace file",
        description="Print derived figures: ridge points and bandwidths for hardware; parameter counts "
                    "and KV bytes per token for a model (a preset name such as Qwen3-8B, or a "
                    "config.json); request and token counts for a workload; for a request trace (kinsim's own, "
                    "Azure, BurstGPT or Mooncake, told by its first line) the requests a workload would replay "
                    "with the trace options below: duration, mean and peak arrival rate, prompt and output "
                    "length percentiles, shared-prefix share, and the rows skipped and why.")
    parser.add_argument("file", metavar="FILE", help="hardware/workload YAML, model preset or config.json, "
                        "or trace")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_set_option(parser)
    trace = parser.add_argument_group(
        "trace options", "for a trace file: the keys of a workload's requests: {kind: trace} (docs/file-formats.md)")
    trace.add_argument("--format", default=None, choices=FORMATS, help="trace format (default: auto, told by "
                       "the first line)")
    trace.add_argument("--model", default=None, help="only the rows of this model (BurstGPT)")
    trace.add_argument("--keep-failed", action="store_true",
                       help="replay rows with no output tokens with one output token instead of skipping them")
    trace.add_argument("--start", default=None, metavar="TIME",
                       help="from this long after the trace's first request (\"2 h\", or seconds)")
    trace.add_argument("--duration", default=None, metavar="TIME", help="only this long after --start")
    trace.add_argument("--rate-scale", type=float, default=None, metavar="K", help="replay at K times the rate")
    trace.add_argument("--sample", type=float, default=None, metavar="P",
                       help="keep each row with probability P (drawn from --seed)")
    trace.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    trace.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N", help="cap prompt lengths")
    trace.add_argument("--max-output-tokens", type=int, default=None, metavar="N", help="cap output lengths")
    trace.add_argument("--hash-block-tokens", type=int, default=None, metavar="N",
                       help="tokens per hash id (default 512, as in the Mooncake traces)")
    trace.add_argument("--plot", default=None, metavar="OUT",
                       help="draw the arrival rate over time and the length distributions into OUT (.png, .svg "
                            "or .pdf)")
    parser.set_defaults(run=run)


#: The trace options of ``kinsim info``, by the TraceRequests key they set.
TRACE_OPTIONS = ("format", "model", "start", "duration", "rate_scale", "sample", "max_prompt_tokens",
                 "max_output_tokens", "hash_block_tokens")


def trace_source(args: argparse.Namespace) -> TraceRequests:
    """The trace options of the command line as a validated ``requests: {kind: trace}``; errors name the
    option (``--rate-scale: must be positive, got -1.0``)."""
    raw: dict[str, Any] = {"path": args.file}
    for key in TRACE_OPTIONS:
        value = getattr(args, key)
        if value is None:
            continue
        if key in ("start", "duration"):
            value = _seconds(value)
        raw[key] = value
    if args.keep_failed:
        raw["skip_failed"] = False
    try:
        return build(TraceRequests, raw)
    except SpecError as error:
        option = "--" + error.path.split(".")[0].replace("_", "-")
        raise SpecError(error.rule, path=option, value=error.value, hint=error.hint) from None


def _seconds(text: str) -> str:
    """A time option: a quantity (``"2 h"``) or a plain number of seconds."""
    try:
        return f"{float(text)!r} s"
    except ValueError:
        return text


def _trace_options_given(args: argparse.Namespace) -> list[str]:
    given = [key for key in TRACE_OPTIONS if getattr(args, key) is not None]
    return given + (["keep_failed"] if args.keep_failed else []) + (["plot"] if args.plot else [])


def run(args: argparse.Namespace) -> int:
    if input_kind(args.file) == "trace":
        return _run_trace(args)
    given = _trace_options_given(args)
    if given:
        raise SpecError("applies to a trace file only", path="--" + given[0].replace("_", "-"), value=args.file)
    if input_kind(args.file) in ("sweep", "suite"):
        raise SpecError(f"kinsim info describes hardware, models, workloads and traces, not a {input_kind(args.file)} "
                        "file", file=args.file, hint=f"kinsim validate {args.file} checks it")
    loaded = load_input(args.file, overrides_of(args))
    if loaded.kind == "hardware":
        figures, lines = describe_hardware(loaded.spec), _hardware_lines
    elif loaded.kind == "model":
        figures, lines = describe_model(loaded.spec), _model_lines
    else:
        figures, lines = describe_workload(loaded.spec, loaded.requests), _workload_lines
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print("\n".join(lines(figures)))
    return 0


def _run_trace(args: argparse.Namespace) -> int:
    if overrides_of(args):
        raise SpecError("--set does not apply to a trace file", file=args.file)
    with Outputs() as outputs:
        plot = outputs.file("--plot", args.plot, figure=True)
        source = trace_source(args)
        selection = select(read_table(source.path, source.format), source, args.seed)
        figures = summarize_trace(selection)
        if plot is not None:
            from kinsim.report.trace_plots import plot_trace

            outputs.write_figure("--plot", plot_trace(selection, f"{Path(args.file).name} ({figures['format']}): "
                                                                 f"{figures['requests']:,} requests"))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print("\n".join(trace_lines(figures)))
    return 0


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(label) for label, _ in rows)
    return [f"{label:<{width}}  {value}" for label, value in rows]


def _hardware_lines(f: dict[str, Any]) -> list[str]:
    spec = f["spec"]
    peaks = ", ".join(f"{d} {fq('flop_rate', r)}" for d, r in f["peak_flop_per_s"].items())
    ridges = ", ".join(f"{d} {r:.1f}" for d, r in f["ridge_flop_per_byte"].items())
    link = spec["node"]["gpu_link"]
    rows = [
        ("hardware", f"{f['name']}: {f['gpu_name']}"),
        ("peak (dense)", peaks),
        ("ridge FLOP/byte", ridges),
        ("memory per GPU", f"{fq('bytes', f['hbm_bytes_per_gpu'])} {spec['gpu']['memory']['technology']} at "
                           f"{fq('bandwidth', f['hbm_bandwidth_per_gpu'])} over {f['hbm_channels']} channels "
                           f"({fq('bandwidth', f['hbm_channel_bandwidth'])} each)"),
        ("L2 cache", fq("bytes", f["l2_cache_bytes"])),
        ("launch overhead", fq("time", f["launch_overhead_s"])),
        ("node", f"{f['gpus_per_node']} GPUs, {link['kind']} {link['topology']}, "
                 f"{fq('bandwidth', f['gpu_link_bandwidth'])} per GPU each way"),
        ("GPU-to-GPU", fq("bandwidth", f["gpu_to_gpu_bandwidth"]) + " each way (bottleneck of one pair)"),
        ("host link", f"{fq('bandwidth', f['host_link_bandwidth'])} each way ({spec['node']['host_link']['kind']}), "
                      f"bulk copies {fq('bandwidth', f['host_link_dma_bandwidth'])}"
                      + (f", shared by {f['host_link_shared_by']} GPUs" if f["host_link_shared_by"] > 1 else "")),
        ("system", f"{f['nodes']} node(s), {f['total_gpus']} GPUs, {fq('bytes', f['total_hbm_bytes'])} of "
                   f"{spec['gpu']['memory']['technology']}, "
                   f"{fq('bandwidth', f['total_hbm_bandwidth'])} aggregate"),
        ("power", f"{fq('power', f['tdp_w'])} TDP per GPU"),
    ]
    if f["network_bandwidth_per_gpu"] is not None:
        rows.insert(9, ("network", fq("bandwidth", f["network_bandwidth_per_gpu"]) + " per GPU each way"))
    return _table(rows)


def _model_lines(f: dict[str, Any]) -> list[str]:
    spec = f["spec"]
    mla = spec.get("mla")
    if mla:
        shape = (f"{spec['layers']} layers, hidden {spec['hidden_size']}, multi-head latent attention: "
                 f"{spec['attention_heads']} heads of {spec['head_dim']}, a {mla['kv_lora_rank']} + "
                 f"{mla['qk_rope_head_dim']} latent cached")
    else:
        shape = (f"{spec['layers']} layers, hidden {spec['hidden_size']}, {spec['attention_heads']} query / "
                 f"{spec['kv_heads']} KV heads of {spec['head_dim']}")
    if spec["moe"]:
        moe = spec["moe"]
        shape += f", {moe['experts']} experts ({moe['active_experts']} active) of {moe['expert_intermediate_size']}"
        if moe.get("dense_layers"):
            shape += f" (the first {moe['dense_layers']} layers: MLP {spec['intermediate_size']})"
    else:
        shape += f", MLP {spec['intermediate_size']}"
    if spec.get("sliding_window_layers"):
        shape += f"; {spec['sliding_window_layers']} layers over a {spec['sliding_window']}-token window"
    weights = f"{fq('bytes', f['weight_bytes'])} in {f['weight_dtype']}"
    if f.get("expert_weight_dtype") not in (None, f["weight_dtype"]):
        weights += f", the routed experts in {f['expert_weight_dtype']}"
    per_token = f"{f['kv_bytes_per_token']:,.0f} bytes in {f['kv_dtype']}"
    if spec.get("sliding_window_layers"):
        per_token += " (the full-attention layers)"
    return _table([
        ("model", f"{f['name']} ({f['architecture']})"),
        ("shape", shape),
        ("parameters", f"{f['params_total'] / 1e9:.3f} B total, {f['params_active'] / 1e9:.3f} B active"),
        ("weights", weights),
        ("KV per token", per_token),
        ("KV at 32k tokens", fq("bytes", f["kv_bytes_at_32k"])),
    ])


def _requests_lines(f: dict[str, Any]) -> list[str]:
    return _table([
        ("requests", f"{f['requests']:,} in {f['groups']:,} groups"),
        ("prompt tokens", f"{f['prompt_tokens_total']:,} ({f['prompt_tokens_unique']:,} unique, shared within groups)"),
        ("output tokens", f"{f['output_tokens_total']:,}: mean {f['output_tokens_mean']:,.0f}, "
                          f"p50 {f['output_tokens_p50']:,.0f}, p99 {f['output_tokens_p99']:,.0f}, "
                          f"max {f['output_tokens_max']:,}"),
        ("last arrival", fq("time", f["last_arrival_s"]) if f["last_arrival_s"] else "0 s"),
    ])


def _duration(seconds: float) -> str:
    """A trace's span in the unit that reads best (traces run from seconds to weeks)."""
    if seconds == 0:
        return "0 s (all at once)"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:,.2f} {unit} ({seconds:,.0f} s)"
    return fq("time", seconds)


def trace_lines(f: dict[str, Any]) -> list[str]:
    """The text of ``kinsim info TRACE``."""
    def rate(per_s: float | None) -> str:
        return "-" if per_s is None else format_number(per_s, 3)

    def dist(d: dict[str, Any]) -> str:
        return (f"total {d['total']:,}: mean {d['mean']:,.0f}, p50 {d['p50']:,.0f}, p90 {d['p90']:,.0f}, "
                f"p99 {d['p99']:,.0f}, max {d['max']:,}")

    skipped = [f"{n:,} {SKIP_REASONS[k]}" for k, n in f["skipped"].items() if n]
    rows = [
        ("trace", f"{f['format']}: {f['requests']:,} requests replayed of {f['rows']:,} rows"),
        ("skipped", ", ".join(skipped) if skipped else "none"),
    ]
    changed = [f"{f[key]:,} {text}" for key, text in CHANGES if f[key]]
    if changed:
        rows.append(("changed", ", ".join(changed)))
    if f["models"]:
        rows.append(("models", ", ".join(f"{name} {count:,} rows" for name, count in f["models"].items())))
    rows += [
        ("duration", _duration(f["duration_s"])),
        ("arrival rate", f"mean {rate(f['rate_mean_per_s'])}/s ({rate(f['rate_mean_per_min'])}/min), "
                         f"peak {f['rate_peak_per_s']:,}/s, {f['rate_peak_per_min']:,}/min"),
        ("prompt tokens", dist(f["prompt_tokens"])),
        ("output tokens", dist(f["output_tokens"])),
    ]
    if f["shared_prefix_share"] is not None:
        rows.append(("shared prefix", f"{f['shared_prefix_share']:.1%} of prompt blocks ({f['hash_block_tokens']} "
                                      "tokens each) seen in an earlier request"))
    return _table(rows)


def _replicas_words(dep: dict[str, Any]) -> str:
    """``TP 1 x DP 8``, or for a disaggregated deployment ``prefill 2 x TP 1 + decode 6 x TP 1`` (with a role's
    own hardware file named)."""
    split = dep.get("disaggregation")
    if not split:
        return f"TP {dep['tensor_parallel']} x DP {dep['data_parallel']}"
    parts = []
    for role in ("prefill", "decode"):
        spec = split[role]
        tp = dep["tensor_parallel"] if spec.get("tensor_parallel") is None else spec["tensor_parallel"]
        on = f" on {Path(spec['hardware']).name}" if spec.get("hardware") else ""
        parts.append(f"{role} {spec['replicas']} x TP {tp}{on}")
    return " + ".join(parts)


def _engine_words(dep: dict[str, Any]) -> str:
    """``vllm 0.18.0: 0.137 ms + 49.4 us a sequence each step, frontend 26.8 ms, plans a step ahead``: the
    serving engine, its release where given, the host-time preset that release takes
    (:mod:`kinsim.cost.engine_overhead`) and whether it plans each step while the previous one runs."""
    version = dep.get("engine_version")
    preset = engine_overhead(dep["engine"], version)
    frontend = preset.frontend_s if dep.get("frontend_s") is None else parse_quantity("time", dep["frontend_s"])
    ahead = schedules_ahead(dep["engine"], version) if dep.get("schedule_ahead") is None else dep["schedule_ahead"]
    name = dep["engine"] if version is None else f"{dep['engine']} {version}"
    return (f"{name}: {preset.step_s * 1e3:.3g} ms + {preset.per_sequence_s * 1e6:.3g} us a sequence each step, "
            f"frontend {frontend * 1e3:.3g} ms" + (", plans a step ahead" if ahead else ""))


def _workload_lines(f: dict[str, Any]) -> list[str]:
    dep = f["spec"]["deployment"]
    head = _table([
        ("workload", f["name"]),
        ("model", f"{f['model']['name']}: {f['model']['params_total'] / 1e9:.2f} B parameters, "
                  f"{f['model']['kv_bytes_per_token']:,.0f} KV bytes per token"),
        ("deployment", f"{_replicas_words(dep)} = {f['gpus']} GPUs, "
                       f"up to {dep['max_num_seqs']} sequences and {dep['max_num_batched_tokens']} tokens per step"),
        ("engine", _engine_words(dep)),
        ("attention", f["attention_policy"]),
        ("source", f["requests_kind"]),
    ])
    return head + _requests_lines(f)
