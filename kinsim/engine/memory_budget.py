"""How much of a GPU's memory a serving engine leaves for the KV cache (bytes per GPU).

Each engine reads ``deployment.gpu_memory_fraction`` (``f``) its own way; with ``visible`` the memory CUDA
exposes, ``weights`` the replica's weights on one GPU, ``activations`` the peak of the engine's profiling
run and ``runtime`` the memory outside PyTorch's allocator::

    vllm, none   kv = f x visible - weights - activations - runtime
    sglang       kv = f x (visible - context) - weights
    trtllm       kv = f x (visible - weights - forward activations - runtime)

* **vLLM** (``gpu_memory_utilization``, 0.9 unless set): the V1 worker budgets ``total x utilization``
  and subtracts what its profiling run left in use: the weights, PyTorch's peak during a dummy forward pass of
  ``max_num_batched_tokens`` tokens and a dummy sampler run, and the non-PyTorch memory that grew
  meanwhile (``vllm/v1/worker/gpu_worker.py``, ``determine_available_memory``). CUDA graphs are captured
  afterwards, out of the ``1 - utilization`` headroom (their memory is deducted by default only from
  v0.21).
* **SGLang** (``mem_fraction_static``): weights and KV pool together take the fraction of the memory free
  before the weights load (``model_runner``'s ``profile_max_num_token``); activations and CUDA graphs live
  in the rest, so nothing else is subtracted. Unset, SGLang derives it from the GPU's memory
  (:func:`sglang_static_fraction`): about 0.83 on an 80 GiB GPU.
* **TensorRT-LLM** (``kv_cache_free_gpu_memory_fraction``, 0.9 unless set, PyTorch backend): the
  fraction applies to the memory still free after the weights and a warm-up of ``max_num_tokens`` tokens
  (``tensorrt_llm/_torch/pyexecutor/_util.py``, ``KvCacheCreator``), so the same ``f`` leaves it more KV.

The terms and the data they were checked against (``docs/engine.md``, "KV cache"): 15 public vLLM startup
logs on H100 80GB, vLLM 0.11 and 0.19, every term printed (weights, "torch peak memory increase",
"non-torch forward increase memory", "Available KV cache memory"):

* :data:`VISIBLE_SHARE`: CUDA exposes 79.19 GiB of an H100's 80 GiB (79.15 of an A100 80GB's, 39.50 of an
  A100 40GB's): HBM capacities are binary, and the driver keeps about 1%.
* activations: the larger of the forward pass's widest activations over ``max_num_batched_tokens`` rows
  (:func:`forward_activation_bytes`) and the sampler's (:func:`sampler_bytes`). The sampler dominates
  dense models: vLLM 0.19's peak is 15.2-16.0 bytes per logit (Llama-3.1-8B 1.89 GiB, Qwen3-8B 2.21 GiB
  at 1,024 sequences), the fp32 logits, their sorted copy and the sort's int64 indices: 16 bytes
  (:data:`SAMPLER_BYTES_PER_LOGIT`). vLLM 0.11's was 38.4-38.9 bytes per logit (not modelled).
* :data:`RUNTIME_BYTES` and :data:`COLLECTIVE_BUFFER_BYTES`: 0.25 GiB at one GPU (cuBLAS and the
  attention backend's workspaces), 2.07-2.21 GiB per GPU under tensor parallelism (NCCL's and the custom
  all-reduce's buffers) in vLLM 0.19.
"""

from __future__ import annotations

from kinsim.dtypes import bytes_per_element
from kinsim.hardware.spec import HardwareSpec
from kinsim.model.spec import ModelSpec
from kinsim.ops.lower import ACT_DTYPE
from kinsim.ops.sharding import shard_heads
from kinsim.workload.spec import DeploymentSpec

GIB = 2.0 ** 30
#: Share of a GPU's memory that CUDA exposes to the engine (torch's ``mem_get_info`` total): 79.19 of the
#: H100's 80 GiB, 79.15 of the A100's 80 GiB, 39.50 of its 40 GiB (vLLM's startup logs print it).
VISIBLE_SHARE = 0.99
#: Bytes per logit of the sampler's peak in vLLM's profiling run: fp32 logits, their sorted copy and the
#: sort's int64 indices (top-p/top-k), 4 + 4 + 8.
SAMPLER_BYTES_PER_LOGIT = 16.0
#: Memory outside PyTorch's allocator on every GPU (cuBLAS and attention workspaces), bytes.
RUNTIME_BYTES = 0.25 * GIB
#: More of it on each GPU of a tensor-parallel group (NCCL's and the custom all-reduce's buffers), bytes.
COLLECTIVE_BUFFER_BYTES = 1.85 * GIB
#: Memory a process holds before it loads weights (CUDA context, NCCL's setup), bytes: SGLang finds 78.48 of
#: an H100's 79.19 GiB free then (its startup log).
CONTEXT_BYTES = 0.7 * GIB
#: ``gpu_memory_fraction`` where a workload leaves it out, per engine (SGLang's is derived per GPU).
DEFAULT_FRACTIONS = {"vllm": 0.9, "trtllm": 0.9, "none": 0.9}


def visible_bytes(hw: HardwareSpec) -> float:
    """Memory of one GPU that CUDA exposes, bytes."""
    return hw.gpu.memory.capacity * VISIBLE_SHARE


