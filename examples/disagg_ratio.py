"""What-if: how many of eight H100s should prefill and how many decode?

Disaggregated serving (``deployment.disaggregation``) runs prefill and decode on separate replicas and moves
each request's KV between them over NVLink. This sweeps the prefill:decode split of one 8-GPU node
(Qwen3-8B, one GPU per replica) against the aggregated deployment (eight replicas that do both), on two
workloads:

* ``chat``: ``workloads/chat_poisson.yaml`` cut to its first requests (Poisson arrivals at 40 requests/s,
  prompts around 1,000 tokens, answers around 500): prefill-heavy enough that the split matters for TTFT;
* ``aime_bon32``: ``workloads/aime_bon32.yaml`` cut to fewer problems (Best-of-32, 12k-token reasoning
  traces): almost all decode, so every GPU moved to prefill is lost to decoding.

Run: ``python examples/disagg_ratio.py [--chat-requests N] [--problems N] [--plot PATH]`` (about a minute
with the defaults). It prints one row per deployment: throughput, TTFT and TPOT, each role's utilisation,
and the handoff's figures (median transfer time, median wait for a decode seat).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import kinsim

ROOT = Path(__file__).resolve().parents[1]
GPUS = 8


def deployments() -> dict[str, dict]:
    """The aggregated baseline, then every prefill:decode split of the node's GPUs."""
    out = {"aggregated 8": {"deployment.data_parallel": GPUS}}
    for prefill in (1, 2, 3, 4):
        out[f"disagg {prefill}:{GPUS - prefill}"] = {
            "deployment.data_parallel": 1,
            "deployment.disaggregation": {"prefill": {"replicas": prefill}, "decode": {"replicas": GPUS - prefill}}}
    return out


WORKLOADS = {
    "chat": ("chat_poisson.yaml", lambda n: {"requests.problems": n}),
    "aime_bon32": ("aime_bon32.yaml", lambda n: {"requests.problems": n}),
}


def run(chat_requests: int = 4000, problems: int = 8) -> dict[str, dict[str, dict[str, float]]]:
    """Figures per workload and deployment."""
    hw = ROOT / "hardware" / "h100.yaml"
    sizes = {"chat": chat_requests, "aime_bon32": problems}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, (path, size) in WORKLOADS.items():
        out[name] = {}
        for label, changes in deployments().items():
            result = kinsim.simulate(ROOT / "workloads" / path, hw, {**size(sizes[name]), **changes})
            d = result.to_dict()
            split = d.get("disaggregation")
            out[name][label] = {
                "tokens_per_s": result["throughput.output_tokens_per_s"],
                "tasks_per_s": result["throughput.tasks_per_s"],
                "ttft_p50": result["latency.request.ttft.p50"], "ttft_p99": result["latency.request.ttft.p99"],
                "tpot_p50": result["latency.request.tpot.p50"], "tpot_p99": result["latency.request.tpot.p99"],
                "prefill_util": split["prefill"]["utilization"] if split else float("nan"),
                "decode_util": split["decode"]["utilization"] if split else float("nan"),
                "transfer_p50": split["transfer_s"]["p50"] if split else float("nan"),
                "queue_p50": split["decode_queue_s"]["p50"] if split else float("nan"),
                "kv_moved": split["kv_transferred_bytes"] if split else 0.0,
                "completed": result["requests.completed"],
            }
    return out


def table(figures: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    for name, rows in figures.items():
        lines.append(f"\n{name}")
        lines.append(f"{'deployment':<14}{'tok/s':>9}{'tasks/s':>9}{'TTFT p50':>10}{'TTFT p99':>10}{'TPOT p50':>10}"
                     f"{'TPOT p99':>10}{'P util':>8}{'D util':>8}{'xfer p50':>10}{'queue p50':>10}{'KV moved':>10}")
        for label, f in rows.items():
            lines.append(f"{label:<14}{f['tokens_per_s']:>9,.0f}{f['tasks_per_s']:>9.3f}{f['ttft_p50'] * 1e3:>8.1f}ms"
                         f"{f['ttft_p99'] * 1e3:>8.1f}ms{f['tpot_p50'] * 1e3:>8.2f}ms{f['tpot_p99'] * 1e3:>8.2f}ms"
                         f"{f['prefill_util']:>8.0%}{f['decode_util']:>8.0%}{f['transfer_p50'] * 1e3:>8.2f}ms"
                         f"{f['queue_p50'] * 1e3:>8.1f}ms{f['kv_moved'] / 1e9:>8.0f}GB")
    return "\n".join(lines).replace("nan%", "   -").replace("nanms", "   -")


def plot(figures: dict[str, dict[str, dict[str, float]]], path: str) -> None:
    """Throughput and TTFT p99 per deployment, one panel pair per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(figures), figsize=(5 * len(figures), 6.5), squeeze=False)
    for col, (name, rows) in enumerate(figures.items()):
        labels = list(rows)
        axes[0, col].bar(labels, [rows[k]["tokens_per_s"] for k in labels], color="tab:blue")
        axes[0, col].set_title(f"{name}: output tokens/s")
        axes[1, col].bar(labels, [rows[k]["ttft_p99"] * 1e3 for k in labels], color="tab:orange")
        axes[1, col].set_title(f"{name}: TTFT p99 (ms)")
        axes[1, col].set_yscale("log")
        for ax in axes[:, col]:
            ax.tick_params(axis="x", rotation=30)
    fig.suptitle("Qwen3-8B on 8 x H100: aggregated vs prefill:decode splits")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chat-requests", type=int, default=4000)
    parser.add_argument("--problems", type=int, default=8, help="AIME problems (32 samples each)")
    parser.add_argument("--plot", help="write a PNG of the figures here")
    args = parser.parse_args(argv)
    figures = run(args.chat_requests, args.problems)
    print(table(figures))
    if args.plot:
        plot(figures, args.plot)
        print(f"\nplot: {args.plot}")
    return figures


if __name__ == "__main__":
    main()
