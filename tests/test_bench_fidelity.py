"""benchmarks/bench_fidelity.py as someone judging kinsim on a held-out system runs it (``--system NAME --hw
FILE``), on a made-up system in aiconfigurator-core's layout: its silicon rows, a model run from a shipped
config.json, its MLA kernel table and its sliding-window attention rows. Numbers compared with kinsim's own
figures of the same rows."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from kinsim import load_hardware, simulate
from kinsim.calibration.silicon import client_figures, expressible, workload_of
from kinsim.workload.load import workload_from_raw

from .conftest import HARDWARE, ROOT

pytest.importorskip("scipy")


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_fidelity", ROOT / "benchmarks" / "bench_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_package(tmp_path):
    """systems/silicon_sample.csv with rows of 'toy_sxm' (and one H100 row the run must leave alone),
    systems/data/toy_sxm/mla/..., a context-attention table with window rows, and model_configs/ for a model
    without a preset."""
    root = tmp_path / "aic"
    (root / "systems" / "data" / "toy_sxm" / "mla" / "trtllm" / "1.0").mkdir(parents=True)
    (root / "model_configs").mkdir()
    config = {"model_type": "qwen3", "num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512, "vocab_size": 1000,
              "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
    (root / "model_configs" / "acme--Tiny-Qwen3_config.json").write_text(json.dumps(config))
    common = {"mode": "agg", "backend": "vllm", "gemm_quant_mode": "nan", "moe_quant_mode": "nan", "isl": 256,
              "osl": 16, "tp_size": 1, "pp_size": 1, "silicon_data_source": "source_file=x.csv"}
    rows = [{**common, "id": "toy_c2_a", "system": "toy_sxm", "model_path": "acme/Tiny-Qwen3", "batch_size": 2,
             "silicon_ttft_ms": 20.0, "silicon_tpot_ms": 2.0},
            {**common, "id": "toy_c4_b", "system": "toy_sxm", "model_path": "acme/Tiny-Qwen3", "batch_size": 4,
             "silicon_ttft_ms": 30.0, "silicon_tpot_ms": 3.0},
            {**common, "id": "toy_c4_c", "system": "toy_sxm", "model_path": "acme/Unknown", "batch_size": 4,
             "silicon_ttft_ms": 30.0, "silicon_tpot_ms": 3.0},
            {**common, "id": "h100_c4", "system": "h100_sxm", "model_path": "acme/Tiny-Qwen3", "batch_size": 4,
             "silicon_ttft_ms": 1.0, "silicon_tpot_ms": 1.0}]
    pd.DataFrame(rows).to_csv(root / "systems" / "silicon_sample.csv", index=False)
    pd.DataFrame({"num_heads": [16, 16], "batch_size": [8, 8], "kv_cache_dtype": ["bfloat16", "fp8"],
                  "step": [1023, 1023], "isl": [1, 1], "tp_size": [8, 8], "latency": [0.04, 0.05]}).to_parquet(
        root / "systems" / "data" / "toy_sxm" / "mla" / "trtllm" / "1.0" / "generation_mla_perf.parquet")
    attention = root / "systems" / "data" / "toy_sxm" / "attention" / "vllm" / "1.0"
    attention.mkdir(parents=True)
    pd.DataFrame({"batch_size": [1, 2, 1], "isl": [4096, 2048, 1024], "num_heads": [64, 64, 8],
                  "num_key_value_heads": [8, 8, 8], "head_dim": [64, 64, 128], "kv_cache_dtype": ["bfloat16"] * 3,
                  "window_size": [128, 128, 0], "latency": [0.2, 0.2, 0.05]}).to_parquet(
        attention / "context_attention_perf.parquet")
    return root, rows


def test_a_judge_scores_a_system_from_its_rows_its_configs_and_its_mla_table(tmp_path, capsys):
    root, rows = toy_package(tmp_path)
    bench = load_bench()
    assert bench.main(["--data", str(root / "systems" / "data"), "--system", "toy_sxm",
                       "--hw", str(HARDWARE / "h100.yaml"), "--rows-csv", str(tmp_path / "rows.csv")]) == 0
    out = capsys.readouterr().out
    # the MLA section: one table of 2 rows, each priced as kinsim prices it
    assert "2b. Multi-head latent attention (DeepSeek-V3) on toy_sxm" in out
    line = next(x for x in out.splitlines() if "generation_mla_perf.parquet" in x)
    assert line.split()[1] == "2"
    # the window section: the table's 2 window rows, none of its dense one
    assert "2c. Sliding-window prefill attention on toy_sxm" in out
    assert next(x for x in out.splitlines() if x.strip().startswith("window all")).split()[2] == "2"
    # the end-to-end section: 3 toy rows, 2 expressible (one model runs from its shipped config), none of H100's
    assert "3 toy_sxm rows; 2 aggregated and 0 disaggregated simulated" in out
    assert "agg no preset for the model 1" in out
    hw = load_hardware(HARDWARE / "h100.yaml")
    errors = []
    for raw in rows[:2]:
        row, why = expressible(raw, root / "model_configs")
        assert why == ""
        ttft, tpot = client_figures(simulate(workload_from_raw(workload_of(row), ROOT), hw), row)
        errors.append((tpot / row.tpot_s - 1, ttft / row.ttft_s - 1))
    tpot_mape, ttft_mape = np.mean(np.abs(errors), axis=0)
    # --rows-csv: the same two rows, their measured figures and kinsim's errors
    written = pd.read_csv(tmp_path / "rows.csv")
    assert written["id"].tolist() == ["toy_c2_a", "toy_c4_b"] and written["concurrency"].tolist() == [2, 4]
    assert written["ttft_s"].tolist() == [0.020, 0.030] and written["why"].isna().all()
    assert np.allclose(written[["tpot_error", "ttft_error"]].to_numpy(), errors)
    summary = next(x for x in out.splitlines() if x.split()[:1] == ["all"])
    assert summary.split()[1] == "2"
    assert summary.split()[2] == f"{tpot_mape:.2%}" and summary.split()[5] == f"{ttft_mape:.2%}"


def test_a_system_is_simulated_on_its_own_hardware_file_unless_told_and_one_without_a_file_is_refused(
        tmp_path, capsys):
    bench = load_bench()
    assert bench.hardware_of("h100_sxm", None) == bench.H100
    assert bench.hardware_of("a100_sxm", None) == ROOT / "hardware" / "a100.yaml"
    assert bench.hardware_of("h100_sxm", tmp_path / "mine.yaml") == tmp_path / "mine.yaml"
    (tmp_path / "toy_pcie.yaml").write_text("made up")  # a name keeps a suffix other than _sxm
    assert bench.hardware_of("toy_pcie", None, tmp_path) == tmp_path / "toy_pcie.yaml"
    root, _ = toy_package(tmp_path)
    with pytest.raises(SystemExit) as exit_info:  # no file describes toy_sxm: not silently the H100's
        bench.main(["--data", str(root / "systems" / "data"), "--system", "toy_sxm"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--system toy_sxm: no hardware file here describes it" in err and "--hw FILE" in err


def test_other_head_dims_are_scored_apart_from_the_fitted_ones(capsys):
    """Rows of head dimension 128 (the fit's) are left out; the rest are grouped by kind, KV type and head
    dimension: errors +10% and -30% at 64 give a MAPE of 20.0% and a median of -10.0%."""
    bench = load_bench()
    table = pd.DataFrame({
        "kernel": ["attention_prefill"] * 3 + ["attention_decode", "gemm"],
        "kv_dtype": ["bf16", "bf16", "bf16", "fp8", "bf16"],
        "head_dim": [64.0, 64.0, 128.0, 256.0, 64.0],
        "error": [0.1, -0.3, 0.9, 0.05, 0.5],
    })
    bench.print_other_head_dims(table)
    out = capsys.readouterr().out
    assert "attention_prefill  bf16  64: 20.0% (-10.0%), 2" in out
    assert "attention_decode   fp8   256: 5.0% (+5.0%), 1" in out
    assert "128:" not in out and "gemm" not in out


def test_the_per_model_table_groups_rows_by_the_kv_cache_their_replay_gives_them(capsys):
    """Two fp8 rows of one model: vLLM's own server (a bf16 KV cache, its default) and TensorRT-LLM (fp8):
    two lines, each with its own errors."""
    from kinsim.calibration.silicon import SiliconRow

    def row(backend, ttft, tpot):
        return SiliconRow(id=f"{backend}_c4", backend=backend, model="Qwen3-32B", weight_dtype="fp8", isl=1024,
                          osl=128, concurrency=4, tp=1, ttft_s=ttft, tpot_s=tpot)

    results = [(row("vllm", 0.1, 0.01), 0.12, 0.009, ""), (row("trtllm", 0.2, 0.02), 0.1, 0.03, ""),
               (row("trtllm", 0.2, 0.02), None, None, "failed")]
    load_bench().print_per_model(results)
    lines = [x.split() for x in capsys.readouterr().out.splitlines() if "Qwen3-32B" in x]
    assert [x[:5] for x in lines] == [["trtllm", "Qwen3-32B", "fp8", "fp8", "1"],
                                      ["vllm", "Qwen3-32B", "fp8", "bf16", "1"]]
    # TPOT 0.03 / 0.02 - 1 = +50%, TTFT 0.1 / 0.2 - 1 = -50%; vLLM: -10% and +20%
    assert lines[0][5:] == ["50.00%", "+50.00%", "50.00%", "-50.00%"]
    assert lines[1][5:] == ["10.00%", "-10.00%", "20.00%", "+20.00%"]
