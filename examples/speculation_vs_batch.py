"""Self-speculation against batch size at long context (the MagicDec question, arXiv 2408.11049), Qwen3-8B on
one H100: speed-up of speculative decoding over plain decoding, per generated token.

The draft is the target itself reading a sliding window of 512 tokens plus 16 sink tokens (StreamingLLM, as
MagicDec's self-speculation), k = 3 draft tokens, acceptance 0.8 (geometric: tau = (1 - 0.8^4) / 0.2 = 2.952
tokens per verify step; MagicDec reports acceptance rates of about 0.7-0.9 for such drafts). The target
runs dense attention or block top-k (16-token blocks, the best 64 per step, the last 16 tokens: Kinetics'
setting, a budget of 1,040 tokens). Each row prices one step of a batch whose sequences all hold CONTEXT
tokens, with kinsim's engine pricer (the kernels and the serving engine's host time):

    speed-up = (plain decode step) / (speculative step / tau)

Rows whose KV does not fit one H100 (the last column) are step-time comparisons only: a real deployment
would need more GPUs or offloading. With dense attention the verify pass reads each sequence's KV once for
k + 1 tokens while the draft reads only its window, so the longer the context the more speculation pays,
and at long context the batch does not make decode compute-bound (MagicDec's point); block top-k already
bounds the target's KV reads, which leaves speculation less to save.

Run: python examples/speculation_vs_batch.py [--plot speedup.png] [--batches 1,8,32,128,256]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

import kinsim
from kinsim.cost.roofline import RooflineCost
from kinsim.engine.kv import kv_layout
from kinsim.engine.pricer import StepPricer
from kinsim.engine.speculation import expected_tokens
from kinsim.workload.load import workload_from_raw

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 8, 32, 128, 256)
CONTEXTS = (8192, 32768)
TOKENS, ACCEPTANCE = 3, 0.8
TARGETS = {"dense": {"policy": "dense"},
           "block_topk": {"policy": "block_topk", "block_size": 16, "top_k": 64, "local_window": 16}}


def workload(attention: dict, batch: int) -> kinsim.WorkloadSpec:
    """Qwen3-8B on one GPU, self-speculation with the default draft window (512 + 16 sink tokens)."""
    raw = {"name": "speculation_vs_batch", "model": "Qwen3-8B", "attention": attention,
           "deployment": {"max_num_seqs": max(batch, 1), "max_num_batched_tokens": max(8192, batch * (TOKENS + 1)),
                          "speculative": {"tokens": TOKENS, "acceptance": ACCEPTANCE}},
           "requests": {"kind": "long_cot", "problems": 1, "prompt_tokens": 100, "output_tokens": 10,
                        "max_output_tokens": 10}}
    return workload_from_raw(raw, base_dir=ROOT)


def speedup(hw: kinsim.HardwareSpec, attention: dict, batch: int, context: int) -> tuple[float, bool]:
    """Plain step time / (speculative step time / tau) for ``batch`` sequences of ``context`` tokens, and
    whether their KV fits one GPU."""
    w = workload(attention, batch)
    cost = RooflineCost(hw)
    contexts = np.full(batch, context, dtype=np.int64)
    plain = StepPricer(w.model, dataclasses.replace(w.deployment, speculative=None), w.attention, cost)
    plain_s = float(plain.decode_run(contexts, 1).time_s[0])
    spec = StepPricer(w.model, w.deployment, w.attention, cost).speculative
    spec_s = float(spec.price(contexts[None, :]).time_s[0])
    layout = kv_layout(w.model, w.deployment, w.attention, hw)
    fits = batch * -(-(context + 1) // layout.block_size) <= layout.total_blocks
    return plain_s / (spec_s / expected_tokens(ACCEPTANCE, TOKENS)), fits


def main(batches=BATCHES, contexts=CONTEXTS, plot: str | None = None) -> dict[tuple[str, int, int], float]:
    hw = kinsim.load_hardware(ROOT / "hardware" / "h100.yaml")
    table: dict[tuple[str, int, int], float] = {}
    print(f"speed-up of self-speculation (window 512 + 16 sink, k = {TOKENS}, alpha {ACCEPTANCE}) over plain "
          "decoding, Qwen3-8B, one H100")
    print(f"{'target':<11}{'context':>8}{'batch':>7}{'speed-up':>10}  KV fits one GPU")
    for name, attention in TARGETS.items():
        for context in contexts:
            for batch in batches:
                value, fits = speedup(hw, attention, batch, context)
                table[(name, context, batch)] = value
                print(f"{name:<11}{context:>8}{batch:>7}{value:>9.2f}x  {'yes' if fits else 'no'}")
    if plot:
        _plot(table, batches, contexts, plot)
    return table


def _plot(table, batches, contexts, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name in TARGETS:
        for context, style in zip(contexts, ("-", "--")):
            ax.plot(batches, [table[(name, context, b)] for b in batches], style, marker="o",
                    label=f"{name}, {context // 1024}k context")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("speed-up over plain decoding")
    ax.set_title("Self-speculation, Qwen3-8B on H100")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", help="write the figure to this file (PNG, SVG...)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="comma-separated batch sizes")
    args = parser.parse_args()
    main(tuple(int(b) for b in args.batches.split(",")), plot=args.plot)
