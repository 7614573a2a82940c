"""What each serving engine leaves for the KV cache (kinsim.engine.memory_budget), worked by hand and checked
against public startup logs of real servers on H100 80GB."""

from pathlib import Path

import pytest

from kinsim.engine.kv import kv_layout
from kinsim.engine.memory_budget import sglang_static_fraction, visible_bytes
from kinsim.hardware.load import load_hardware
from kinsim.workload.load import workload_from_raw

ROOT = Path(__file__).resolve().parents[1]
H100 = load_hardware(ROOT / "hardware" / "h100.yaml")
GIB = 2**30
LLAMA_8B_WEIGHTS = 16_060_522_496  # bytes: 8.03 B parameters in bf16
LLAMA_8B_KV_TOKEN = 32 * 8 * 128 * 2 * 2  # layers x KV heads x head dim x (K, V) x bf16: 131,072 B


def workload(model="Llama-3.1-8B", **deployment):
    raw = {"name": "memory", "model": model, "deployment": deployment,
           "requests": {"kind": "long_cot", "problems": 1, "prompt_tokens": 10, "output_tokens": 2,
                        "max_output_tokens": 4}}
    return workload_from_raw(raw, ROOT)


def kv_gib(w, hw=H100) -> float:
    """KV-cache bytes per GPU of ``w``'s replica, GiB."""
    layout = kv_layout(w.model, w.deployment, w.attention, hw)
    return layout.capacity_bytes / w.deployment.tensor_parallel / GIB


def test_hbm_is_binary_and_cuda_sees_99_percent_of_it():
    # vLLM's logs print torch's total for an H100 80GB HBM3: 79.19 GiB (llm-d-planner's v0.19.0 sweep)
    assert H100.gpu.memory.capacity == 80 * GIB
    assert visible_bytes(H100) / GIB == pytest.approx(79.19, abs=0.02)


