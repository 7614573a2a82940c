"""Importing public silicon measurements (aiconfigurator-core's layout), fitting them, and the serving
benchmark semantics of end-to-end rows. The tables are made here, in the package's layout and units."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kinsim import load_hardware, simulate
from kinsim.calibration.aiconfigurator import TableChoice, find_table, import_tables, version_key
from kinsim.calibration.fit import fit_profile
from kinsim.calibration.measurements import read_measurements
from kinsim.calibration.rows import predict_allreduce, predict_kernel
from kinsim.calibration.silicon import expressible, workload_of
from kinsim.cli import main
from kinsim.hardware.spec import CollectiveCurveSpec, KernelCurveSpec
from kinsim.workload.load import workload_from_raw

from .conftest import HARDWARE, ROOT

pytest.importorskip("pyarrow", reason="writing the Parquet tables needs pyarrow (the distributed or aic extra)")

H100 = load_hardware(HARDWARE / "h100.yaml", {"calibration": None})
DEVICE = "NVIDIA H100 80GB HBM3"
DECODE = KernelCurveSpec(compute_max=0.6, memory_max=0.92, kernel_floor=5e-6, combine_floor=1e-6, per_sequence=1e-8,
                         item_cost=2.5e-6, item_bandwidth=1.5e11)
NCCL = CollectiveCurveSpec(small_latency=6e-6, small_per_peer=1.5e-6, small_efficiency=0.3, small_traffic="ring",
                           large_latency=30e-6, large_per_peer=0.0, large_efficiency=0.6, large_traffic="nvls")


def decode_rows() -> pd.DataFrame:
    rows = [{"framework": "VLLM", "version": "0.10.0", "device": DEVICE, "op_name": "generation_attention",
             "kernel_source": "vllm_flash_attn_fa3", "batch_size": b, "isl": 1, "num_heads": hq,
             "num_key_value_heads": 8, "head_dim": 128, "beam_width": 1, "attn_dtype": "bfloat16",
             "kv_cache_dtype": "bfloat16", "step": s, "window_size": 0, "latency": 0.0}
            for b in (1, 4, 16, 64, 256) for s in (127, 1023, 8191, 65535) for hq in (32, 64)]
    return pd.DataFrame(rows)


def write_tables(data: Path, decode_latency_ms=None) -> None:
    """A fake system in aiconfigurator-core's layout: two attention versions, one GEMM table, NCCL and
    custom all-reduce, in its units (ms; message sizes in elements)."""
    system = data / "fake_sxm"
    old = system / "attention" / "vllm" / "0.9.0"
    new = system / "attention" / "vllm" / "0.10.0"
    for folder in (old, new):
        folder.mkdir(parents=True)
    decode = decode_rows()
    decode["latency"] = 0.02 if decode_latency_ms is None else decode_latency_ms
    windowed = decode.iloc[:3].assign(window_size=128)
    pd.concat([decode, decode.iloc[:5], windowed]).to_parquet(new / "generation_attention_perf.parquet")  # repeats
    decode.iloc[:2].to_parquet(old / "generation_attention_perf.parquet")
    gemm = system / "gemm" / "vllm" / "0.10.0"
    gemm.mkdir(parents=True)
    pd.DataFrame([{"kernel_source": "torch.nn.functional.linear", "gemm_dtype": "bfloat16", "m": m, "n": 4096,
                   "k": 4096, "latency": 0.01 + m * 1e-6, "device": DEVICE} for m in (1, 16, 256, 4096)]
                 + [{"kernel_source": "DeepGemm", "gemm_dtype": "fp8_block", "m": 8, "n": 4096, "k": 4096,
                     "latency": 0.01, "device": DEVICE}]).to_parquet(gemm / "gemm_perf.parquet")
    nccl = system / "comm" / "nccl" / "2.20.1"
    nccl.mkdir(parents=True)
    elements = 2.0 ** np.arange(8, 28, 2)
    table = []
    for p in (2, 4, 8):
        seconds = predict_allreduce(pd.DataFrame({"gpus": p, "bytes": elements * 2}), NCCL, load_hardware(
            HARDWARE / "h100.yaml"))
        table += [{"op_name": "all_reduce", "kernel_source": "NCCL", "nccl_dtype": "half", "num_gpus": p,
                   "message_size": int(e), "latency": t * 1e3} for e, t in zip(elements, seconds)]
    table.append({"op_name": "all_gather", "kernel_source": "NCCL", "nccl_dtype": "half", "num_gpus": 8,
                  "message_size": 1024, "latency": 0.01})
    pd.DataFrame(table).to_parquet(nccl / "nccl_perf.parquet")
    custom = system / "comm" / "vllm" / "0.10.0"
    custom.mkdir(parents=True)
    pd.DataFrame([{"op_name": "all_reduce", "kernel_source": f"vLLM_custom_{mode}", "allreduce_dtype": "bfloat16",
                   "num_gpus": 8, "message_size": 1024, "latency": latency}
                  for mode, latency in (("graph", 0.005), ("eager", 0.02))]
                 ).to_parquet(custom / "custom_allreduce_perf.parquet")
    moe = system / "moe" / "vllm" / "0.10.0"
    moe.mkdir(parents=True)
    pd.DataFrame([{"op_name": "moe", "kernel_source": "vllm_fusedmoe_triton", "moe_dtype": dtype, "num_tokens": t,
                   "hidden_size": 4096, "inter_size": 1536, "topk": 8, "num_experts": 128, "moe_tp_size": 2,
                   "moe_ep_size": 4, "distribution": dist, "latency": 0.1, "device": DEVICE}
                  for t in (1, 64) for dtype in ("bfloat16", "fp8_block", "w4a16_mxfp4")
                  for dist in ("balanced", "power_law_1.2")]
                 + [{"op_name": "moe", "kernel_source": "moe_torch_flow_nongated", "moe_dtype": "bfloat16",
                     "num_tokens": 8, "hidden_size": 4096, "inter_size": 1536, "topk": 8, "num_experts": 128,
                     "moe_tp_size": 1, "moe_ep_size": 1, "distribution": "balanced", "latency": 0.1,
                     "device": DEVICE}]).to_parquet(moe / "moe_perf.parquet")
    quantize = system / "quantize" / "vllm" / "0.10.0"
    quantize.mkdir(parents=True)
    pd.DataFrame([{"op_name": "scale_matrix", "kernel_source": "static_scaled_fp8_quant", "m": m, "k": 4096,
                   "quant_dtype": dtype, "latency": 0.002, "device": DEVICE}
                  for m in (1, 64) for dtype in ("fp8", "nvfp4")]).to_parquet(quantize / "scale_matrix_perf.parquet")


def test_versions_sort_as_numbers():
    assert sorted(["0.9.0", "0.24.0", "0.14.0", "1.3.0rc5", "1.3.0rc20"], key=version_key) == [
        "0.9.0", "0.14.0", "0.24.0", "1.3.0rc5", "1.3.0rc20"]


def test_import_converts_units_keeps_what_kinsim_expresses_and_records_provenance(tmp_path, capsys):
    data = tmp_path / "data"
    write_tables(data)
    out = tmp_path / "out"
    code = main(["calibrate", "import", "aiconfigurator", "--data", str(data), "--system", "fake_sxm",
                 "--framework", "vllm", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    frame = read_measurements(out)
    decode = frame[frame["kernel"] == "attention_decode"]
    assert len(decode) == len(decode_rows())  # the newest version (0.10.0 over 0.9.0), repeats and windows dropped
    assert decode["time_s"].iloc[0] == pytest.approx(0.02e-3)  # ms to s
    first = decode.iloc[0]  # batch 1, 127 cached, 32 query heads: attends over 128 tokens
    assert first["context"] == 128
    assert first["bytes"] == 128 * 2 * 8 * 128 * 2 + 2 * 32 * 128 * 2 + 2 * 8 * 128 * 2
    assert first["warm_l2"] == 1
    gemm = frame[frame["kernel"] == "gemm"]
    assert set(gemm["dtype"]) == {"bf16"} and len(gemm) == 4  # fp8 block-scaled rows are not kinsim's kind
    nccl = frame[(frame["kernel"] == "allreduce") & (frame["impl"] == "nccl")]
    assert len(nccl) == 30 and nccl["bytes"].min() == 2 * 256  # elements of 2 bytes; all_gather dropped
    custom = frame[(frame["kernel"] == "allreduce") & (frame["impl"] == "custom")]
    assert list(custom["time_s"]) == [pytest.approx(0.005e-3)]  # the CUDA-graph row only
    moe = frame[frame["kernel"] == "moe"].sort_values(["tokens", "dtype"])
    # balanced rows of gated experts: the non-gated kernel's row dropped
    assert list(moe["dtype"]) == ["bf16", "fp8", "mxfp4", "bf16", "fp8", "mxfp4"]
    one, many = moe.iloc[0], moe.iloc[3]
    mxfp4 = moe.iloc[2]  # w4a16_mxfp4: the same op with 17/32 of a byte per weight
    assert mxfp4["bytes_read"] - one["bytes_read"] == 2 * 3 * 768 * 4096 * (17 / 32 - 2)
    # 1 token choosing 8 of 128 experts, 4-way expert parallel and each expert 2-way split: 2 pairs and 2
    # experts per GPU (8 / 4), each 1536 / 2 wide; 64 tokens: 512 pairs spread over all 128 experts
    assert (one["m"], one["experts"], one["n"], one["k"], one["pairs"]) == (2, 2, 768, 4096, 8)
    assert (many["m"], many["experts"], many["pairs"]) == (128, 32, 512)
    assert one["flops"] == 6 * 2 * 768 * 4096  # the two grouped GEMMs
    quantize = frame[frame["kernel"] == "elementwise"]
    assert list(quantize["m"]) == [1, 64]  # the fp8 rows only
    assert list(quantize["bytes"]) == [4096 * 3, 64 * 4096 * 3]  # 2 bytes read and 1 written per element
    assert set(quantize["warm_l2"]) == {1} and set(quantize["impl"]) == {"static_scaled_fp8_quant"}
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["device"] == DEVICE and meta["framework"] == "vllm"
    tables = {t["table"]: t["version"] for t in meta["tables"]}
    assert tables["fake_sxm/attention/vllm/0.10.0/generation_attention_perf.parquet"] == "0.10.0"
    assert tables["fake_sxm/comm/nccl/2.20.1/nccl_perf.parquet"] == "2.20.1"


def test_import_refuses_an_unknown_system_and_leaves_nothing(tmp_path, capsys):
    data = tmp_path / "data"
    write_tables(data)
    out = tmp_path / "out"
    code = main(["calibrate", "import", "aiconfigurator", "--data", str(data), "--system", "nope",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "system" in err and "nope" in err and err.count("\n") == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_pinned_version_is_read(tmp_path):
    data = tmp_path / "data"
    write_tables(data)
    choice = TableChoice("attention", "vllm", "generation_attention_perf")
    assert find_table(data, "fake_sxm", choice, "0.9.0").parent.name == "0.9.0"
    assert find_table(data, "fake_sxm", choice, None).parent.name == "0.10.0"
    assert find_table(data, "fake_sxm", choice, "9.9") is None


def test_a_table_whose_newest_version_has_no_usable_rows_falls_back_to_an_older_one(tmp_path):
    data = tmp_path / "data"
    write_tables(data)
    newest = data / "fake_sxm" / "moe" / "vllm" / "0.11.0"  # non-gated experts only, as TensorRT-LLM's newest
    newest.mkdir(parents=True)
    pd.DataFrame([{"op_name": "moe", "kernel_source": "moe_torch_flow_nongated", "moe_dtype": "bfloat16",
                   "num_tokens": 8, "hidden_size": 4096, "inter_size": 1536, "topk": 8, "num_experts": 128,
                   "moe_tp_size": 1, "moe_ep_size": 1, "distribution": "balanced", "latency": 0.1,
                   "device": DEVICE}]).to_parquet(newest / "moe_perf.parquet")
    out = tmp_path / "out"
    import_tables("fake_sxm", "vllm", out, data=data)
    tables = {t["table"].split("/")[1]: t for t in json.loads((out / "metadata.json").read_text())["tables"]}
    assert tables["moe"]["version"] == "0.10.0" and tables["moe"]["rows"] > 0
    assert (pd.read_csv(out / "measurements.csv")["kernel"] == "moe").sum() == tables["moe"]["rows"]


def test_imported_rows_fit_back_the_terms_that_made_them(tmp_path):
    """Latencies made by known decode-attention and NCCL terms (no noise), imported, fitted: the fit finds
    terms that reproduce the held-out rows."""
    data = tmp_path / "data"
    write_tables(data)  # latencies are replaced below, once the rows exist in kinsim's form
    out = tmp_path / "out"
    assert main(["calibrate", "import", "aiconfigurator", "--data", str(data), "--system", "fake_sxm",
                 "--out", str(out)]) == 0
    measured = read_measurements(out)
    rows = measured[measured["kernel"] == "attention_decode"].copy()
    rows["warm_l2"] = 0
    rows["time_s"] = predict_kernel(rows, "attention_decode", DECODE, H100)
    nccl = measured[(measured["kernel"] == "allreduce") & (measured["impl"] == "nccl")]
    profile, fits = fit_profile(pd.concat([rows, nccl]), H100, source="test", device="fake")
    by_kind = {fit.kernel: fit.curve for fit in fits}
    assert by_kind["attention_decode"].held_out_mape < 0.02
    assert by_kind["allreduce_nccl"].held_out_mape < 0.02
    assert by_kind["allreduce_nccl"].large_efficiency == pytest.approx(0.6, rel=0.05)


def test_the_real_package_tables_resolve_to_the_newest_version_when_installed():
    if importlib.util.find_spec("aiconfigurator_core") is None:
        pytest.skip("aiconfigurator-core is not installed (pip install 'kinsim[aic]')")
    from kinsim.calibration.aiconfigurator import package_data_dir

    data, version = package_data_dir()
    folder = data / "h100_sxm" / "attention" / "vllm"
    newest = max((p.name for p in folder.iterdir() if (p / "generation_attention_perf.parquet").is_file()),
                 key=version_key)
    path = find_table(data, "h100_sxm", TableChoice("attention", "vllm", "generation_attention_perf"), None)
    assert path.parent.name == newest and version != "unknown"


# ------------------------------------------------------------------------------------------ end to end


SILICON = {"id": "qwen3_32b_tp2_c4", "mode": "agg", "backend": "vllm", "model_path": "Qwen/Qwen3-32B",
           "gemm_quant_mode": float("nan"), "isl": 1024, "osl": 8, "batch_size": 4, "tp_size": 2, "pp_size": 1,
           "attention_dp_size": float("nan"), "silicon_ttft_ms": 100.0, "silicon_tpot_ms": 10.0}


def test_rows_kinsim_cannot_express_say_why():
    assert expressible({**SILICON, "model_path": "acme/unknown-model"}) == (None, "no preset for the model")
    assert expressible({**SILICON, "mode": "static"})[1] == "serving mode static"
    assert expressible({**SILICON, "mode": "disagg"})[1] == "missing figures"  # no prefill_/decode_ columns
    assert expressible({**SILICON, "attention_dp_size": 4})[1] == "attention_dp_size > 1"
    row, why = expressible({**SILICON, "gemm_quant_mode": "fp8"})
    assert why == "" and row.weight_dtype == "fp8" and row.tpot_s == 0.010
    # fp8 weights on vLLM's own server keep its default bf16 KV cache; on TensorRT-LLM an fp8 one, as
    # aiconfigurator-core reads fp8 checkpoints; bf16 weights a bf16 one everywhere
    assert workload_of(row)["model"]["kv_dtype"] == "bf16"
    assert workload_of(expressible(SILICON)[0])["model"]["kv_dtype"] == "bf16"
    fp8_block, _ = expressible({**SILICON, "gemm_quant_mode": "fp8_block", "backend": "trtllm"})
    assert workload_of(fp8_block)["model"]["kv_dtype"] == "fp8"


def test_a_serving_benchmark_counts_the_requests_its_client_counts(monkeypatch):
    from kinsim.calibration import silicon

    row, _ = expressible(SILICON)  # vLLM: a continuous closed loop whose first round counts
    client = silicon.CLIENTS["vllm"]
    assert not client.rounds and not client.warmup_round
    result = simulate(workload_from_raw(workload_of(row), ROOT), load_hardware(HARDWARE / "h100.yaml"))
    requests = result.requests
    assert len(requests) == client.requests_per_client * 4 and (requests["state"] == "finished").all()
    ttft = (requests["first_token_s"] - requests["arrival_s"]).mean()  # every request, the first round's too
    assert result["latency.request.ttft.mean"] == pytest.approx(ttft, rel=1e-9)

    # a client whose first round is a warm-up: 3 rounds of 4, the first four requests left out
    monkeypatch.setitem(silicon.CLIENTS, "vllm", silicon.BenchmarkClient(3, rounds=False, warmup_round=True))
    raw = workload_of(row)
    assert raw["requests"]["problems"] == 12 and raw["requests"]["warmup"] == 4
    result = simulate(workload_from_raw(raw, ROOT), load_hardware(HARDWARE / "h100.yaml"))
    requests = result.requests
    measured = requests.iloc[4:]
    ttft = (measured["first_token_s"] - measured["arrival_s"]).mean()
    assert result["latency.request.ttft.mean"] == pytest.approx(ttft, rel=1e-9)
    tpot = ((measured["finish_s"] - measured["first_token_s"]) / 7).mean()
    assert result["latency.request.tpot.mean"] == pytest.approx(tpot, rel=1e-9)


def test_the_frontend_fit_is_the_weighted_median_shift():
    from kinsim.calibration.silicon import fit_frontend_s

    # simulated with a 10 ms frontend; shifts (measured - simulated + 0.010): 0.030, 0.110, 0.060 s,
    # weights 1/measured: 1/0.1, 1/0.2, 1/0.4 (10, 5, 2.5 of 17.5): sorted 0.030 (10) reaches half alone
    assert fit_frontend_s([0.080, 0.100, 0.350], [0.100, 0.200, 0.400], 0.010) == pytest.approx(0.030)
    # MAPE at the fit is no larger than a step either side
    def mape(f):
        return sum(abs(s - 0.010 + f - m) / m for s, m in zip([0.080, 0.100, 0.350], [0.100, 0.200, 0.400]))
    assert mape(0.030) <= min(mape(0.029), mape(0.031))
    # never negative: every row already too slow
    assert fit_frontend_s([0.5, 0.6], [0.1, 0.2], 0.0) == 0.0


def test_a_row_records_its_concurrency_by_the_c_in_its_id():
    def recorded(row_id):
        return expressible({**SILICON, "id": row_id})[0].concurrency_recorded

    assert recorded("qwen3_32b_tp2_c4") and recorded("2026_04_06_llama_vllm_fp8_agg_1024x1024_c64_tp8_ep1_625")
    assert recorded("c8_tp1")
    # a Dynamo deployment's row leaves it empty; "abc16" or "c16x" is not a concurrency
    assert not recorded("qwen3_32b_qwen3_32b_h100_sxm_vllm_agg_4000x1000_c_tp2_0_epnone_3")
    assert not recorded("model_abc16_tp2") and not recorded("model_c16x_tp2")
    # or by its source's silicon_concurrency
    sourced = {**SILICON, "id": "model_tp2", "silicon_data_source": "source_file=x.csv; silicon_concurrency=16"}
    assert expressible(sourced)[0].concurrency_recorded


def test_an_aggregated_row_replays_the_clients_its_benchmark_ran():
    # the id's c<N> wins over batch_size where they differ (TensorRT-LLM's gpt-oss-120b rows: c192 at a batch of
    # 48 on TP4); a row that records no concurrency keeps batch_size; the source's silicon_concurrency counts
    # where the id has no c<N>
    assert expressible({**SILICON, "id": "gpt_oss_agg_4000x1000_c192_tp4_1", "batch_size": 48})[0].concurrency == 192
    assert expressible({**SILICON, "id": "qwen3_32b_agg_c_tp2_3", "batch_size": 48})[0].concurrency == 48
    sourced = {**SILICON, "id": "qwen3_32b_agg_tp2_3", "batch_size": 48,
               "silicon_data_source": "source_file=x.csv; silicon_concurrency=96; measured=2026-03-18"}
    assert expressible(sourced)[0].concurrency == 96


def test_least_absolute_deviations_takes_medians_not_means():
    from kinsim.calibration.silicon import least_absolute_deviations

    # three rows of the first column alone (1, 2, 10: median 2, mean 4.33), one of the second alone (3)
    x = least_absolute_deviations([[1, 0], [1, 0], [1, 0], [0, 1]], [1, 2, 10, 3])
    assert x == pytest.approx([2.0, 3.0], abs=1e-9)
    # never negative: the best unconstrained value here would be -1
    assert least_absolute_deviations([[1.0]], [-1.0]) == pytest.approx([0.0], abs=1e-12)


def test_staggered_closed_loop_clients_of_vllm_and_tensorrt_llm():
    from kinsim.calibration import silicon

    for backend in ("vllm", "trtllm"):
        row, _ = expressible({**SILICON, "backend": backend})
        arrival = workload_from_raw(workload_of(row), ROOT).requests.arrival
        assert arrival.stagger and not arrival.rounds and silicon.CLIENTS[backend].stagger


def test_sglang_rows_run_in_rounds():
    row, _ = expressible({**SILICON, "backend": "sglang"})
    raw = workload_of(row)
    assert raw["requests"]["arrival"]["rounds"] is True
    result = simulate(workload_from_raw(raw, ROOT), load_hardware(HARDWARE / "h100.yaml"))
    requests = result.requests.sort_values("arrival_s")
    arrivals = requests["arrival_s"].to_numpy().reshape(-1, 4)  # rounds of 4 requests
    finishes = requests["finish_s"].to_numpy().reshape(-1, 4)
    assert (arrivals.max(axis=1) == arrivals.min(axis=1)).all()  # a round's requests leave together
    assert (arrivals[1:, 0] >= finishes[:-1].max(axis=1)).all()  # once the whole round before has ended


def test_staggered_warm_up_lengths():
    row, _ = expressible({**SILICON, "osl": 100})
    raw = workload_of(row)
    raw["requests"]["problems"], raw["requests"]["warmup"], raw["requests"]["stagger_warmup"] = 12, 4, True
    raw["requests"]["output_tokens"] = raw["requests"]["max_output_tokens"] = 100  # equal answers, no spread
    from kinsim.workload.generate import workload_requests

    lengths = [r.output_tokens for r in workload_requests(workload_from_raw(raw, ROOT))]
    assert lengths == [25, 50, 75, 100] + [100] * 8  # warm-up request i: (i + 1) / 4 of 100 tokens


def test_the_moe_fit_takes_the_bf16_kernels_whatever_has_most_rows():
    from kinsim.calibration.fit import default_rows

    frame = pd.DataFrame({"kernel": "moe", "impl": ["fp8_cutlass"] * 3 + ["bf16_triton"] * 2,
                          "dtype": ["fp8"] * 3 + ["bf16"] * 2})
    assert list(default_rows(frame, "moe")["impl"]) == ["bf16_triton"] * 2
