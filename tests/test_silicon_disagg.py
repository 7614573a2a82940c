"""Disaggregated rows of the public silicon measurements (``silicon_sample.csv``, mode ``disagg``) as kinsim
workloads: roles, tensor parallelism, the closed loop's clients, the nodes they need, and the figures the
benchmark client sees. The rows here are made up by hand, in the CSV's columns."""

from __future__ import annotations

import json

import pytest

from kinsim import load_hardware, simulate
from kinsim.calibration.silicon import (
    CLIENTS,
    SiliconRole,
    client_figures,
    client_of,
    expressible,
    nodes_needed,
    workload_of,
)
from kinsim.errors import SpecError
from kinsim.workload.load import workload_from_raw
from kinsim.workload.spec import ClosedLoopArrivals

from .conftest import HARDWARE, ROOT

# A made-up deployment: 2 prefill workers of 1 GPU, 3 decode workers of 2 GPUs, 4 sequences per decode worker.
DISAGG = {"id": "made_up_disagg", "mode": "disagg", "backend": "vllm", "model_path": "meta-llama/Llama-3.1-8B",
          "gemm_quant_mode": "fp8_block", "isl": 64, "osl": 5, "batch_size": float("nan"),
          "tp_size": float("nan"), "pp_size": float("nan"), "attention_dp_size": float("nan"),
          "prefill_batch_size": 1, "prefill_num_workers": 2, "prefill_tp_size": 1, "prefill_pp_size": 1,
          "prefill_attention_dp_size": 1, "decode_batch_size": 4, "decode_num_workers": 3, "decode_tp_size": 2,
          "decode_pp_size": 1, "decode_attention_dp_size": 1, "silicon_ttft_ms": 50.0, "silicon_tpot_ms": 8.0}


AGG_MOE = {"id": "q235_tp8_c16", "mode": "agg", "backend": "trtllm", "model_path": "Qwen/Qwen3-235B-A22B-FP8",
           "gemm_quant_mode": "fp8_block", "isl": 1024, "osl": 128, "batch_size": 16, "tp_size": 8, "pp_size": 1,
           "moe_tp_size": 1, "moe_ep_size": 8, "silicon_ttft_ms": 300.0, "silicon_tpot_ms": 15.0}


def test_a_disaggregated_row_becomes_prefill_and_decode_roles():
    row, why = expressible(DISAGG)
    assert why == "" and row.disaggregated
    assert row.prefill == SiliconRole(workers=2, tp=1, batch_size=1)
    assert row.decode == SiliconRole(workers=3, tp=2, batch_size=4)
    assert row.concurrency == 12  # decode_batch_size 4 x decode_num_workers 3
    assert row.gpus == 8  # 2 x 1 + 3 x 2
    assert row.weight_dtype == "fp8"  # fp8_block: FP8 weights, scaled per block
    assert (row.ttft_s, row.tpot_s) == (0.050, 0.008)

    raw = workload_of(row)
    assert raw["deployment"]["disaggregation"] == {"prefill": {"replicas": 2, "tensor_parallel": 1},
                                                   "decode": {"replicas": 3, "tensor_parallel": 2}}
    workload = workload_from_raw(raw, ROOT)  # the loader validates it
    split = workload.deployment.disaggregation
    assert (split.prefill.replicas, split.prefill.tensor_parallel) == (2, 1)
    assert (split.decode.replicas, split.decode.tensor_parallel) == (3, 2)
    assert workload.deployment.data_parallel == 1 and workload.deployment.router == "least_loaded"
    assert workload.deployment.engine == "vllm"
    arrival = workload.requests.arrival
    assert isinstance(arrival, ClosedLoopArrivals) and arrival.concurrency == 12 and not arrival.rounds
    assert workload.requests.problems == CLIENTS["vllm"].requests_per_client * 12  # 12 clients
    assert workload.requests.warmup == (12 if CLIENTS["vllm"].warmup_round else 0)
    assert workload.gpus == 8


