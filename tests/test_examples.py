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
    assert 1.5 < speedups[(1, 1000)] < 1.8
    assert 1.8 < speedups[(64, 16384)] < 2.0
    assert speedups[(64, 16384)] > speedups[(1, 1000)]
    assert capsys.readouterr().out.count("\n") == 2


def test_admission_policies(capsys, tmp_path):
    out = load_example("admission_policies").main(plot_file=tmp_path / "admission.png")
    greedy, no_evict = out["greedy"], out["no_evict"]
    assert greedy["completed"] == no_evict["completed"] == 960  # 30 problems x 32 samples, nothing lost
    # greedy outgrows the cache and recomputes; no-evict never preempts, so it prefills each prompt at most once
    assert greedy["preemptions"] > 0 and no_evict["preemptions"] == 0
    assert no_evict["prefill_computed"] <= no_evict["prompt"] < greedy["prefill_computed"]
    # samples wait for room before their first token, and then decode in smaller batches
    assert no_evict["ttft_p50_s"] > greedy["ttft_p50_s"] and no_evict["tpot_p50_s"] < greedy["tpot_p50_s"]
    assert (tmp_path / "admission.png").stat().st_size > 0
    assert capsys.readouterr().out.count("preemptions") == 2


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
    # the cache saves prefill, not the serving frontend's time before the engine (vLLM's preset, in both)
    from kinsim.cost.engine_overhead import engine_overhead

    frontend = engine_overhead("vllm").frontend_s
    assert out["on"]["ttft_p50"] - frontend < (out["off"]["ttft_p50"] - frontend) / 2
    # a 16k-token cache evicts conversations before their next turn: fewer hits, nothing from host memory
    assert out["on, small HBM"]["prefill_tokens"] > out["on"]["prefill_tokens"]
    assert out["on, small HBM"]["host_hit_blocks"] == 0
    # the host tier gets every evicted block back: the same prefill work as with room in HBM, paid in loads
    host = out["on, small HBM + host tier"]
    assert host["prefill_tokens"] == out["on"]["prefill_tokens"]
    assert host["host_hit_blocks"] > 0 and host["load_gb"] > 0
    # loading is cheaper than recomputing; against room in HBM the loads cost time on average (the medians
    # and the 90th percentiles of the two differ by step alignment, 2% either way)
    assert host["ttft_p50"] < out["on, small HBM"]["ttft_p50"]
    assert host["ttft_p90"] < out["on, small HBM"]["ttft_p90"]
    assert out["on"]["ttft_mean"] < host["ttft_mean"] < out["on, small HBM"]["ttft_mean"]
    assert capsys.readouterr().out.count("TTFT p50") == 4


