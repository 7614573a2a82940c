"""``kinsim info FILE [--json]``: derived figures of a hardware, workload, model or trace file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kinsim.cli.options import add_set_option, overrides_of
from kinsim.describe import describe_hardware, describe_model, describe_trace, describe_workload
from kinsim.inputs import load_input
from kinsim.units import format_quantity as fq


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info", help="derived figures of a hardware, workload, model or trace file",
        description="Print derived figures: ridge points and bandwidths for hardware; parameter counts "
                    "and KV bytes per token for a model (a preset name such as Qwen3-8B, or a "
                    "config.json); request and token counts for a workload or trace.")
    parser.add_argument("file", metavar="FILE", help="hardware/workload YAML, model preset or config.json, "
                        "or trace")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_set_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_input(args.file, overrides_of(args))
    if loaded.kind == "hardware":
        figures, lines = describe_hardware(loaded.spec), _hardware_lines
    elif loaded.kind == "model":
        figures, lines = describe_model(loaded.spec), _model_lines
    elif loaded.kind == "workload":
        figures, lines = describe_workload(loaded.spec, loaded.requests), _workload_lines
    else:
        figures, lines = describe_trace(loaded.requests), _requests_lines
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print("\n".join(lines(figures)))
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
        ("HBM per GPU", f"{fq('bytes', f['hbm_bytes_per_gpu'])} at {fq('bandwidth', f['hbm_bandwidth_per_gpu'])}"
                        f" over {f['hbm_channels']} channels ({fq('bandwidth', f['hbm_channel_bandwidth'])} each)"),
        ("L2 cache", fq("bytes", f["l2_cache_bytes"])),
        ("launch overhead", fq("time", f["launch_overhead_s"])),
        ("node", f"{f['gpus_per_node']} GPUs, {link['kind']} {link['topology']}, "
                 f"{fq('bandwidth', f['gpu_link_bandwidth'])} per GPU each way"),
        ("GPU-to-GPU", fq("bandwidth", f["gpu_to_gpu_bandwidth"]) + " each way (bottleneck of one pair)"),
        ("host link", fq("bandwidth", f["host_link_bandwidth"]) + " each way"),
        ("system", f"{f['nodes']} node(s), {f['total_gpus']} GPUs, {fq('bytes', f['total_hbm_bytes'])} HBM, "
                   f"{fq('bandwidth', f['total_hbm_bandwidth'])} aggregate"),
        ("power", f"{fq('power', f['tdp_w'])} TDP per GPU"),
    ]
    if f["network_bandwidth_per_gpu"] is not None:
        rows.insert(9, ("network", fq("bandwidth", f["network_bandwidth_per_gpu"]) + " per GPU each way"))
    return _table(rows)


def _model_lines(f: dict[str, Any]) -> list[str]:
    spec = f["spec"]
    shape = (f"{spec['layers']} layers, hidden {spec['hidden_size']}, {spec['attention_heads']} query / "
             f"{spec['kv_heads']} KV heads of {spec['head_dim']}")
    if spec["moe"]:
        moe = spec["moe"]
        shape += f", {moe['experts']} experts ({moe['active_experts']} active) of {moe['expert_intermediate_size']}"
    else:
        shape += f", MLP {spec['intermediate_size']}"
    return _table([
        ("model", f"{f['name']} ({f['architecture']})"),
        ("shape", shape),
        ("parameters", f"{f['params_total'] / 1e9:.3f} B total, {f['params_active'] / 1e9:.3f} B active"),
        ("weights", f"{fq('bytes', f['weight_bytes'])} in {f['weight_dtype']}"),
        ("KV per token", f"{f['kv_bytes_per_token']:,.0f} bytes in {f['kv_dtype']}"),
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


def _workload_lines(f: dict[str, Any]) -> list[str]:
    dep = f["spec"]["deployment"]
    head = _table([
        ("workload", f["name"]),
        ("model", f"{f['model']['name']}: {f['model']['params_total'] / 1e9:.2f} B parameters, "
                  f"{f['model']['kv_bytes_per_token']:,.0f} KV bytes per token"),
        ("deployment", f"TP {dep['tensor_parallel']} x DP {dep['data_parallel']} = {f['gpus']} GPUs, "
                       f"up to {dep['max_num_seqs']} sequences and {dep['max_num_batched_tokens']} tokens per step"),
        ("attention", f["attention_policy"]),
        ("source", f["requests_kind"]),
    ])
    return head + _requests_lines(f)
