"""A silicon row is replayed with the token budget and seats its server takes by default on the GPU it is
simulated on (``kinsim.calibration.silicon.server_defaults``): vLLM's and SGLang's defaults depend on the
GPU's memory (and, for vLLM, on whether it is an A100); TensorRT-LLM's do not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kinsim import load_hardware
from kinsim.calibration.silicon import GIB, expressible, server_defaults, workload_of
from kinsim.engine.memory_budget import VISIBLE_SHARE
from kinsim.hardware.spec import GPUSpec
from kinsim.workload.load import workload_from_raw

from .conftest import HARDWARE, ROOT


def gpu(name: str) -> GPUSpec:
    return load_hardware(HARDWARE / f"{name}.yaml").gpu


@pytest.mark.parametrize(("hardware", "expected"), [
    ("h100", (8192, 1024)),  # 80 GiB >= 70, not an A100
    ("h200", (8192, 1024)),
    ("b200", (8192, 1024)),
    ("a100", (2048, 256)),  # 80 GiB, but an A100 (by name)
    ("a100_pcie", (2048, 256)),
    ("l40s", (2048, 256)),  # 48 GB = 44.7 GiB < 70
    ("l4", (2048, 256)),
])
def test_vllm_serve_takes_the_large_budget_only_on_big_gpus_that_are_not_a100s(hardware, expected):
    assert server_defaults("vllm", gpu(hardware)) == expected


@pytest.mark.parametrize(("hardware", "tokens"), [
    ("l4", 2048),  # 24 GB = 22.4 GiB < 35
    ("l40s", 4096),  # 44.7 GiB < 60
    ("h100", 8192),  # 80 GiB < 90
    ("a100", 8192),
    ("h200", 8192),  # 141 GiB < 160
    ("b200", 16384),  # 180 GiB >= 160
    ("mi300x", 16384),
])
def test_sglang_chunks_prompts_by_the_gpus_memory(hardware, tokens):
    assert server_defaults("sglang", gpu(hardware)) == (tokens, 256)


def test_the_tiers_bounds_are_gib_cuda_exposes_and_tensorrt_llm_takes_the_same_everywhere():
    h100 = gpu("h100")

    def at(gib: float) -> GPUSpec:  # a GPU whose CUDA-visible memory is ``gib`` GiB (0.99 of its capacity)
        return replace(h100, memory=replace(h100.memory, capacity=gib * GIB / VISIBLE_SHARE))

    assert server_defaults("vllm", at(70)) == (8192, 1024) and server_defaults("vllm", at(69.9)) == (2048, 256)
    assert server_defaults("sglang", at(160))[0] == 16384 and server_defaults("sglang", at(159.9))[0] == 8192
    assert server_defaults("sglang", at(35))[0] == 4096 and server_defaults("sglang", at(34.9))[0] == 2048
    for name in ("l4", "h100", "b200"):
        assert server_defaults("trtllm", gpu(name)) == (8192, 2048)
    assert server_defaults("vllm") == server_defaults("vllm", h100)  # no GPU: this project's H100 rows


ROW = {"id": "toy_c16", "mode": "agg", "backend": "vllm", "model_path": "meta-llama/Llama-3.1-8B",
       "gemm_quant_mode": "nan", "isl": 1024, "osl": 128, "batch_size": 16, "tp_size": 1, "pp_size": 1,
       "silicon_ttft_ms": 100.0, "silicon_tpot_ms": 10.0}


@pytest.mark.parametrize(("backend", "hardware", "tokens", "seats"), [
    ("vllm", "h100", 8192, 1024), ("vllm", "l40s", 2048, 256), ("sglang", "b200", 16384, 256),
    ("trtllm", "l4", 8192, 2048),
])
def test_a_row_replays_its_servers_defaults_on_the_gpu_it_is_simulated_on(backend, hardware, tokens, seats):
    row, why = expressible({**ROW, "backend": backend})
    assert why == ""
    deployment = workload_from_raw(workload_of(row, gpu=gpu(hardware)), ROOT).deployment
    assert (deployment.max_num_batched_tokens, deployment.max_num_seqs) == (tokens, seats)
    many, _ = expressible({**ROW, "backend": backend, "batch_size": 512, "id": "toy_c512"})
    assert workload_of(many, gpu=gpu(hardware))["deployment"]["max_num_seqs"] == max(seats, 512)  # every client