def forward_activation_bytes(model: ModelSpec, deployment: DeploymentSpec) -> float:
    """Bytes per GPU of the widest activations of a step of ``max_num_batched_tokens`` tokens: the residual
    stream twice, QKV and the MLP's gate and up projections (an MoE layer's for its active experts), in
    bf16."""
    tp = deployment.tensor_parallel
    shard = shard_heads(model.attention_heads, model.kv_heads, model.head_dim, tp, path="deployment.tensor_parallel")
    qkv = (shard.q_heads + 2 * shard.kv_heads) * model.head_dim
    if model.moe is None:
        mlp = 2 * model.intermediate_size / tp
    else:
        mlp = 2 * model.moe.expert_intermediate_size * model.moe.active_experts
        if model.moe.dense_layers:
            mlp = max(mlp, 2 * model.intermediate_size / tp)
    return deployment.max_num_batched_tokens * (2 * model.hidden_size + qkv + mlp) * bytes_per_element(ACT_DTYPE)


def sampler_bytes(model: ModelSpec, deployment: DeploymentSpec) -> float:
    """Bytes per GPU of the sampler's peak over as many sequences as a step can hold
    (``min(max_num_seqs, max_num_batched_tokens)``, as vLLM's profiling run samples)."""
    rows = min(deployment.max_num_seqs, deployment.max_num_batched_tokens)
    return rows * model.vocab_size * SAMPLER_BYTES_PER_LOGIT


def activation_bytes(model: ModelSpec, deployment: DeploymentSpec) -> float:
    """Peak activation bytes per GPU of the engine's profiling run: the forward pass, then the sampler."""
    return max(forward_activation_bytes(model, deployment), sampler_bytes(model, deployment))


def runtime_bytes(deployment: DeploymentSpec) -> float:
    """Bytes per GPU outside PyTorch's allocator (:data:`RUNTIME_BYTES`, plus :data:`COLLECTIVE_BUFFER_BYTES`
    where a replica's GPUs communicate)."""
    return RUNTIME_BYTES + (COLLECTIVE_BUFFER_BYTES if deployment.tensor_parallel > 1 else 0.0)


def sglang_static_fraction(visible: float, deployment: DeploymentSpec) -> float:
    """SGLang's ``mem_fraction_static`` when unset, for a GPU of ``visible`` bytes: one minus what it reserves
    for activations and CUDA graphs over the GPU's memory (``server_args.py``, ``_handle_gpu_memory_settings``,
    SGLang 0.5): 512 MiB, 1.5 MiB per token of its chunk (``max_num_batched_tokens`` here, at least 2,048),
    2 MiB per sequence of its largest CUDA graph and 1 GiB per 8 GPUs, at least 10 GiB on GPUs above 60 GiB;
    rounded to three places. An 80 GiB GPU at one GPU: 0.834."""
    mib = visible / 2 ** 20
    tp = deployment.tensor_parallel
    if mib < 20 * 1024:
        graph = 8
    elif mib < 35 * 1024:
        graph = 24 if tp < 4 else 80
    elif mib < 60 * 1024:
        graph = 32 if tp < 4 else 160
    elif mib < 160 * 1024:
        graph = 256 if tp < 4 else 512
    else:
        graph = 512
    reserved = 512 + 1.5 * max(deployment.max_num_batched_tokens, 2048) + 2 * graph + 1024 * tp / 8
    if mib > 60 * 1024:
        reserved = max(reserved, 10240)
    return round((mib - reserved) / mib, 3)


def memory_fraction(deployment: DeploymentSpec, hw: HardwareSpec) -> float:
    """``deployment.gpu_memory_fraction``, or the engine's own where the workload leaves it out."""
    if deployment.gpu_memory_fraction is not None:
        return deployment.gpu_memory_fraction
    if deployment.engine == "sglang":
        return sglang_static_fraction(visible_bytes(hw), deployment)
    return DEFAULT_FRACTIONS[deployment.engine]


def kv_budget_bytes(model: ModelSpec, deployment: DeploymentSpec, hw: HardwareSpec, weights: float) -> float:
    """Bytes per GPU the engine leaves for the KV cache (negative: nothing), ``weights`` bytes of weights on
    one GPU (see the module docstring); ``deployment.kv_cache_memory`` where the workload gives it."""
    if deployment.kv_cache_memory is not None:  # read from the server's own log
        return deployment.kv_cache_memory
    fraction, visible = memory_fraction(deployment, hw), visible_bytes(hw)
    overhead = overhead_bytes(model, deployment)
    if deployment.engine == "sglang":
        return fraction * (visible - overhead) - weights
    if deployment.engine == "trtllm":
        return fraction * (visible - weights - overhead)
    return fraction * visible - weights - overhead


def overhead_bytes(model: ModelSpec, deployment: DeploymentSpec) -> float:
    """Bytes per GPU besides the weights and the KV cache in the engine's budget: the activation peak and the
    runtime buffers (TensorRT-LLM's warm-up runs no sampler over every sequence: its forward activations);
    for SGLang, what the process held before its weights loaded (:data:`CONTEXT_BYTES`)."""
    if deployment.engine == "sglang":
        return CONTEXT_BYTES
    if deployment.engine == "trtllm":
        return forward_activation_bytes(model, deployment) + runtime_bytes(deployment)
    return activation_bytes(model, deployment) + runtime_bytes(deployment)


def kv_bytes_per_memory_byte(deployment: DeploymentSpec, hw: HardwareSpec) -> float:
    """KV bytes a GPU gains per byte of memory capacity at the fraction in force on ``hw`` (every engine: the
    fraction of the visible share; SGLang's own fraction also moves with the capacity; none where
    ``deployment.kv_cache_memory`` pins the cache)."""
    if deployment.kv_cache_memory is not None:
        return 0.0
    return memory_fraction(deployment, hw) * VISIBLE_SHARE