def test_vllm_budget_by_hand_and_against_its_log():
    """vLLM 0.19, Llama-3.1-8B-Instruct on one H100 at --gpu-memory-utilization 0.95 with its defaults of 1,024
    sequences and 8,192 batched tokens: 'Available KV cache memory: 58.11 GiB', 476,016 tokens
    (github.com/jgchn/llm-d-planner, accuracy/results/v0.19.0)."""
    w = workload(tensor_parallel=1, gpu_memory_fraction=0.95, max_num_seqs=1024)
    sampler = 1024 * 128_256 * 16  # logits x (fp32 + sorted fp32 + int64 index): 2.10 GB
    forward = 8192 * (2 * 4096 + (32 + 2 * 8) * 128 + 2 * 14_336) * 2  # residual x 2, QKV, gate/up: 0.70 GB
    assert sampler > forward
    by_hand = 0.95 * 0.99 * 80 * GIB - LLAMA_8B_WEIGHTS - sampler - 0.25 * GIB
    blocks = int(by_hand // (16 * LLAMA_8B_KV_TOKEN))
    assert kv_layout(w.model, w.deployment, w.attention, H100).total_blocks == blocks
    assert kv_gib(w) == pytest.approx(58.11, rel=0.01)
    assert blocks * 16 == pytest.approx(476_016, rel=0.01)


def test_tensor_parallel_gpus_keep_collective_buffers():
    """The same sweep at TP 2: 63.76 GiB per GPU (non-torch memory 2.07 GiB against 0.25 at one GPU)."""
    one, two = workload(tensor_parallel=1, gpu_memory_fraction=0.95, max_num_seqs=1024), workload(
        tensor_parallel=2, gpu_memory_fraction=0.95, max_num_seqs=1024)
    assert kv_gib(two) == pytest.approx(63.76, rel=0.01)
    # half the weights come back, 1.85 GiB of buffers go: 7.48 GB less weights, 1.99 GB more buffers
    gained = (kv_gib(two) - kv_gib(one)) * GIB
    assert gained == pytest.approx(LLAMA_8B_WEIGHTS / 2 - 1.85 * GIB, abs=2 * 16 * LLAMA_8B_KV_TOKEN)


def test_trtllm_takes_its_fraction_of_what_weights_and_activations_leave():
    w = workload(tensor_parallel=1, engine="trtllm")
    forward = 8192 * (2 * 4096 + (32 + 2 * 8) * 128 + 2 * 14_336) * 2
    by_hand = 0.9 * (0.99 * 80 * GIB - LLAMA_8B_WEIGHTS - forward - 0.25 * GIB)
    assert kv_layout(w.model, w.deployment, w.attention, H100).total_blocks == int(by_hand // (16 * LLAMA_8B_KV_TOKEN))
    vllm = workload(tensor_parallel=1)  # the same 0.9 leaves vLLM less: 0.1 of the weights come out of its share
    assert kv_gib(w) - kv_gib(vllm) > 0.1 * LLAMA_8B_WEIGHTS / GIB


def test_sglang_derives_its_fraction_from_the_gpu():
    """SGLang's rule (server_args.py): an 80 GiB GPU (81,101 MiB visible) at TP 1 reserves 512 + 1.5 x 8,192 +
    2 x 256 + 1,024 / 8 = 13,440 MiB: 1 - 13,440 / 81,101 = 0.834; at TP 4 its graphs hold 512 sequences and
    it reserves 14,336 MiB: 0.823; on an H200 (141 GiB) 0.906; on a 24 GB L4 (GDDR6, 22,660 MiB) it reserves
    512 + 12,288 + 2 x 24 + 128 = 12,976 MiB: 0.427."""
    mib = visible_bytes(H100) / 2**20
    assert sglang_static_fraction(visible_bytes(H100), workload(engine="sglang").deployment) == round(
        1 - 13_440 / mib, 3) == 0.834
    assert sglang_static_fraction(visible_bytes(H100), workload(engine="sglang", tensor_parallel=4).deployment) == 0.823
    h200 = load_hardware(ROOT / "hardware" / "h200.yaml")
    assert sglang_static_fraction(visible_bytes(h200), workload(engine="sglang").deployment) == 0.906
    l4 = load_hardware(ROOT / "hardware" / "l4.yaml")
    assert sglang_static_fraction(visible_bytes(l4), workload(engine="sglang").deployment) == round(
        1 - 12_976 / (visible_bytes(l4) / 2**20), 3) == 0.427


def test_sglang_kv_pool_against_its_log():
    """SGLang on one H100, Qwen3-30B-A3B-FP8 at mem_fraction_static 0.83: 'avail mem=78.48 GB' before the
    weights, 29.15 GB of weights, K + V 35.98 GB (github.com/mystous/vllm_hybrid, eval/results/20260827_124509_
    tsk043_smoke_qwen30b/t1_gpu_only/server.log; SGLang's GB are GiB). kinsim counts 28.44 GiB of weights."""
    w = workload(model={"preset": "Qwen3-30B-A3B", "weight_dtype": "fp8"}, engine="sglang", gpu_memory_fraction=0.83)
    assert kv_gib(w) == pytest.approx(35.98, rel=0.025)


def test_a_logged_kv_cache_replaces_the_estimate():
    w = workload(tensor_parallel=2, kv_cache_memory="8.11 GiB")
    block = 16 * LLAMA_8B_KV_TOKEN / 2  # a block's bytes on one of the 2 GPUs
    assert kv_layout(w.model, w.deployment, w.attention, H100).total_blocks == int(8.11 * GIB // block)
    bigger = load_hardware(ROOT / "hardware" / "h100.yaml", {"gpu.memory.capacity": "160 GiB"})
    assert kv_gib(w, bigger) == kv_gib(w)  # whatever the GPU's memory


def test_a_logged_kv_cache_below_one_block_is_one_clear_error(tmp_path, capsys):
    from kinsim.cli import main

    # Qwen3-8B: a block of 16 tokens x 147,456 B = 2.36 MB per GPU
    out = tmp_path / "out.json"
    code = main(["run", str(ROOT / "workloads" / "aime_bon32.yaml"), "--hw", str(ROOT / "hardware" / "h100.yaml"),
                 "--set", "deployment.kv_cache_memory=1 MB", "--json", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "aime_bon32.yaml: deployment.kv_cache_memory: holds no KV block of 2.36 MB per GPU, got '1 MB'" in err
    assert not out.exists()
