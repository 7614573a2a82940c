"""The examples run and say what their docstrings claim."""

import importlib.util

import pytest

from .conftest import ROOT


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hbm_bandwidth_what_if(capsys):
    speedups = load_example("hbm_bandwidth_what_if").main()
    # Memory-bound steps: doubling bandwidth approaches 2x, held back by the kernels' floors and the work
    # items' own bandwidth (neither shrinks with the HBM bandwidth) and by compute.
    assert 1.6 < speedups[(1, 1000)] < 1.8
    assert 1.8 < speedups[(64, 16384)] < 2.0
    assert speedups[(64, 16384)] > speedups[(1, 1000)]
    assert capsys.readouterr().out.count("\n") == 2


def test_what_if_double_hbm(capsys):
    out = load_example("what_if_double_hbm").main()
    # memory-bound decode, but the serving engine's host time per step does not shrink: well under the 2x
    # of the bandwidth; KV capacity is unchanged
    assert 1.5 < out["ratio"] < 1.8
    assert out["preemptions"] == out["preemptions_doubled"]
    assert f"({out['ratio']:.2f}x)" in capsys.readouterr().out


def test_what_if_fp8_kv(capsys):
    out = load_example("what_if_fp8_kv").main()
    assert out["kv_bytes_per_token"] == (147_456, 73_728)  # Qwen3-8B: 2 x 8 heads x 128 x 36 layers x 2 B, then 1 B
    blocks_bf16, blocks_fp8 = out["capacity_tokens"]
    assert blocks_fp8 == pytest.approx(2 * blocks_bf16, abs=1)  # the same bytes hold twice the tokens
    assert out["preemptions_fp8"] < out["preemptions"] / 10
    assert out["tasks_ratio"] > 1.5
    assert capsys.readouterr().out.count("tasks/s") == 2


def test_b200_vs_h200_longcot(capsys):
    out = load_example("b200_vs_h200_longcot").main()
    # small batches: per-token time follows bandwidth (8 / 4.8 TB/s), held back by the fixed costs that do
    # not shrink with it (kernel floors, the serving engine's host time per step)
    assert out["bandwidth_ratio"] == pytest.approx(8.0 / 4.8)
    assert 1 / out["bandwidth_ratio"] < out["tpot_ratio"] < 0.8
    assert 1.2 < out["tasks_ratio"] < out["bandwidth_ratio"]
    assert "b200: TPOT p50" in capsys.readouterr().out


def test_topk_budget_vs_dense():
    tasks = load_example("topk_budget_vs_dense").main()
    assert all(tasks[f"top_k={k}"] > tasks["dense"] for k in (16, 64, 256))
    assert tasks["top_k=16"] > tasks["top_k=64"] > tasks["top_k=256"]


def test_custom_gpu_defined_in_python(capsys):
    example = load_example("custom_gpu")
    out = example.main()
    assert out["custom"] > 2 * out["h100"] and out["custom_preemptions"] == 0
    # the same figures written in Python give what the H100 file gives
    import kinsim

    from .conftest import HARDWARE, WORKLOADS

    h100_like = example.custom_gpu(capacity="80 GB", bandwidth="3.35 TB/s")
    h100 = kinsim.load_hardware(HARDWARE / "h100.yaml")
    small = {"requests.problems": 2, "requests.max_output_tokens": 500}
    a = kinsim.simulate(WORKLOADS / "aime_bon32.yaml", h100_like, small)
    b = kinsim.simulate(WORKLOADS / "aime_bon32.yaml", h100, small)
    assert a["sim_time_s"] == b["sim_time_s"]
    with pytest.raises(kinsim.SpecError, match="gpu.memory.bandwidth"):
        kinsim.hardware_from_dict({"name": "x", "gpu": {**kinsim.to_raw(h100)["gpu"],
                                                         "memory": {"capacity": "80 GB", "bandwidth": "-1 TB/s",
                                                                    "channels": 5, "technology": "HBM3"}},
                                   "node": kinsim.to_raw(h100)["node"]})


def test_prefix_cache_sessions(capsys):
    out = load_example("prefix_cache_sessions").main(sessions=24, turns=3)
    # prompts per session: 2,048 system + 256 (turn 0), + 192 answer + 256 user each later turn:
    # 2,304, 2,752, 3,200 tokens
    assert out["off"]["prefill_tokens"] == 24 * (2304 + 2752 + 3200)
    # with the cache: the first request computes its whole prompt; other sessions' first turns find the
    # system prompt (computing their 256 new tokens); later turns find the previous prompt's 144 or 172 whole
    # blocks and compute only the answer and the new message (448 tokens)
    assert out["on"]["prefill_tokens"] == 2304 + 23 * 256 + 24 * 2 * 448
    assert out["on"]["ttft_p50"] < out["off"]["ttft_p50"] / 2
    # a 16k-token cache evicts conversations before their next turn: fewer hits, nothing from host memory
    assert out["on, small HBM"]["prefill_tokens"] > out["on"]["prefill_tokens"]
    assert out["on, small HBM"]["host_hit_blocks"] == 0
    # the host tier gets every evicted block back: the same prefill work as with room in HBM, paid in loads
    host = out["on, small HBM + host tier"]
    assert host["prefill_tokens"] == out["on"]["prefill_tokens"]
    assert host["host_hit_blocks"] > 0 and host["load_gb"] > 0
    assert out["on"]["ttft_p50"] <= host["ttft_p50"] < out["on, small HBM"]["ttft_p50"]
    assert capsys.readouterr().out.count("TTFT p50") == 4