def test_offload_longcot(capsys, tmp_path):
    out = load_example("offload_longcot").main(quick=True, plot_file=tmp_path / "offload.png")
    problems = 16  # --quick: 16 chains, each filling its context (32k or 128k tokens)
    assert (tmp_path / "offload.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.count("\n") == 2 + 2 * 2 * 4  # two header lines, hardware x context x policy
    for hw in ("H100", "GH200"):
        for ctx in ("32k", "128k"):
            dense, hbm, offload, no_cache = (out[(hw, ctx, p)] for p in
                                             ("dense", "top-k HBM", "top-k offload", "top-k offload, no cache"))
            # Offloaded, a sequence keeps in HBM its summaries (72 KiB per 16 tokens: 8,192 x 72 KiB = 0.6 GB at
            # 128k) and its cache (128 x 16 tokens x 144 KiB = 0.3 GB): 16 x 0.9 GB fit in either GPU. Its full
            # KV (147,456 B a token) must fit the host share: 2 TB x 0.5 / 8 GPUs = 125 GB on the H100 node, 480 GB
            # x 0.5 = 240 GB on the GH200. At 32k a chain needs 4.8 GB: all 16 fit in both, every chain decodes
            # at once and none is preempted. At 128k it needs 19.3 GB: 6 (H100) or 12 (GH200) hold their whole
            # KV, so chains are preempted, but more decode at once than with the KV in HBM (3 at full length:
            # twice as many on the H100, 4 times on the GH200; over a run, chains short of full length fit more
            # in either, 9.6 against 4.9 on the H100).
            if ctx == "32k":
                assert offload["mean_batch"] == pytest.approx(problems) and offload["preemptions"] == 0
                assert no_cache["mean_batch"] == pytest.approx(problems)
            else:
                assert offload["preemptions"] > 0 and offload["mean_batch"] < problems
                assert offload["mean_batch"] > 1.5 * hbm["mean_batch"]
            # in HBM a full chain holds 131,072 x 147,456 B = 19.3 GB at 128k: vLLM's budget of 80 or 96 GiB (76.5
            # or 91.9 GB) less 16.4 GB of weights and 0.9 GB of activations and buffers holds 3 at full context,
            # so the batch stays small and chains are preempted
            if ctx == "128k":
                assert hbm["mean_batch"] < problems / 2 and dense["mean_batch"] < problems / 2
                assert hbm["preemptions"] > 0 and dense["preemptions"] > 0
            # the same batch, but block top-k reads 64 blocks of 16 tokens per step instead of the whole context
            assert hbm["tasks_per_s"] > 1.5 * dense["tasks_per_s"]
            # the cache halves the bytes each step fetches (cache_hit_rate 0.5) and the batch is the same
            assert offload["tasks_per_s"] > no_cache["tasks_per_s"]
        # PCIe (63 GB/s x 0.85) against NVLink-C2C (450 GB/s x 0.9): the same fetch takes 7.6 times as long on
        # the H100, so it is most of the H100's time and a smaller share of the GH200's
        for ctx in ("32k", "128k"):
            assert out[("H100", ctx, "top-k offload")]["fetch"] > 0.5
            assert out[("GH200", ctx, "top-k offload")]["fetch"] < out[("H100", ctx, "top-k offload")]["fetch"]
    # on the H100 the fetch makes offloading lose at 32k, where HBM still holds most of the chains; on the
    # GH200 it wins at 128k, and offloading gains against block top-k in HBM much more than on the H100
    ratio = {(hw, ctx): out[(hw, ctx, "top-k offload")]["tasks_per_s"] / out[(hw, ctx, "top-k HBM")]["tasks_per_s"]
             for hw in ("H100", "GH200") for ctx in ("32k", "128k")}
    assert ratio[("H100", "32k")] < 0.6
    assert ratio[("GH200", "128k")] > 1.3
    assert all(ratio[("GH200", ctx)] > 1.5 * ratio[("H100", ctx)] for ctx in ("32k", "128k"))


def test_speculation_vs_batch(capsys):
    table = load_example("speculation_vs_batch").main(batches=(1, 32, 256))
    # a dense target's KV reads grow with batch and context while the self draft reads a 528-token window:
    # speculation pays more with both (MagicDec's finding)
    assert table[("dense", 32768, 256)] > table[("dense", 32768, 32)] > table[("dense", 32768, 1)]
    assert table[("dense", 32768, 256)] > table[("dense", 8192, 256)] > 1.5
    # at batch 1 each draft pass re-reads every weight: k = 3 of them for 2.95 tokens gain nothing
    assert table[("dense", 8192, 1)] < 1.05
    # block top-k already bounds the target's reads (1,040 tokens): less for speculation to save
    assert table[("block_topk", 32768, 256)] < table[("dense", 32768, 256)]
    assert capsys.readouterr().out.count("x  ") == 2 * 2 * 3  # one row per target, context and batch


def test_disagg_ratio(capsys):
    figures = load_example("disagg_ratio").run(chat_requests=300, problems=2)
    chat, aime = figures["chat"], figures["aime_bon32"]
    # every split serves every request, and moves the KV of each request that decodes (at least one block)
    for rows in (chat, aime):
        assert {f["completed"] for f in rows.values()} == {rows["aggregated 8"]["completed"]}
        assert rows["aggregated 8"]["kv_moved"] == 0
        assert all(f["kv_moved"] > 0 for label, f in rows.items() if label.startswith("disagg"))
    # Best-of-32 is almost all decode: a GPU moved to prefill idles (two 150-token prompts against 2 x 32
    # samples of thousands of tokens)
    assert aime["disagg 4:4"]["prefill_util"] < 0.05 < aime["disagg 4:4"]["decode_util"]
    # a transfer inside the NVLink node takes well under a decode step
    assert all(f["transfer_p50"] < 0.005 for label, f in chat.items() if label.startswith("disagg"))
    assert "disagg 2:6" in load_example("disagg_ratio").table(figures)
