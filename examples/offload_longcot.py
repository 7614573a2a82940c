"""Long chains of thought with the KV in host memory: H100 (PCIe) against GH200 (NVLink-C2C).

The question (issue 18): for long CoT at 32k and 128k tokens of context, on one H100 (host link PCIe Gen5,
63 GB/s each way) and one GH200 (NVLink-C2C, 900 GB/s in all, 450 GB/s each way), how do dense attention
with the KV in HBM, block top-k with the KV in HBM, and block top-k over KV offloaded to host memory compare
in tasks/s, in the batch they reach, and in where the time goes?

The workload is aime_longcot (Qwen3-8B) on one GPU (``data_parallel: 1``) with 128 problems, one chain each,
every chain generating until its context is full (32,768 or 131,072 tokens less 256 for the 100-200 token
prompt: a constant output length). Qwen3-8B's preset says 40,960 positions; 131,072 is its context with
YaRN scaling (the model card), so the runs set ``model.max_position_embeddings: 131072`` (kinsim does not
check a context against it; YaRN only rescales the RoPE frequencies, no cost). Block top-k is Kinetics'
(blocks of 16 tokens, the top 64 per step, a local window of 16); the offloaded one keeps a GPU cache of 128
selected blocks per sequence with half the selected blocks found there (``gpu_cache_blocks: 128,
cache_hit_rate: 0.5``), and once more without a cache. The table gives, per hardware x context x policy,
tasks/s, the decode batch (mean over decode steps, and peak), preemptions (by recompute), and the shares of
the GPU's busy time in attention, block selection, the host-link fetch, the linear layers and the rest. The
prompts are short, so every policy admits all the chains at first: the peak is the number of chains, and
the KV in HBM then forces preemptions until the batch is what the mean shows.

What it shows (approximate figures of the default run):

* In HBM the KV bounds the batch: about 20 sequences decode at once at 32k and 5 at 128k on the H100 (25
  and 7 on the GH200's 96 GB), with hundreds of preemptions (about a thousand at 128k). Block top-k reads
  a fixed budget of KV, so attention falls from about 2/3 of the busy time to 5-13% (plus 6-8% for
  scoring the block summaries) and tasks/s rise 2.4-3x over dense; with so small a batch, reading the
  weights (the linear layers, 50-65%) and the serving engine's time per step are most of what is left.
* Offloaded, HBM holds each sequence's block summaries (72 KiB per 16 tokens: 144 MiB at 32k, 576 MiB at
  128k) and its cache (128 blocks: 288 MiB), but host memory must hold its full KV (147,456 B a token:
  4.8 GB at 32k, 19.3 GB at 128k) in the GPU's share of it (``deployment.host_kv_fraction`` 0.5: 2 TB / 8
  GPUs x 0.5 = 125 GB on the H100 node, 240 GB on the GH200). So about 43 sequences decode at once at 32k
  and 12 at 128k on the H100, 79 and 23 on the GH200: more than in HBM, far fewer than HBM alone would
  allow. Every step fetches the half of the selected blocks the cache misses (512 tokens x 144 KiB, 72 MiB
  per sequence) over the host link, before each layer's attention: the fetch is 60-80% of the busy time on
  the H100, 25-45% on the GH200.
* On the H100 that fetch makes offloading lose: about 0.018 against 0.06 tasks/s for block top-k in HBM at
  32k (0.3x), 0.0033 against 0.0044 at 128k (0.75x). On the GH200 the link carries 7.5 times as much (405
  against 54 GB/s, after efficiency): offloading ties at 32k (0.077 against 0.075 tasks/s) and wins 1.8x at
  128k (0.011 against 0.006).
* Without the cache the host share holds the same sequences but each step fetches twice the bytes: tasks/s
  fall by 20-45%.

Run: python examples/offload_longcot.py [--plot FILE] [--quick]   (--quick: 16 problems, for the tests)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import kinsim
from kinsim.result import step_columns

ROOT = Path(__file__).resolve().parents[1]
HARDWARE = {"H100": "h100.yaml", "GH200": "gh200.yaml"}
CONTEXTS = {"32k": 32_768, "128k": 131_072}
PROMPT_ROOM = 256  # tokens of each context left for the prompt (aime_longcot's prompts are 100-200 tokens)
BLOCK_TOPK = {"policy": "block_topk", "block_size": 16, "top_k": 64, "local_window": 16, "sink_tokens": 0}
POLICIES = {
    "dense": {"policy": "dense"},
    "top-k HBM": BLOCK_TOPK,
    "top-k offload": {**BLOCK_TOPK, "offload": True, "gpu_cache_blocks": 128, "cache_hit_rate": 0.5},
    "top-k offload, no cache": {**BLOCK_TOPK, "offload": True},
}


def run(hardware: str, context: int, attention: dict[str, Any], problems: int) -> dict[str, float]:
    """One simulation's figures: tasks/s, decode batch (mean over decode steps, peak), preemptions, and the
    shares of the GPU's busy time in attention (reading KV in HBM), block selection (scoring the summaries),
    the host-link fetch, the linear layers (weights) and everything else (the serving engine's host time per
    step, norms, sampling)."""
    overrides = {"deployment.data_parallel": 1, "requests.problems": problems,
                 "requests.output_tokens": context - PROMPT_ROOM, "requests.max_output_tokens": context - PROMPT_ROOM,
                 "model.max_position_embeddings": 131_072, "attention": attention}
    result = kinsim.simulate(ROOT / "workloads" / "aime_longcot.yaml", ROOT / "hardware" / HARDWARE[hardware],
                             overrides)
    segments = step_columns(result.records)
    steps, batch = segments["steps"], segments["decode_seqs"]
    by_class = result["breakdown_s"]
    busy_s = sum(by_class.values())
    # The fetch is priced into attention: the link's busy time plus its latency once per layer in every step
    # that fetches (here every decode step: prompts of 100+ tokens select blocks from the first one).
    fetching_steps = steps[segments["host_link_bytes"] > 0].sum()
    latency_s = result.workload.model.layers * result.hardware.node.host_link.latency
    fetch_s = result["host_link.busy_s"] + fetching_steps * latency_s
    seconds = {"attention": by_class["attention"] - fetch_s, "selection": by_class["selection"], "fetch": fetch_s,
               "linear": by_class["linear"]}
    seconds["other"] = busy_s - sum(seconds.values())
    return {"tasks_per_s": result["throughput.tasks_per_s"],
            "mean_batch": float((steps * batch).sum() / steps[batch > 0].sum()),
            "peak_batch": int(batch.max()),
            "preemptions": int(sum(result["memory.preemptions"].values())),
            **{name: s / busy_s for name, s in seconds.items()}}


def plot(figures: dict[tuple[str, str, str], dict[str, float]], path: str | Path) -> None:
    """Bars of tasks/s (log scale) and mean decode batch per hardware and context, one bar per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(hw, ctx) for hw, ctx, _ in figures}, key=lambda g: (list(HARDWARE).index(g[0]),
                                                                           list(CONTEXTS).index(g[1])))
    x = np.arange(len(groups))
    width = 0.8 / len(POLICIES)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, policy in enumerate(POLICIES):
        for ax, key in zip(axes, ("tasks_per_s", "mean_batch")):
            ax.bar(x + (i - (len(POLICIES) - 1) / 2) * width, [figures[(*g, policy)][key] for g in groups],
                   width, label=policy)
    for ax, title in zip(axes, ("tasks/s", "mean decode batch (sequences)")):
        ax.set_xticks(x, [f"{hw}\n{ctx}" for hw, ctx in groups])
        ax.set_title(title)
    axes[0].set_yscale("log")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(POLICIES), fontsize=8)
    fig.suptitle("Long CoT, Qwen3-8B on one GPU: KV in HBM or offloaded to host memory")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def main(quick: bool = False, plot_file: str | Path | None = None) -> dict[tuple[str, str, str], dict[str, float]]:
    """Run every hardware x context x policy, print the table, and return its figures keyed by
    ``(hardware, context, policy)``. ``quick``: 16 problems instead of 128 (for the tests)."""
    problems = 16 if quick else 128
    figures = {(hw, ctx, policy): run(hw, CONTEXTS[ctx], attention, problems)
               for hw in HARDWARE for ctx in CONTEXTS for policy, attention in POLICIES.items()}
    print(f"{problems} long CoT chains, Qwen3-8B, one GPU; time shares of the GPU's busy time")
    print(f"{'hardware':8} {'context':7} {'policy':24} {'tasks/s':>8} {'batch':>6} {'peak':>5} {'preempt':>7} "
          f"{'attn':>5} {'select':>6} {'fetch':>5} {'linear':>6} {'other':>5}")
    for (hw, ctx, policy), f in figures.items():
        print(f"{hw:8} {ctx:7} {policy:24} {f['tasks_per_s']:8.4f} {f['mean_batch']:6.1f} {f['peak_batch']:5d} "
              f"{f['preemptions']:7d} {f['attention']:5.0%} {f['selection']:6.0%} {f['fetch']:5.0%} {f['linear']:6.0%} "
              f"{f['other']:5.0%}")
    if plot_file is not None:
        plot(figures, plot_file)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="FILE", help="save a bar chart (PNG, SVG, ... by the suffix)")
    parser.add_argument("--quick", action="store_true", help="16 problems instead of 128")
    args = parser.parse_args()
    main(quick=args.quick, plot_file=args.plot)