@pytest.mark.parametrize("engine", [None, "none"])
def test_a_row_schedules_as_its_backend_whatever_prices_the_host(engine):
    # The overheads are fitted with engine "none" (no host time): the rows must still batch as TensorRT-LLM
    # does (whole prompts, no-evict admission), or the fit would absorb the scheduling's difference.
    row, _ = expressible(AGG_MOE)
    deployment = workload_from_raw(workload_of(row, engine=engine), ROOT).deployment
    assert deployment.engine == (engine or "trtllm")
    assert (deployment.chunked_prefill, deployment.admission) == (False, "no_evict")


def test_rows_kinsim_cannot_express_keep_their_reason():
    assert expressible({**AGG_MOE, "backend": "dynamo"}) == (None, "backend dynamo (kinsim's engines: vllm, sglang, "
                                                                   "trtllm, none)")
    assert expressible({**DISAGG, "prefill_attention_dp_size": 4}) == (None, "prefill_attention_dp_size > 1")
    assert expressible({**DISAGG, "decode_attention_dp_size": 8}) == (None, "decode_attention_dp_size > 1")
    assert expressible({**DISAGG, "decode_pp_size": 2}) == (None, "decode_pp_size > 1")
    assert expressible({**DISAGG, "decode_num_workers": float("nan")}) == (None, "missing figures")
    assert expressible({**DISAGG, "gemm_quant_mode": "int4_wo"}) == (None, "GEMM quantization int4_wo")
    assert expressible({**DISAGG, "model_path": "acme/unknown-model"}) == (None, "no preset for the model")


@pytest.mark.parametrize(("mode", "dtype"), [("bfloat16", "bf16"), ("fp8_static", "fp8"), ("fp8_ootb", "fp8"),
                                            ("fp8_block", "fp8"), ("nvfp4", "nvfp4")])
def test_aiconfigurators_quantization_names_map_to_the_weight_type_they_store(mode, dtype):
    row, why = expressible({**DISAGG, "gemm_quant_mode": mode})
    assert why == "" and row.weight_dtype == dtype


def test_a_disaggregated_rows_clients_send_as_each_request_ends_whatever_their_backends_rounds():
    # SGLang's client sends in rounds on aggregated rows; a disaggregated row's decode workers are not stalled
    # by prefills, so its clients are a plain closed loop (the backend's request count kept).
    sglang, _ = expressible({**DISAGG, "backend": "sglang"})
    aggregated, _ = expressible({**AGG_MOE, "backend": "sglang"})
    assert client_of(aggregated) == CLIENTS["sglang"] and CLIENTS["sglang"].rounds
    assert client_of(sglang).rounds is False
    assert client_of(sglang).requests_per_client == CLIENTS["sglang"].requests_per_client
    arrival = workload_from_raw(workload_of(sglang), ROOT).requests.arrival
    assert not arrival.rounds and not arrival.stagger
    vllm, _ = expressible(DISAGG)
    assert client_of(vllm) == CLIENTS["vllm"]  # not in rounds anyway: unchanged


def test_nodes_needed_count_every_gpu_of_both_roles():
    row, _ = expressible(DISAGG)
    assert nodes_needed(row) == 1  # 8 GPUs fill one 8-GPU node
    wide, _ = expressible({**DISAGG, "prefill_num_workers": 5, "decode_num_workers": 11, "decode_tp_size": 1})
    assert wide.gpus == 16 and nodes_needed(wide) == 2  # 5 x 1 + 11 x 1
    odd, _ = expressible({**DISAGG, "prefill_num_workers": 3})
    assert odd.gpus == 9 and nodes_needed(odd) == 2  # 3 + 3 x 2 = 9 GPUs: ceil(9 / 8)


def test_the_client_sees_its_first_token_once_the_kv_has_moved():
    row, _ = expressible({**DISAGG, "osl": 11})
    result = {"latency.request.ttft.mean": 0.5, "latency.request.tpot.mean": 0.03,
              "disaggregation.decode_queue_s.mean": 0.2, "disaggregation.transfer_stall_s.mean": 0.05}
    ttft, tpot = client_figures(result, row)
    assert ttft == pytest.approx(0.75)  # 0.5 + 0.2 + 0.05
    assert tpot == pytest.approx(0.005)  # 0.03 - 0.25 / (11 - 1)
    aggregated = {"id": "agg", "mode": "agg", "backend": "vllm", "model_path": "meta-llama/Llama-3.1-8B",
                  "gemm_quant_mode": float("nan"), "isl": 64, "osl": 11, "batch_size": 4, "tp_size": 1,
                  "silicon_ttft_ms": 50.0, "silicon_tpot_ms": 8.0}
    assert client_figures(result, expressible(aggregated)[0]) == (0.5, 0.03)  # kinsim's own means


