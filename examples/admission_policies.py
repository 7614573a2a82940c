"""What-if: admit greedily (vLLM, SGLang) or only what can finish without eviction (TensorRT-LLM's default
``GUARANTEED_NO_EVICT``), on Best-of-32 long chains of thought (``workloads/aime_bon32.yaml``, 8 H100s).

Greedy admission starts a sample as soon as its prompt's KV fits; the running samples then outgrow the cache,
and the newest are preempted and prefilled again later. ``no_evict`` admits a sample only when the cache can
hold it at its full length, the 32,768-token cap the client sends as ``max_tokens``, beside what every running
sample may still take: nothing is preempted, but samples wait for room before their first token and the
batches are smaller. The figures are kinsim's (``deployment.admission``); the plot shows the samples
finished over time.

Run: python examples/admission_policies.py [--plot admission.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import kinsim

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("greedy", "no_evict")


def main(plot_file: str | Path | None = None) -> dict[str, dict[str, float]]:
    """Both policies' figures (seconds, counts); with ``plot_file``, the samples finished over time as a PNG."""
    workload = kinsim.load_workload(ROOT / "workloads" / "aime_bon32.yaml")
    hw = ROOT / "hardware" / "h100.yaml"
    out, results = {}, {}
    for policy in POLICIES:
        result = kinsim.simulate(workload.with_overrides({"deployment.admission": policy}), hw)
        results[policy] = result
        out[policy] = {"makespan_s": result["sim_time_s"], "tasks_per_s": result["throughput.tasks_per_s"],
                       "preemptions": result["requests.preemptions"],
                       "prefill_computed": result["tokens.prefill_computed"], "prompt": result["tokens.prompt"],
                       "completed": result["requests.completed"],
                       "ttft_p50_s": result["latency.request.ttft.p50"],
                       "tpot_p50_s": result["latency.request.tpot.p50"]}
    for policy, f in out.items():
        print(f"{policy:>8}: makespan {f['makespan_s']:,.0f} s, {f['tasks_per_s']:.4f} tasks/s, "
              f"{f['preemptions']:,} preemptions, {f['prefill_computed']:,} tokens prefilled, "
              f"TTFT p50 {f['ttft_p50_s']:,.2f} s, TPOT p50 {f['tpot_p50_s'] * 1e3:.1f} ms")
    if plot_file is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for policy, result in results.items():
            times = np.asarray(result.records.sequences.finish_s, dtype=float)
            ax.step(np.sort(times), np.arange(1, len(times) + 1), where="post", label=policy)
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel("samples finished")
        ax.set_title("aime_bon32 on 8 H100s: greedy admission against no-evict")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot_file, dpi=120)
        plt.close(fig)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", help="write the samples finished over time to this PNG")
    args = parser.parse_args()
    main(plot_file=args.plot)
