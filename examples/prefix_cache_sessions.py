"""What-if: automatic prefix caching on multi-turn chat, and host memory as its second tier.

A synthetic trace of chat sessions (Qwen3-8B on one H100): every prompt starts with the same 2,048-token
system prompt, and each turn of a session resends the whole conversation so far (the previous prompt, the
previous answer, a new user message). The trace names the prompt's blocks by ``hash_ids`` (one id per 64
tokens, chained: equal ids mean equal prefixes), as Mooncake traces do. Compared:

* ``off``: no prefix caching; every prompt is prefilled in full;
* ``on``: ``deployment.prefix_caching``: cached blocks are reused across requests; hits skip their prefill;
* ``on, small HBM``: the same with a KV cache cut to 16k tokens, so cached blocks are evicted before the
  next turn comes;
* ``on, small HBM + host tier``: with ``kv_offload: lru`` evicted blocks go to host memory and come back
  over PCIe for hits.

Run: ``python examples/prefix_cache_sessions.py`` (about five seconds). The hit rate and the prefill work
saved are exact consequences of the trace; TTFT falls because hits leave only the new tokens to compute.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import kinsim

ROOT = Path(__file__).resolve().parents[1]
HASH_TOKENS = 64  # tokens per hash id
SYSTEM_TOKENS = 2048  # the system prompt every session starts with


def session_trace(sessions: int = 24, turns: int = 4, user_tokens: int = 256, answer_tokens: int = 192,
                  think_s: float = 8.0) -> list[dict]:
    """Trace rows (kinsim's format): ``sessions`` sessions of ``turns`` turns, started 0.5 s apart, a turn
    ``think_s`` after the previous one's arrival. Ids: ``0..31`` the system prompt, then ids unique to the
    session and turn for each new span of 64 tokens (a user message or an answer)."""
    rows, next_id = [], SYSTEM_TOKENS // HASH_TOKENS
    system = list(range(SYSTEM_TOKENS // HASH_TOKENS))
    for s in range(sessions):
        ids, prompt = list(system), SYSTEM_TOKENS
        for t in range(turns):
            new = user_tokens if t == 0 else answer_tokens + user_tokens  # last answer, then the new message
            prompt += new
            ids += list(range(next_id, next_id + new // HASH_TOKENS))
            next_id += new // HASH_TOKENS
            rows.append({"request_id": f"s{s}-t{t}", "arrival_s": round(0.5 * s + think_s * t, 6),
                         "prompt_tokens": prompt, "output_tokens": answer_tokens, "hash_ids": list(ids)})
    return rows


CASES = {
    "off": {},
    "on": {"deployment.prefix_caching": True},
    "on, small HBM": {"deployment.prefix_caching": True},
    "on, small HBM + host tier": {"deployment.prefix_caching": True, "deployment.kv_offload": "lru"},
}


def main(sessions: int = 24, turns: int = 4) -> dict[str, dict[str, float]]:
    hw_path = ROOT / "hardware" / "h100.yaml"
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "sessions.jsonl"
        trace.write_text("".join(json.dumps(row) + "\n" for row in session_trace(sessions, turns)))
        spec = Path(tmp) / "sessions.yaml"
        spec.write_text(json.dumps({"name": "chat_sessions", "model": "Qwen3-8B",
                                    "requests": {"kind": "trace", "path": trace.name,
                                                 "hash_block_tokens": HASH_TOKENS}}))
        workload = kinsim.load_workload(spec)
        hardware = kinsim.load_hardware(hw_path)
        small = small_hbm(workload, hardware, tokens=16_384)
        for label, changes in CASES.items():
            result = kinsim.simulate(workload.with_overrides(changes), small if "small" in label else hardware)
            memory = result.to_dict()["memory"]
            out[label] = {"hit_rate": memory["prefix"]["token_hit_rate"],
                          "host_hit_blocks": memory["prefix"]["host_hit_blocks"],
                          "prefill_tokens": result["tokens.prefill_computed"],
                          "ttft_p50": result["latency.request.ttft.p50"],
                          "ttft_p90": result["latency.request.ttft.p90"],
                          "ttft_mean": result["latency.request.ttft.mean"],
                          "load_gb": memory["host"]["load_bytes"] / 1e9}
            row = out[label]
            print(f"{label:27s} hits {row['hit_rate']:6.1%}  prefill {row['prefill_tokens']:>9,} tokens  "
                  f"TTFT p50 {row['ttft_p50'] * 1e3:7.1f} ms  p90 {row['ttft_p90'] * 1e3:7.1f} ms  "
                  f"loaded from host {row['load_gb']:.2f} GB")
    return out


def small_hbm(workload, hardware, tokens: int):
    """``hardware`` with its memory cut so that ``workload`` gets a KV cache of about ``tokens`` tokens."""
    from kinsim.engine.kv import kv_layout
    from kinsim.engine.memory_budget import kv_bytes_per_memory_byte

    layout = kv_layout(workload.model, workload.deployment, workload.attention, hardware)
    per_byte = kv_bytes_per_memory_byte(workload.deployment, hardware)
    spare = (layout.total_blocks * layout.block_size - tokens) / layout.block_size * layout.block_bytes / per_byte
    return hardware.with_overrides({"gpu.memory.capacity": f"{hardware.gpu.memory.capacity - spare!r} B"})


if __name__ == "__main__":
    main()