def test_a_disaggregated_row_runs_on_as_many_nodes_as_it_needs():
    row, _ = expressible({**DISAGG, "prefill_num_workers": 5, "decode_num_workers": 11, "decode_tp_size": 1,
                          "decode_batch_size": 1, "osl": 4})
    workload = workload_from_raw(workload_of(row), ROOT)
    with pytest.raises(SpecError, match="needs 16 GPUs"):
        simulate(workload, load_hardware(HARDWARE / "h100.yaml"))  # one node has 8
    result = simulate(workload, load_hardware(HARDWARE / "h100.yaml", {"cluster.nodes": nodes_needed(row)}))
    requests = result.requests
    per_client = CLIENTS["vllm"].requests_per_client
    assert len(requests) == per_client * 11 and (requests["state"] == "finished").all()  # 11 clients
    assert result["disaggregation.decode.replicas"] == 11 and result["disaggregation.prefill.replicas"] == 5
    assert result["disaggregation.transfers"] >= 1
    ttft, _ = client_figures(result, row)
    assert ttft > result["latency.request.ttft.mean"]  # moving the KV takes time after the first token


def test_an_fp8_moe_row_keeps_its_expert_parallelism():
    row, why = expressible(AGG_MOE)
    assert why == "" and row.model == "Qwen3-235B-A22B" and row.weight_dtype == "fp8"
    assert (row.tp, row.expert_parallel) == (8, 8)
    workload = workload_from_raw(workload_of(row), ROOT)
    assert workload.deployment.expert_parallel == 8 and workload.deployment.tensor_parallel == 8
    assert expressible({**AGG_MOE, "moe_tp_size": 2, "moe_ep_size": 4, "tp_size": 8})[1] == ""
    assert expressible({**AGG_MOE, "moe_tp_size": 1, "moe_ep_size": 4, "tp_size": 8}) == (
        None, "moe_tp_size x moe_ep_size != tp_size")
    # the roles of a disaggregated row share kinsim's one deployment.expert_parallel
    assert expressible({**DISAGG, "decode_moe_ep_size": 2}) == (None, "prefill_moe_ep_size != decode_moe_ep_size")
    assert expressible({**DISAGG, "decode_moe_ep_size": 4}) == (
        None, "decode_moe_tp_size x decode_moe_ep_size != decode_tp_size")
    both = {**DISAGG, "model_path": "Qwen/Qwen3-235B-A22B-FP8", "prefill_tp_size": 4, "prefill_moe_ep_size": 4,
            "decode_tp_size": 4, "decode_moe_ep_size": 4, "prefill_moe_tp_size": 1, "decode_moe_tp_size": 1}
    row, why = expressible(both)
    assert why == "" and row.expert_parallel == 4
    workload = workload_from_raw(workload_of(row), ROOT)
    assert workload.deployment.expert_parallel == 4
    assert workload.deployment.disaggregation.decode.tensor_parallel == 4


def test_a_minimax_row_runs_on_its_preset_with_fp8_weights_and_its_servers_kv_cache():
    row, why = expressible({**AGG_MOE, "model_path": "MiniMaxAI/MiniMax-M2.5", "backend": "vllm",
                            "gemm_quant_mode": "fp8", "tp_size": 4, "moe_ep_size": 4})
    assert why == "" and row.model == "MiniMax-M2.5" and (row.tp, row.expert_parallel) == (4, 4)
    workload = workload_from_raw(workload_of(row), ROOT)
    assert workload.model.moe.experts == 256 and workload.model.weight_dtype == "fp8"
    assert workload.model.kv_dtype == "bf16"  # vLLM's own server: --kv-cache-dtype auto, the model's dtype


GAP_SOURCE = "source_file=/Users/x/aic-auto-gap-analysis/data/h100_sxm/x/1.0/m.csv; silicon_concurrency=16"


