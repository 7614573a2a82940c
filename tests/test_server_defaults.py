"""A silicon row is replayed with the token budget and seats its server takes by default on the GPU it is
simulated on (``kinsim.calibration.silicon.server_defaults``): vLLM's and SGLang's defaults depend on the
GPU's memory (and, for vLLM, on whether it is an A100); TensorRT-LLM's do not. The GPUs here are the H100's and
A100's files, and made-up parts of other memory sizes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kinsim import load_hardware
from kinsim.calibration.silicon import GIB, expressible, server_defaults, workload_of
from kinsim.engine.memory_budget import VISIBLE_SHARE
from kinsim.hardware.spec import GPUSpec
from kinsim.workload.load import workload_from_raw

from .conftest import HARDWARE, ROOT

H100 = load_hardware(HARDWARE / "h100.yaml").gpu
A100 = load_hardware(HARDWARE / "a100.yaml").gpu


def part(capacity_gb: float, name: str = "Made-up GPU") -> GPUSpec:
    """The H100 with another name and ``capacity_gb`` decimal GB of memory."""
    return replace(H100, name=name, memory=replace(H100.memory, capacity=capacity_gb * 1e9))


def visible(gib: float) -> GPUSpec:
    """A made-up GPU whose CUDA-visible memory is ``gib`` GiB (0.99 of its capacity)."""
    return replace(H100, name="Made-up GPU", memory=replace(H100.memory, capacity=gib * GIB / VISIBLE_SHARE))


@pytest.mark.parametrize(("gpu", "expected"), [
    (H100, (8192, 1024)),  # 80 GiB: 79.2 visible >= 70, not an A100
    (part(141), (8192, 1024)),
    (part(192), (8192, 1024)),
    (A100, (2048, 256)),  # 80 GiB, but an A100 (by name)
    (part(80, "NVIDIA A100 PCIe 80GB"), (2048, 256)),
    (part(48), (2048, 256)),  # 48 GB = 44.2 GiB visible < 70
    (part(24), (2048, 256)),
])
def test_vllm_serve_takes_the_large_budget_only_on_big_gpus_that_are_not_a100s(gpu, expected):
    assert server_defaults("vllm", gpu) == expected


@pytest.mark.parametrize(("gpu", "tokens"), [
    (part(24), 2048),  # 22.1 GiB visible < 35
    (part(48), 4096),  # 44.2 < 60
    (H100, 8192),  # 79.2 < 90
    (A100, 8192),
    (part(141), 8192),  # 130 < 160
    (part(192), 16384),  # 177 >= 160
])
def test_sglang_chunks_prompts_by_the_gpus_memory(gpu, tokens):
    assert server_defaults("sglang", gpu) == (tokens, 256)


def test_the_tiers_bounds_are_gib_cuda_exposes_and_tensorrt_llm_takes_the_same_everywhere():
    assert server_defaults("vllm", visible(70)) == (8192, 1024)
    assert server_defaults("vllm", visible(69.9)) == (2048, 256)
    assert server_defaults("sglang", visible(160))[0] == 16384 and server_defaults("sglang", visible(159.9))[0] == 8192
    assert server_defaults("sglang", visible(35))[0] == 4096 and server_defaults("sglang", visible(34.9))[0] == 2048
    for gpu in (part(24), H100, part(192)):
        assert server_defaults("trtllm", gpu) == (8192, 2048)
    assert server_defaults("vllm") == server_defaults("vllm", H100)  # no GPU: this project's H100 rows


ROW = {"id": "toy_c16", "mode": "agg", "backend": "vllm", "model_path": "meta-llama/Llama-3.1-8B",
       "gemm_quant_mode": "nan", "isl": 1024, "osl": 128, "batch_size": 16, "tp_size": 1, "pp_size": 1,
       "silicon_ttft_ms": 100.0, "silicon_tpot_ms": 10.0}


@pytest.mark.parametrize(("backend", "gpu", "tokens", "seats"), [
    ("vllm", H100, 8192, 1024), ("vllm", part(48), 2048, 256), ("sglang", part(192), 16384, 256),
    ("trtllm", part(24), 8192, 2048),
])
def test_a_row_replays_its_servers_defaults_on_the_gpu_it_is_simulated_on(backend, gpu, tokens, seats):
    row, why = expressible({**ROW, "backend": backend})
    assert why == ""
    deployment = workload_from_raw(workload_of(row, gpu=gpu), ROOT).deployment
    assert (deployment.max_num_batched_tokens, deployment.max_num_seqs) == (tokens, seats)
    many, _ = expressible({**ROW, "backend": backend, "batch_size": 512, "id": "toy_c512"})
    assert workload_of(many, gpu=gpu)["deployment"]["max_num_seqs"] == max(seats, 512)  # every client
