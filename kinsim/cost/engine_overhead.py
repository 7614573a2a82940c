"""Per-step host overhead of a serving engine: time each forward step takes outside the GPU's kernels.

A serving engine spends time on the host every step (scheduling the batch, preparing inputs and
metadata, launching the CUDA graph, sampling bookkeeping, detokenizing and streaming), and part of it is
not hidden behind the GPU's work. kinsim adds ``step_s + per_sequence_s x sequences`` to every step
(``sequences``: those that get a token this step), reported in the ``other`` class.

Each request also spends ``frontend_s`` in the serving frontend before the engine sees it (the API
server's HTTP handling, tokenization and hand-off to the engine process; the first token's way back is
folded in): the engine admits it that long after it arrives, and its TTFT counts from the arrival. One
constant per backend, fitted to the same rows' TTFTs (:func:`kinsim.calibration.silicon.fit_frontend_s`:
the weighted median of measured minus simulated TTFT, every fifth row held out; ``bench_fidelity.py``
prints it). It is a property of the engine's host side at those versions, not of the GPU. vLLM's is its
own API server's (6.8 ms, the rows that ran ``vllm/vllm-openai`` before 0.14; 26.8 ms for 0.18's,
:data:`VLLM_ASYNC`; behind NVIDIA Dynamo's frontend its rows take 50.8 ms,
:data:`kinsim.calibration.silicon.FRONTEND_S`); SGLang's and TensorRT-LLM's H100 rows all came through
Dynamo, so theirs include it.

The presets are fitted to the public end-to-end silicon measurements of H100 deployments
(``silicon_sample.csv`` of aiconfigurator-core 0.12.0, the H100 rows kinsim can express: Qwen3-32B,
Llama-3.1 and Qwen3-235B-A22B presets, aggregated serving), two constants per backend: the non-negative
least-absolute-deviations fit of measured minus simulated TPOT (without overhead) against 1 and the batch's
sequences, in relative terms (it minimises the TPOT MAPE; :func:`kinsim.calibration.silicon.least_absolute_deviations`),
with every fifth row held out (``benchmarks/bench_fidelity.py
--fit-overheads`` prints the fit; ``docs/calibration.md`` the rows and the held-out error). They describe
the engines' host paths at those versions (vLLM 0.12, SGLang 0.5, TensorRT-LLM 1.0) and carry over to other GPUs as
seconds; a faster host CPU would shorten them. ``deployment.engine_version`` selects a release's preset where
it differs: vLLM from 0.14 on (:data:`VLLM_ASYNC`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kinsim.workload.spec import vllm_schedules_async


@dataclass(frozen=True)
class EngineOverhead:
    """Host time per step not hidden behind the GPU: ``step_s`` seconds plus ``per_sequence_s`` seconds per
    sequence that gets a token; ``frontend_s``: seconds from a request's arrival at the server to its place in
    the engine's queue (the API server's HTTP handling, tokenization and hand-off), counted in its TTFT;
    ``source`` says where the figures come from."""

    step_s: float
    per_sequence_s: float
    source: str
    frontend_s: float = 0.0


ENGINE_OVERHEADS: dict[str, EngineOverhead] = {
    "vllm": EngineOverhead(0.834e-3, 52.48e-6, "fitted to 106 H100 rows of vLLM 0.12 deployments (Qwen3-32B, "
                           "Llama-3.1-70B) in aiconfigurator-core 0.12.0's silicon_sample.csv, clients of "
                           "kinsim.calibration.silicon.CLIENTS", frontend_s=6.8e-3),
    "sglang": EngineOverhead(0.425e-3, 20.71e-6, "fitted to 68 H100 rows of SGLang 0.5 deployments (Qwen3-32B) in "
                             "aiconfigurator-core 0.12.0's silicon_sample.csv, replayed in rounds",
                             frontend_s=120.2e-3),
    "trtllm": EngineOverhead(0.041e-3, 30.52e-6, "fitted to 383 H100 rows of TensorRT-LLM 1.0 deployments "
                             "(Qwen3-32B, Llama-3.1-8B, Qwen3-235B-A22B-FP8) in aiconfigurator-core 0.12.0's "
                             "silicon_sample.csv, scheduled as TensorRT-LLM does (no chunked prefill, no-evict "
                             "admission), clients of kinsim.calibration.silicon.CLIENTS", frontend_s=102.3e-3),
    "none": EngineOverhead(0.0, 0.0, "no serving engine: kernels only"),
}


#: vLLM from :data:`~kinsim.workload.spec.VLLM_ASYNC_FROM` on, whose engine core prepares step n + 1 (scheduling,
#: input metadata) while the GPU runs step n, so the fixed host time a synchronous step waits for is hidden
#: behind the kernels; the fit keeps the time per sequence (sampling bookkeeping, output processing, or what the
#: kernel model misses at large batches), which async scheduling does not remove. Fitted as the synchronous
#: preset is, to the H100 rows of vLLM 0.18 (gpt-oss-120b, MiniMax-M2.5; ``bench_fidelity.py
#: --fit-overheads``), every fifth row held out; the frontend, the engine's own API server's as for the
#: synchronous preset, fitted to the same rows' TTFTs (26.8 ms, against 6.8 ms on the rows of earlier releases:
#: it also holds prefill time kinsim misses on these two MoE models, whose shortfall grows with the prompt;
#: docs/calibration.md). A request that arrives during a step joins the batch a step later
#: (``deployment.schedule_ahead``), which the frontend time no longer stands for (31.0 ms before that).
VLLM_ASYNC = EngineOverhead(0.137e-3, 49.36e-6, "fitted to 60 H100 rows of vLLM 0.18 deployments (gpt-oss-120b, "
                            "MiniMax-M2.5) in aiconfigurator-core 0.12.0's silicon_sample.csv, clients of "
                            "kinsim.calibration.silicon.CLIENTS", frontend_s=26.8e-3)


def engine_overhead(engine: str, version: str | None = None) -> EngineOverhead:
    """The overhead preset of ``engine`` (a ``deployment.engine`` value) at release ``version``
    (``deployment.engine_version``; None: the preset of the release its rows ran, :data:`ENGINE_OVERHEADS`).
    Only vLLM's changes with the release: from :data:`~kinsim.workload.spec.VLLM_ASYNC_FROM` on it schedules
    asynchronously (:data:`VLLM_ASYNC`). The other engines' presets are each fitted to one release line (SGLang 0.5,
    TensorRT-LLM 1.0), and no H100 row of another release says how theirs differ."""
    if engine == "vllm" and vllm_schedules_async(version):
        return VLLM_ASYNC
    return ENGINE_OVERHEADS[engine]