@pytest.mark.parametrize(("backend", "quant", "source", "kv"), [
    ("vllm", "fp8", "", "bf16"),  # its own server's default keeps the model's dtype
    ("sglang", "fp8_block", "", "fp8"),  # SGLang's DeepSeek-R1 rows queue as an fp8 cache does
    ("trtllm", "fp8_block", "", "fp8"),  # Model Optimizer's FP8 checkpoints quantize the KV cache too
    ("vllm", "fp8", GAP_SOURCE, "fp8"),  # aiconfigurator's generated deployment: its fp8 reading
    ("sglang", "fp8_block", GAP_SOURCE, "fp8"),
    ("vllm", "nvfp4", "", "bf16"),
    ("trtllm", "nvfp4", GAP_SOURCE, "fp8"),
    ("vllm", float("nan"), GAP_SOURCE, "bf16"),  # bf16 weights: a bf16 cache on any stack
    ("trtllm", float("nan"), "", "bf16"),
])
def test_a_quantized_rows_kv_cache_is_its_servers_default_or_aiconfigurators_reading(backend, quant, source, kv):
    from kinsim.calibration.silicon import kv_dtype_of

    row, why = expressible({**AGG_MOE, "backend": backend, "gemm_quant_mode": quant, "moe_quant_mode": quant,
                            "silicon_data_source": source})
    assert why == "" and kv_dtype_of(row) == kv
    assert workload_from_raw(workload_of(row), ROOT).model.kv_dtype == kv


def test_nvfp4_rows_and_experts_quantized_apart_from_the_gemms():
    row, why = expressible({**AGG_MOE, "gemm_quant_mode": "fp8", "moe_quant_mode": "nvfp4"})
    assert why == "" and (row.weight_dtype, row.expert_weight_dtype) == ("fp8", "nvfp4")
    model = workload_from_raw(workload_of(row), ROOT).model
    assert (model.weight_dtype, model.expert_weight_dtype, model.kv_dtype) == ("fp8", "nvfp4", "fp8")
    assert model.moe.experts == 128 and model.moe.active_experts == 8  # the preset's MoE, its experts' type set
    row, _ = expressible({**AGG_MOE, "gemm_quant_mode": "nvfp4", "moe_quant_mode": "nvfp4"})
    assert (row.weight_dtype, row.expert_weight_dtype) == ("nvfp4", None)  # the experts follow the GEMMs
    same, _ = expressible({**AGG_MOE, "moe_quant_mode": "fp8_block"})
    assert same.expert_weight_dtype is None
    assert expressible({**AGG_MOE, "moe_quant_mode": "w4a8_mxfp4"}) == (None, "MoE quantization w4a8_mxfp4")


def test_a_row_that_repeats_a_stated_run_takes_its_roles_and_its_backend_gets_no_guess():
    """Two rows of one measurement, one with its roles (3 decode workers, attention data parallelism in
    prefill) and one without: the second takes the first's roles; a third row of that backend without
    counts and without a twin is not guessed as one worker per role; another backend's row is."""
    from kinsim.calibration.silicon import with_stated_roles

    blank = {key: float("nan") for key in ("prefill_batch_size", "prefill_num_workers", "decode_batch_size",
                                             "decode_num_workers")}
    stated = {**DISAGG, "id": "cfg1", "system": "h100_sxm", "backend": "trtllm", "prefill_attention_dp_size": 4,
              "decode_num_workers": 3}
    repeat = {**DISAGG, **blank, "id": "x_c12_tp2", "system": "h100_sxm", "backend": "trtllm"}
    lone = {**repeat, "id": "y_c6_tp2", "silicon_ttft_ms": 77.0}
    other = {**lone, "backend": "sglang"}
    rows = with_stated_roles([stated, repeat, lone, other])
    assert rows[1]["decode_num_workers"] == 3 and rows[1]["prefill_attention_dp_size"] == 4
    assert expressible(rows[1]) == (None, "prefill_attention_dp_size > 1")
    assert expressible(rows[2]) == (None, "worker counts not stated (its backend's restated runs have other roles)")
    row, why = expressible(rows[3])
    assert why == "" and (row.prefill.workers, row.decode.workers, row.decode.batch_size) == (1, 1, 6)


def test_a_row_names_its_serving_stack_and_its_replay_takes_that_stacks_frontend(monkeypatch):
    from kinsim.calibration import silicon

    dynamo = {**AGG_MOE, "silicon_data_source": "source_file=2026-03-25.csv; image=nvcr.io/nvidia/ai-dynamo/"
                                                "tensorrtllm-runtime:0.8.0"}
    gap = {**AGG_MOE, "silicon_data_source": "source_file=/Users/x/aic-auto-gap-analysis/data/h100_sxm/trtllm/"
                                             "1.0.0rc3/Qwen_Qwen3-235B-A22B-FP8.csv; silicon_concurrency=16"}
    own = {**AGG_MOE, "backend": "vllm",
           "silicon_data_source": "source_file=2026-04-06.csv; image=vllm/vllm-openai:v0.18.0"}
    assert [silicon.stack_of(r) for r in (dynamo, gap, own, AGG_MOE)] == ["dynamo", "dynamo", "engine", "engine"]
    monkeypatch.setattr(silicon, "FRONTEND_S", {("vllm", "engine"): 0.021, ("vllm", "dynamo"): 0.07})
    row, _ = expressible(own)
    assert row.stack == "engine" and silicon.frontend_of(row) == 0.021
    assert workload_of(row)["deployment"]["frontend_s"] == "0.021 s"
    assert workload_from_raw(workload_of(row), ROOT).deployment.frontend_s == 0.021
    # fitting the engine overheads prices no host time: no frontend either
    assert "frontend_s" not in workload_of(row, engine="none")["deployment"]
    # a pair without a fit takes the engine's preset
    row, _ = expressible(dynamo)
    assert silicon.frontend_of(row) is None and "frontend_s" not in workload_of(row)["deployment"]


def test_a_model_without_a_preset_runs_from_the_config_json_aiconfigurator_ships(tmp_path):
    """Qwen3-30B-A3B's config.json (Qwen/Qwen3-30B-A3B), in aiconfigurator-core's model_configs layout: the
    row runs from it and gets the preset's sizes; a model type kinsim does not read is refused by name."""
    from kinsim.calibration import silicon
    from kinsim.model import load_model

    config = {"model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "num_attention_heads": 32,
              "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
              "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936, "tie_word_embeddings": False,
              "max_position_embeddings": 40960, "torch_dtype": "bfloat16"}
    (tmp_path / "Qwen--Qwen3-30B-A3B_config.json").write_text(json.dumps(config))
    (tmp_path / "Qwen--Qwen3.5-27B_config.json").write_text(json.dumps({**config, "model_type": "qwen3_5"}))
    raw = {**AGG_MOE, "model_path": "Qwen/Qwen3-30B-A3B", "gemm_quant_mode": "nan", "moe_quant_mode": "nan"}
    row, why = expressible(raw, tmp_path)
    assert why == "" and row.model == "Qwen/Qwen3-30B-A3B"
    assert row.model_config == str(tmp_path / "Qwen--Qwen3-30B-A3B_config.json")
    model = workload_from_raw(workload_of(row), ROOT).model
    preset = load_model("Qwen3-30B-A3B")
    assert (model.params_total, model.params_active, model.kv_bytes_per_token) == (
        preset.params_total, preset.params_active, preset.kv_bytes_per_token)
    assert workload_from_raw(workload_of(row), ROOT).deployment.expert_parallel == 8
    refused = expressible({**raw, "model_path": "Qwen/Qwen3.5-27B"}, tmp_path)
    assert refused[0] is None and refused[1].startswith("model type qwen3_5")
    assert expressible({**raw, "model_path": "acme/unknown"}, tmp_path) == (None, "no preset for the model")
    assert silicon.shipped_config("Qwen/Qwen3-30B-A3B", tmp_path)[1] == ""


def test_a_checkpoint_that_declares_an_fp8_kv_cache_keeps_it_on_a_server_left_at_its_defaults(tmp_path):
    """vLLM's own server keeps the model's dtype for the KV cache unless the checkpoint declares another:
    Model Optimizer's metadata beside the config (``kv_cache_quant_algo``) or compressed-tensors'
    ``kv_cache_scheme`` in it."""
    from kinsim.calibration.silicon import declared_kv_dtype, kv_dtype_of

    config = {"model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "num_attention_heads": 32,
              "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
              "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936, "tie_word_embeddings": False,
              "max_position_embeddings": 40960, "torch_dtype": "bfloat16"}
    (tmp_path / "acme--plain_config.json").write_text(json.dumps(config))
    (tmp_path / "acme--modelopt_config.json").write_text(json.dumps(config))
    (tmp_path / "acme--modelopt_hf_quant_config.json").write_text(json.dumps(
        {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}}))
    (tmp_path / "acme--compressed_config.json").write_text(json.dumps(
        {**config, "quantization_config": {"quant_method": "compressed-tensors",
                                           "kv_cache_scheme": {"num_bits": 8, "type": "float"}}}))
    (tmp_path / "acme--fp4_config.json").write_text(json.dumps(config))
    (tmp_path / "acme--fp4_hf_quant_config.json").write_text(json.dumps(
        {"quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "NVFP4"}}))
    (tmp_path / "acme--int8_config.json").write_text(json.dumps(
        {**config, "quantization_config": {"kv_cache_scheme": {"num_bits": 8, "type": "int"}}}))
    (tmp_path / "acme--broken_config.json").write_text(json.dumps(config))
    (tmp_path / "acme--broken_hf_quant_config.json").write_text("{not json")
    expected = {"plain": "bf16", "modelopt": "fp8", "compressed": "fp8", "broken": "bf16"}
    for name, kv in expected.items():
        raw = {**AGG_MOE, "backend": "vllm", "model_path": f"acme/{name}", "gemm_quant_mode": "fp8",
               "moe_quant_mode": "fp8"}
        row, why = expressible(raw, tmp_path)
        assert why == "" and kv_dtype_of(row) == kv, name
        assert row.declared_kv_dtype == (None if kv == "bf16" else "fp8")
    # declared, it holds for any backend and weights
    raw = {**AGG_MOE, "backend": "sglang", "model_path": "acme/modelopt", "gemm_quant_mode": "nan",
           "moe_quant_mode": "nan"}
    assert kv_dtype_of(expressible(raw, tmp_path)[0]) == "fp8"
    assert declared_kv_dtype(None) is None
    # a KV cache type kinsim does not price: the row is refused by name, not priced as another
    for name, declared in (("fp4", "nvfp4"), ("int8", "int8")):
        raw = {**AGG_MOE, "backend": "trtllm", "model_path": f"acme/{name}", "gemm_quant_mode": "fp8"}
        assert expressible(raw, tmp_path) == (None, f"KV cache quantization {declared}")


def test_a_continuous_clients_answers_spread_evenly_about_the_rows_length():
    # vLLM's and TensorRT-LLM's clients draw each answer's length uniformly within 30% of the row's osl
    # (mean osl), which keeps a closed loop of equal prompts from running in lockstep; SGLang's rounds keep
    # every answer osl tokens long. By hand: 128 x 0.7 = 89.6 -> 90, 128 x 1.3 = 166.4 -> 166, mean 128.
    row = {"id": "agg_c4", "mode": "agg", "backend": "vllm", "model_path": "meta-llama/Llama-3.1-8B",
           "gemm_quant_mode": float("nan"), "isl": 64, "osl": 128, "batch_size": 4, "tp_size": 1,
           "silicon_ttft_ms": 50.0, "silicon_tpot_ms": 8.0}
    for backend in ("vllm", "trtllm"):
        assert CLIENTS[backend].output_spread == 0.3
        raw = workload_of(expressible({**row, "backend": backend})[0])
        assert raw["requests"]["output_tokens"] == {"dist": "uniform", "low": 90, "high": 166}
        assert raw["requests"]["max_output_tokens"] == 166  # the cap never cuts a drawn answer
    sglang = workload_of(expressible({**row, "backend": "sglang"})[0])["requests"]
    assert (sglang["output_tokens"], sglang["max_output_tokens"]) == (128, 128)
    result = simulate(workload_from_raw(workload_of(expressible(row)[0]), ROOT), load_hardware(HARDWARE / "h100.yaml"))
    lengths = result.requests["generated_tokens"]
    assert len(lengths) == CLIENTS["vllm"].requests_per_client * 4 and (result.requests["state"] == "finished").all()
    assert lengths.between(90, 166).all() and lengths.nunique() > 1
