"""End-to-end silicon measurements: serving benchmarks of real deployments, replayed as kinsim workloads.

aiconfigurator-core's ``systems/silicon_sample.csv`` holds measured TTFT and TPOT of vLLM, SGLang and
TensorRT-LLM deployments at fixed input and output lengths and a fixed client concurrency. A row kinsim
can express (a model it has a preset for, no attention data parallelism nor pipeline parallelism, bf16 or
fp8 weights; an MoE model's ``moe_ep_size`` becomes ``deployment.expert_parallel``) becomes a
serving-benchmark workload:

* ``concurrency`` clients in a closed loop, each sending its next request when the previous one ends
  (``vllm bench serve --max-concurrency``, genai-perf's and aiperf's concurrency mode), or in rounds: the
  next ``concurrency`` requests when the whole round has ended; how many requests each client sends and
  whether the first round is a warm-up left out of the figures is the backend's :class:`BenchmarkClient`
  (:data:`CLIENTS`; a disaggregated row's clients never wait for a round, :func:`client_of`);
* every prompt ``isl`` tokens and every answer ``osl`` tokens (``ignore_eos``), or answers drawn about
  ``osl`` (``BenchmarkClient.output_spread``). The first round's clients start in step and prefill their
  prompts together. A real benchmark's clients then drift out of step (every request's latency jitters by
  a little); kinsim's would not, as far as its token budget allows: requests admitted together also end
  together when their answers are equally long. So a backend's client may ``stagger`` them after their
  first request (``requests.arrival.stagger``: client k waits k / concurrency of its first request's time)
  and draw answers of unequal length, which keeps groups from forming again;
* weights in fp8 where the row's GEMMs are quantized (``gemm_quant_mode`` ``fp8``, or ``fp8_block``:
  FP8 weights with a scale per 128 x 128 block, the same bytes and FP8 tensor-core rate), in ``nvfp4``
  where they are NVFP4, bf16 otherwise; the routed experts in the type of ``moe_quant_mode`` where it is
  another quantized one (NVFP4 experts under fp8 or bf16 attention, as NVIDIA's NVFP4 checkpoints of MoE
  models ship), and as the checkpoint ships where the CSV labels its own format (:data:`NATIVE_QUANT`:
  gpt-oss's MXFP4 experts, ``nvfp4`` in the CSV, with bf16 attention and a bf16 KV cache, as vLLM
  serves it by default); the KV cache in fp8 where the weights are, bf16 otherwise (the rows do not say;
  aiconfigurator-core's own reading of a checkpoint gives fp8, fp8_block and nvfp4 models an fp8 KV
  cache and fp8 attention, ``sdk/models/helpers.py``);
* the engine's release (``backend_version``) as ``deployment.engine_version`` where the CSV gives one, so
  that each release takes its own overhead preset (:func:`kinsim.cost.engine_overhead.engine_overhead`);
* the token budget and seats the row's server takes by default on the GPU it is simulated on
  (:func:`server_defaults`: vLLM's and SGLang's follow the GPU's memory).

**Aggregated rows** (``mode`` ``agg``): ``tp_size`` GPUs serve both phases; the clients are the benchmark's
concurrency where the row records it (the id's ``c<N>``, the source's ``silicon_concurrency=N``), else
``batch_size``. The two agree on every H100 row but five: TensorRT-LLM's gpt-oss-120b rows record ``tp_size``
times ``batch_size`` clients (``c192`` at a batch of 48 on TP4, ``c320`` at 160 on TP2), as if
``batch_size`` were one attention rank's share, though their ``attention_dp_size`` is empty. A replay runs
the clients the benchmark ran (:func:`recorded_concurrency`).

**Disaggregated rows** (``mode`` ``disagg``, columns ``prefill_*`` and ``decode_*``): ``<role>_num_workers``
replicas of ``<role>_tp_size`` GPUs each, as ``deployment.disaggregation`` (prefill replicas on the first
GPUs, then decode; as many 8-GPU nodes as they need, :func:`nodes_needed`). ``<role>_batch_size`` is the
batch of one worker in aiconfigurator's model of the deployment (its ``cli_estimate`` prices a prefill
worker at ``prefill_batch_size`` prompts, 1 in every row, and a decode worker at ``decode_batch_size``
sequences), and aiconfigurator counts the deployment's concurrency as ``decode_batch_size x
decode_num_workers`` (x the decode attention data parallelism, 1 here); the rows whose source records the
benchmark's concurrency (``silicon_concurrency=`` in ``silicon_data_source``) match that product. So the
clients are ``decode_batch_size x decode_num_workers``, as for aggregated rows otherwise.

The figures compared are the means of TTFT and TPOT over the measured requests, as the benchmark
clients report them (:func:`client_figures`: a disaggregated request's first token reaches the client
from the decode worker, once its KV has moved).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kinsim.engine.memory_budget import GIB, VISIBLE_SHARE
from kinsim.releases import release_of
from kinsim.workload.spec import ENGINE_SCHEDULING, schedules_ahead

#: Model paths of the CSV that kinsim has presets for.
PRESETS = {
    "Qwen/Qwen3-32B": "Qwen3-32B",
    "Qwen/Qwen3-8B": "Qwen3-8B",
    "Qwen/Qwen3-14B": "Qwen3-14B",
    "Qwen/Qwen3-235B-A22B-FP8": "Qwen3-235B-A22B",  # the same architecture, FP8 weights (block scales)
    "meta-llama/Llama-3.1-8B-Instruct": "Llama-3.1-8B",
    "meta-llama/Llama-3.1-8B": "Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B": "Llama-3.1-70B",
    "meta-llama/Llama-3.1-70B-Instruct": "Llama-3.1-70B",
    "MiniMaxAI/MiniMax-M2.5": "MiniMax-M2.5",  # FP8 weights with 128 x 128 block scales, as the CSV's fp8 rows
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "openai/gpt-oss-20b": "gpt-oss-20b",
    "deepseek-ai/DeepSeek-V3": "DeepSeek-V3",
    "deepseek-ai/DeepSeek-R1": "DeepSeek-R1",
}

#: Presets whose checkpoint ships quantized in its own way, and the ``gemm_quant_mode`` the CSV gives its rows
#: that run it as shipped: gpt-oss's MXFP4 experts (the rest bf16, as the preset says) are labelled nvfp4.
NATIVE_QUANT = {"gpt-oss-120b": "nvfp4", "gpt-oss-20b": "nvfp4"}

@dataclass(frozen=True)
class BenchmarkClient:
    """How a row's benchmark client issued and counted requests, which the CSV does not record.

    ``requests_per_client``: requests each of the ``concurrency`` clients sends (count); ``rounds``: the
    clients send together and wait for the whole round (``arrival.rounds``) rather than each sending its
    next request as its previous one ends; ``warmup_round``: the first round is left out of the figures
    (``requests.warmup``; genai-perf, aiperf and ``vllm bench serve`` keep every request unless told);
    ``stagger``: the clients leave the first round evenly out of step (``arrival.stagger``);
    ``output_spread``: each answer's length is drawn uniformly from ``osl x (1 - spread)`` to ``osl x (1 +
    spread)`` tokens (mean ``osl``; ``vllm bench serve --random-range-ratio``, aiperf's and genai-perf's
    ``--output-tokens-stddev``), 0 for every answer ``osl`` tokens."""

    requests_per_client: int
    rounds: bool
    warmup_round: bool
    stagger: bool = False
    output_spread: float = 0.0

    def output_range(self, osl: int) -> tuple[int, int]:
        """(shortest, longest) answer of a row whose answers average ``osl`` tokens, in tokens."""
        low = max(1, round(osl * (1.0 - self.output_spread)))
        return low, max(low, round(osl * (1.0 + self.output_spread)))


#: The client of each backend's rows, chosen per backend on the H100 rows as the engine overheads are
#: (the grid and its errors are in docs/calibration.md): SGLang's rows match whole-batch rounds (TTFT
#: 18% MAPE, against 76-80% for clients that send as each request ends); vLLM's and TensorRT-LLM's match
#: a continuous closed loop whose first round counts and whose clients then run out of step, 8 requests
#: per client (with each backend's frontend time: TTFT 23.8% and 27.6%, against 48% and 34% with 10 and 5
#: per client in lockstep; TPOT 11.7% and 9.9%, against 11.4% and 9.3%; all over 787 rows), their answers
#: within 30% of ``osl`` (all 779 rows TTFT 22.28% -> 21.35%, TPOT 9.04% -> 9.03%).
CLIENTS: dict[str, BenchmarkClient] = {
    "sglang": BenchmarkClient(requests_per_client=3, rounds=True, warmup_round=False),
    "vllm": BenchmarkClient(requests_per_client=8, rounds=False, warmup_round=False, stagger=True,
                            output_spread=0.3),
    "trtllm": BenchmarkClient(requests_per_client=8, rounds=False, warmup_round=False, stagger=True,
                              output_spread=0.3),
}

#: The client of a backend :data:`CLIENTS` does not name.
DEFAULT_CLIENT = BenchmarkClient(requests_per_client=5, rounds=False, warmup_round=False)


def client_of(row: SiliconRow) -> BenchmarkClient:
    """The benchmark client of ``row``'s backend; a disaggregated row's never sends in rounds.

    The clients are a closed loop either way; whole rounds describe SGLang's aggregated rows, where every
    chunk of a round's prefill stalls every decode, so the round's requests end within a few steps of each
    other and send again together. A disaggregated deployment's decode workers are never stalled by a
    prefill: a round's requests reach them spread over the round's prefill and end as spread, so each
    client sends its next request as its previous one ends (the first round still together, and counted).
    On the H100's SGLang DeepSeek-R1 disaggregated rows (46, no other term fitted to them): TTFT 62.9% ->
    29.6% (bias +27% -> -15%), TPOT 28.3% -> 27.5%; with the clients staggered after their first request
    instead, 30.3% (bias -30%)."""
    client = CLIENTS.get(row.backend, DEFAULT_CLIENT)
    if row.disaggregated and client.rounds:
        return replace(client, rounds=False)
    return client


#: GEMM quantization modes of the CSV (``gemm_quant_mode``) and the weight dtype kinsim prices them with;
#: an empty cell is the checkpoint's own bf16, as is aiconfigurator-core's ``bfloat16`` mode. Its other FP8
#: modes differ from ``fp8`` only in how the scales are found (``fp8_static``: calibrated per-tensor scales;
#: ``fp8_ootb``: TensorRT-LLM's engine-build path), not in bytes or tensor-core rate. The weight-only modes
#: (``int4_wo``, ``nvfp4_wo``, ...) are not expressible: kinsim's 4-bit types compute at the fp4 rate where a
#: GPU has one.
WEIGHT_DTYPES = {"nan": "bf16", "None": "bf16", "bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8",
                 "fp8_static": "fp8", "fp8_ootb": "fp8", "nvfp4": "nvfp4"}

#: GPUs per node of the hardware the rows ran on (8-GPU HGX H100 nodes; ``hardware/h100.yaml``).
GPUS_PER_NODE = 8


#: A row id's record of the benchmark's concurrency: ``c<N>`` between underscores (``..._c64_tp8_...``).
_RECORDED_CONCURRENCY = re.compile(r"(?:^|_)c\d+(?:_|$)")


@dataclass(frozen=True)
class SiliconRole:
    """One role of a disaggregated deployment: ``workers`` replicas of ``tp`` GPUs, each batching at most
    ``batch_size`` sequences in aiconfigurator's model of it."""

    workers: int
    tp: int
    batch_size: int


@dataclass(frozen=True)
class SiliconRow:
    """One measured deployment. ``tp`` is the GPUs of one replica (of a prefill replica when disaggregated);
    ``prefill`` and ``decode`` are the roles of a disaggregated deployment, None when aggregated;
    ``expert_parallel`` is the GPUs of a replica that split an MoE model's experts (``moe_ep_size``);
    ``model`` is a preset's name, or the row's model path where ``model_config`` (the ``config.json`` it
    runs from) is set; ``stack`` what served the requests (:func:`stack_of`); ``declared_kv_dtype`` the KV
    cache's type the checkpoint's quantization metadata declares, or None (:func:`declared_kv_dtype`);
    ``recorded_clients`` the clients the benchmark ran where the row records them, or None
    (:func:`recorded_concurrency`)."""

    id: str
    backend: str
    model: str
    weight_dtype: str
    isl: int
    osl: int
    concurrency: int
    tp: int
    ttft_s: float
    tpot_s: float
    prefill: SiliconRole | None = None
    decode: SiliconRole | None = None
    expert_parallel: int = 1
    expert_weight_dtype: str | None = None
    stack: str = "engine"
    model_config: str | None = None
    version: str | None = None
    declared_kv_dtype: str | None = None
    recorded_clients: int | None = None

    @property
    def disaggregated(self) -> bool:
        """Whether prefill and decode ran on separate workers."""
        return self.decode is not None

    @property
    def concurrency_recorded(self) -> bool:
        """Whether the row records its benchmark's concurrency (:func:`recorded_concurrency`: the id's
        ``c<N>``, or its source's ``silicon_concurrency=N``). Without it ``batch_size`` is only
        aiconfigurator's model of the deployment's batch, not what the clients ran."""
        return self.recorded_clients is not None

    @property
    def gpus(self) -> int:
        """GPUs of the whole deployment (count)."""
        if self.prefill is None or self.decode is None:
            return self.tp
        return self.prefill.workers * self.prefill.tp + self.decode.workers * self.decode.tp


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


#: ``model_type`` values of a ``config.json`` whose architecture kinsim's reader models whole
#: (:mod:`kinsim.model.hf_config`); a model of another type (hybrid linear attention, sparse attention,
#: multimodal wrappers) is not expressible rather than approximated.
CONFIG_MODEL_TYPES = ("llama", "qwen3", "qwen3_moe", "mixtral", "deepseek_v3", "kimi_k2", "minimax_m2", "gpt_oss")


def shipped_config(model_path: str, configs: Path | None = None) -> tuple[Path | None, str]:
    """(the ``config.json`` aiconfigurator-core ships for ``model_path``, "") or (None, why not).
    ``configs``: its ``model_configs`` folder (default: the installed package's; none installed: no
    config). Model configurations, not measurements: every system's rows may use them."""
    if configs is None:
        spec = importlib.util.find_spec("aiconfigurator_core")
        if spec is None or not spec.submodule_search_locations:
            return None, "no preset for the model"
        configs = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    path = configs / f"{model_path.replace('/', '--')}_config.json"
    if not path.is_file():
        return None, "no preset for the model"
    try:
        model_type = str(json.loads(path.read_text(encoding="utf-8")).get("model_type"))
    except (OSError, ValueError, AttributeError):
        return None, f"unreadable model config {path.name}"
    if model_type not in CONFIG_MODEL_TYPES:
        return None, f"model type {model_type} (kinsim reads {', '.join(CONFIG_MODEL_TYPES)})"
    return path, ""


def declared_kv_dtype(config: Path | None) -> str | None:
    """The KV cache's type a checkpoint declares beside its ``config.json`` (``config``), or None where it
    declares none (a server left at its default then keeps the model's dtype): its Model Optimizer metadata
    (``<name>_hf_quant_config.json``, ``quantization.kv_cache_quant_algo``) or its ``quantization_config``
    (``kv_cache_quant_algo``, or compressed-tensors' ``kv_cache_scheme``). ``fp8`` for an 8-bit float cache;
    another declared type by its own name in lower case (``nvfp4``, ``int8``), which kinsim does not price
    (:func:`expressible` refuses the row). Unreadable metadata declares nothing."""
    if config is None:
        return None
    declared: list[Any] = []
    quant_file = config.with_name(config.name.replace("_config.json", "_hf_quant_config.json"))
    for path, key in ((quant_file, "quantization"), (config, "quantization_config")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError):
            continue
        section = raw.get(key) if isinstance(raw, dict) else None
        if isinstance(section, dict):
            declared += [section.get("kv_cache_quant_algo"), section.get("kv_cache_scheme")]
    for value in declared:
        if isinstance(value, dict):  # compressed-tensors: {"num_bits": 8, "type": "float", ...}
            value = f"{value.get('type')}{value.get('num_bits')}"
            value = "fp8" if value == "float8" else value
        if isinstance(value, str) and value:
            name = value.lower()
            return "fp8" if name.startswith("fp8") else name
    return None


def expressible(row: dict[str, Any], configs: Path | None = None) -> tuple[SiliconRow | None, str]:
    """(the row as a :class:`SiliconRow`, "") when kinsim can express it, else (None, why not). A model
    without a preset runs from the ``config.json`` aiconfigurator-core ships for it where kinsim reads its
    architecture (:func:`shipped_config`; ``configs``: that folder, default the installed package's)."""
    mode = row.get("mode")
    if mode not in ("agg", "disagg"):
        return None, f"serving mode {mode}"
    if str(row.get("backend")) not in ENGINE_SCHEDULING:
        return None, f"backend {row.get('backend')} (kinsim's engines: {', '.join(ENGINE_SCHEDULING)})"
    model = PRESETS.get(str(row.get("model_path")))
    config = None
    if model is None:
        config, why = shipped_config(str(row.get("model_path")), configs)
        if config is None:
            return None, why
        model = str(row.get("model_path"))
    declared_kv = declared_kv_dtype(config)
    if declared_kv not in (None, "fp8"):
        return None, f"KV cache quantization {declared_kv}"
    prefixes = ("",) if mode == "agg" else ("prefill_", "decode_")
    unsupported = _unsupported_parallelism(row, prefixes)
    if unsupported:
        return None, unsupported
    quant = str(row.get("gemm_quant_mode"))
    native = quant == NATIVE_QUANT.get(model)
    if quant not in WEIGHT_DTYPES and not native:
        return None, f"GEMM quantization {quant}"
    moe_quant = str(row.get("moe_quant_mode", "nan"))
    if not native and moe_quant not in WEIGHT_DTYPES:
        return None, f"MoE quantization {moe_quant}"
    experts = None  # the experts' type where it differs from the GEMMs'
    if not native and WEIGHT_DTYPES[moe_quant] not in ("bf16", WEIGHT_DTYPES[quant]):
        experts = WEIGHT_DTYPES[moe_quant]
    sizes = ("batch_size", "tp_size") if mode == "agg" else tuple(
        prefix + key for prefix in prefixes for key in ("batch_size", "num_workers", "tp_size"))
    numbers = {k: _number(row.get(k)) for k in ("isl", "osl", *sizes, "silicon_ttft_ms", "silicon_tpot_ms")}
    if mode == "disagg":
        numbers.update(_one_worker_each(row, numbers))
    if any(v is None or v <= 0 for v in numbers.values()):
        if row.get(NO_GUESS):
            return None, "worker counts not stated (its backend's restated runs have other roles)"
        return None, "missing figures"
    recorded = recorded_concurrency(row)
    common = dict(id=str(row.get("id")), backend=str(row.get("backend")), model=model, stack=stack_of(row),
                  recorded_clients=recorded,
                  version=version_of(row),
                  model_config=None if config is None else str(config), declared_kv_dtype=declared_kv,
                  weight_dtype="bf16" if native else WEIGHT_DTYPES[quant], isl=int(numbers["isl"]),
                  osl=int(numbers["osl"]),
                  expert_weight_dtype=experts,
                  ttft_s=numbers["silicon_ttft_ms"] * 1e-3, tpot_s=numbers["silicon_tpot_ms"] * 1e-3)
    if mode == "agg":
        ep = int(_number(row.get("moe_ep_size")) or 1)
        clients = recorded or int(numbers["batch_size"])
        return SiliconRow(concurrency=clients, tp=int(numbers["tp_size"]), expert_parallel=ep, **common), ""
    prefill, decode = (SiliconRole(workers=int(numbers[p + "num_workers"]), tp=int(numbers[p + "tp_size"]),
                                   batch_size=int(numbers[p + "batch_size"])) for p in prefixes)
    ep = int(_number(row.get("decode_moe_ep_size")) or 1)  # the prefill role's too (_unsupported_parallelism)
    return SiliconRow(concurrency=decode.batch_size * decode.workers, tp=prefill.tp, prefill=prefill,
                      decode=decode, expert_parallel=ep, **common), ""


def recorded_concurrency(row: dict[str, Any]) -> int | None:
    """The clients the row's benchmark ran (count): the ``c<N>`` of its id, else the ``silicon_concurrency=N``
    of its ``silicon_data_source``; None where it records neither (aiconfigurator's ``batch_size`` is then
    all the row says). The two are the same on every H100 row that has both."""
    match = _RECORDED_CONCURRENCY.search(str(row.get("id")))
    if match is not None:
        return int(match.group(0).strip("_c"))
    match = re.search(r"silicon_concurrency=(\d+)", str(row.get("silicon_data_source", "")))
    return int(match.group(1)) if match is not None else None


#: A role's columns that a disaggregated row may leave empty where another row states them.
ROLE_COLUMNS = tuple(f"{role}_{key}" for role in ("prefill", "decode") for key in (
    "batch_size", "num_workers", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size"))
_MEASUREMENT = ("system", "backend", "isl", "osl", "silicon_ttft_ms", "silicon_tpot_ms")


def with_stated_roles(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (raw CSV rows), where a disaggregated row without worker counts repeats the measurement (the
    same system, backend, lengths, TTFT and TPOT to the last digit) of a row that states them, with that
    row's role columns: the same run, described in full once. (TensorRT-LLM's DeepSeek-R1 rows
    ``..._tp16_ep16_...`` repeat the ``dsr1_..._cfg494`` rows, labelled DeepSeek-V3, the same architecture:
    three decode workers and attention data parallelism in prefill; without this they would be taken for one
    worker per role, :func:`_one_worker_each`.)"""
    def key(row: dict[str, Any]) -> tuple:
        return tuple(str(row.get(column)) for column in _MEASUREMENT)

    def stated(row: dict[str, Any]) -> bool:
        return row.get("mode") == "disagg" and _number(row.get("decode_num_workers")) is not None

    full = {key(row): row for row in rows if stated(row)}
    twins = {id(row): full.get(key(row)) for row in rows if row.get("mode") == "disagg" and not stated(row)}
    # a system and backend whose repeated runs state other roles than one worker each: guess none of its rows
    contradicted = {(row.get("system"), row.get("backend")) for row in rows
                    if twins.get(id(row)) is not None and not _one_worker_each_fits(twins[id(row)])}
    out = []
    for row in rows:
        if id(row) not in twins:
            out.append(row)
        elif twins[id(row)] is not None:
            out.append({**row, **{c: twins[id(row)].get(c) for c in ROLE_COLUMNS}})
        else:
            out.append({**row, NO_GUESS: (row.get("system"), row.get("backend")) in contradicted})
    return out


#: Set by :func:`with_stated_roles` on a row whose roles must not be guessed (:func:`_one_worker_each`).
NO_GUESS = "_kinsim_no_role_guess"


def _one_worker_each_fits(row: dict[str, Any]) -> bool:
    """Whether a row that states its roles has one worker of each."""
    return _number(row.get("prefill_num_workers")) == 1 and _number(row.get("decode_num_workers")) == 1


#: The serving stacks in front of the engine that the rows' sources name (:func:`stack_of`).
STACKS = ("dynamo", "engine")


def stack_of(row: dict[str, Any]) -> str:
    """What served the row's requests, from its ``silicon_data_source``: ``dynamo`` (NVIDIA Dynamo's frontend
    and router before the engine: a Dynamo runtime image, or aiconfigurator's gap-analysis data, whose
    rows that record an image all ran Dynamo's runtimes) or ``engine`` (the engine's own API server:
    ``vllm/vllm-openai``, ``lmsysorg/sglang``, or a source that names neither)."""
    source = str(row.get("silicon_data_source", ""))
    return "dynamo" if "ai-dynamo" in source or "aic-auto-gap-analysis" in source else "engine"


def version_of(row: dict[str, Any]) -> str | None:
    """The engine release that served the row (``backend_version``), or None where the CSV leaves it empty or
    writes something else (the replay then takes the engine's preset, :func:`kinsim.cost.engine_overhead.
    engine_overhead`; the H100 rows without one were measured in October to December 2025, before vLLM 0.14)."""
    version = str(row.get("backend_version") or "").strip()
    return version if release_of(version) is not None else None


#: The serving frontend's time per request (``deployment.frontend_s``, seconds) of each backend behind each
#: stack where the H100 rows fit it (``bench_fidelity.py`` prints the fits; docs/calibration.md): the rows of
#: one backend came through two stacks, whose frontends differ by about 50 ms (vLLM's own server against
#: Dynamo's). Other pairs take the engine's preset of the row's release (:mod:`kinsim.cost.engine_overhead`: vLLM's
#: is its own API server's, one per release line).
FRONTEND_S: dict[tuple[str, str], float] = {("vllm", "dynamo"): 50.8e-3}


def frontend_of(row: SiliconRow) -> float | None:
    """The frontend time the replay of ``row`` gives its requests (seconds), or None for the engine's
    preset."""
    return FRONTEND_S.get((row.backend, row.stack))


def _one_worker_each(row: dict[str, Any], numbers: dict[str, float | None]) -> dict[str, float]:
    """The worker counts and batches a disaggregated row leaves empty, where its benchmark's concurrency
    is recorded (``c<N>`` in its id, ``silicon_concurrency=N`` in its source): one prefill and one decode
    worker, the decode worker batching the ``N`` clients and the prefill worker one prompt, as
    aiconfigurator's other rows count them. SGLang's DeepSeek-R1 rows give only each role's TP (16: one
    worker per role fills two nodes); nothing is assumed for a row that gives any of the four or does not
    record its concurrency, and a row that repeats another's measurement takes that row's roles first
    (:func:`with_stated_roles`), which also marks the rows of a system and backend whose repeated runs
    state other roles (TensorRT-LLM's on the H100: three decode workers) so that none of them is guessed."""
    recorded = recorded_concurrency(row)
    if recorded is None or row.get(NO_GUESS):
        return {}
    concurrency = float(recorded)
    guesses = {"prefill_num_workers": 1.0, "prefill_batch_size": 1.0, "decode_num_workers": 1.0,
               "decode_batch_size": concurrency}
    if any(numbers.get(key) is not None for key in guesses):  # only rows that give none of them
        return {}
    return guesses


def _unsupported_parallelism(row: dict[str, Any], prefixes: tuple[str, ...]) -> str:
    """Why the row's parallelism is beyond kinsim (attention data parallelism or pipeline parallelism in
    a worker, of either role when disaggregated; MoE parallelism that does not cover a worker's GPUs;
    disaggregated roles with different expert parallelism, as they share kinsim's one
    ``deployment.expert_parallel``), or ""."""
    eps = set()
    for prefix in prefixes:
        for key in ("attention_dp_size", "pp_size"):
            value = _number(row.get(prefix + key))
            if value is not None and value > 1:
                return f"{prefix}{key} > 1"
        ep, moe_tp, tp = (_number(row.get(prefix + key)) for key in ("moe_ep_size", "moe_tp_size", "tp_size"))
        if ep is not None and ep > 1 and tp is not None and (moe_tp or 1) * ep != tp:
            return f"{prefix}moe_tp_size x {prefix}moe_ep_size != {prefix}tp_size"
        eps.add(int(ep or 1))
    if len(eps) > 1:
        return "prefill_moe_ep_size != decode_moe_ep_size"
    return ""


def nodes_needed(row: SiliconRow, gpus_per_node: int = GPUS_PER_NODE) -> int:
    """Nodes of ``gpus_per_node`` GPUs the row's deployment fills (count; ``hw.cluster.nodes``)."""
    return max(1, math.ceil(row.gpus / gpus_per_node))


#: Backends whose own server, started with its defaults, keeps the KV cache in the model's dtype whatever the
#: weights' quantization: vLLM's ``--kv-cache-dtype auto`` (``CacheConfig.cache_dtype``) stores the KV as the
#: activations are (bf16) unless the checkpoint declares a quantized KV cache, which none of the checkpoints its
#: rows name does (MiniMax's FP8 release; Meta's bf16 Llama quantized to fp8 when loaded).
AUTO_KV_BACKENDS = ("vllm",)


def kv_dtype_of(row: SiliconRow) -> str:
    """The KV cache's type of ``row``: the one its checkpoint declares (:func:`declared_kv_dtype`, as Model
    Optimizer's checkpoints do), which every server honours (vLLM's ``auto`` since vllm-project/vllm PR
    #29980, December 2025: earlier releases kept the model's dtype); else bf16 with bf16 weights; with fp8
    or nvfp4 weights (of the layers or of the experts), bf16 where the backend's own server ran with its
    defaults (stack ``engine``, :data:`AUTO_KV_BACKENDS`), else fp8, as aiconfigurator-core reads a quantized
    checkpoint (an fp8 KV cache and fp8 attention, ``sdk/models/helpers.py``): TensorRT-LLM runs FP8
    checkpoints of NVIDIA's Model Optimizer, whose FP8 recipe quantizes the KV cache too
    (``kv_cache_quant_algo: FP8``), and the deployments aiconfigurator generated for its gap analysis (stack
    ``dynamo``) take its reading.

    The KV cache's type decides its capacity, so where requests start to queue as the clients grow, and
    decode attention's bytes; the H100 rows tell the two apart where a bf16 cache fills and an fp8 one does
    not. vLLM's own server with fp8 weights (Llama-3.1-70B, MiniMax-M2.5: 60 rows) queued there (TP2
    Llama-3.1-70B, 64 clients of 1,024 + 8,192 tokens: TTFT -98% with an fp8 cache, +35% with bf16;
    MiniMax-M2.5 TP4, 32 clients of 8,192 + 1,024: -79%, +90%). SGLang's DeepSeek-R1 rows, from the same
    harness, did not: 64 clients of 8,192 + 1,024 tokens waited 4.4 s, which an fp8 cache gives (3.7 s) and
    a bf16 one does not (13.8 s); SGLang's default is the model's dtype too, so that deployment evidently
    set fp8, and SGLang keeps aiconfigurator's reading. TensorRT-LLM's Qwen3-32B fp8 rows: TTFT 21% with an
    fp8 cache, 36% with bf16 (docs/calibration.md)."""
    if row.declared_kv_dtype is not None:  # every server honours what the checkpoint declares
        return row.declared_kv_dtype
    quantized = ("fp8", "nvfp4")
    if row.weight_dtype not in quantized and row.expert_weight_dtype not in quantized:
        return "bf16"
    if row.stack == "engine" and row.backend in AUTO_KV_BACKENDS:
        return "bf16"
    return "fp8"


def workload_of(row: SiliconRow, engine: str | None = None, gpu: Any = None) -> dict[str, Any]:
    """The serving-benchmark workload of ``row`` (a raw mapping, validated by ``workload_from_dict``), its
    clients those of :func:`client_of`, its server's defaults those of ``gpu`` (the hardware's
    :class:`~kinsim.hardware.spec.GPUSpec`; None: the H100 of this project's rows, :func:`server_defaults`)."""
    client = client_of(row)
    low, high = client.output_range(row.osl)
    output = row.osl if low == high else {"dist": "uniform", "low": low, "high": high}
    return {
        "name": row.id[:80] or "silicon",
        "model": _model_of(row),
        "deployment": _deployment(row, engine or row.backend, gpu),
        "attention": {"policy": "dense"},
        "requests": {"kind": "long_cot", "problems": client.requests_per_client * row.concurrency,
                     "prompt_tokens": row.isl, "output_tokens": output, "max_output_tokens": high,
                     "arrival": {"process": "closed_loop", "concurrency": row.concurrency,
                                 "rounds": client.rounds, "stagger": client.stagger},
                     "warmup": row.concurrency if client.warmup_round else 0},
        "seed": 0,
    }


def _model_of(row: SiliconRow) -> dict[str, Any]:
    """``model`` of ``row``: its preset with the row's weight and KV types, and its experts' type where the
    row's MoE quantization differs from its GEMMs' (``moe_quant_mode``)."""
    source = {"preset": row.model} if row.model_config is None else {"config": row.model_config}
    model: dict[str, Any] = {**source, "weight_dtype": row.weight_dtype, "kv_dtype": kv_dtype_of(row)}
    if row.expert_weight_dtype is not None:
        from kinsim.model.hf_config import read_hf_config
        from kinsim.model.presets import preset_raw

        raw = preset_raw(row.model) if row.model_config is None else read_hf_config(row.model_config)
        model["moe"] = {**raw["moe"], "expert_weight_dtype": row.expert_weight_dtype}
    return model


#: The GPU the rows of this project's own system ran on, for :func:`server_defaults` where no GPU is given:
#: an H100 SXM (80 GiB, not an A100).
OWN_GPU = ("NVIDIA H100 SXM5 80GB", 80 * GIB)


def server_defaults(backend: str, gpu: Any = None) -> tuple[int, int]:
    """(tokens one step may hold, sequences one step may hold) of a ``backend`` server started with its
    defaults on ``gpu`` (a :class:`~kinsim.hardware.spec.GPUSpec`: its ``name`` and ``memory.capacity``;
    None: :data:`OWN_GPU`), as ``deployment.max_num_batched_tokens`` and ``deployment.max_num_seqs``.

    * ``vllm serve`` (its API server's usage context, ``EngineArgs.get_batch_defaults`` in
      ``vllm/engine/arg_utils.py``): 8,192 tokens and 1,024 sequences on a GPU of 70 GiB or more that is
      not an A100 (by its name: vLLM measured the larger budget slower on A100s, PR #17885), 2,048 and
      256 on any other (an A100, a GPU of 48 or 24 GB).
    * SGLang (``ServerArgs`` of the 0.5 releases, ``chunked_prefill_size`` by the GPU's memory): 2,048
      tokens below 35 GiB, 4,096 below 60, 8,192 below 160 (the H100's and A100's 80 GiB), 16,384 from 160
      GiB (MI300X); its cap on running requests follows its KV pool, so the sequences are kinsim's default.
    * TensorRT-LLM (the PyTorch backend's ``max_num_tokens`` and ``max_batch_size``): 8,192 and 2,048 on
      every GPU.

    Both servers compare the memory CUDA exposes (:data:`~kinsim.engine.memory_budget.VISIBLE_SHARE` of the
    capacity). The sequences bound the batch, and vLLM's memory profile samples that many
    (:mod:`kinsim.engine.memory_budget`); the tokens are the budget chunked prefill fills."""
    name, capacity = OWN_GPU if gpu is None else (gpu.name, gpu.memory.capacity)
    memory = capacity * VISIBLE_SHARE
    if backend == "vllm":
        return (8192, 1024) if memory >= 70 * GIB and "a100" not in name.lower() else (2048, 256)
    if backend == "sglang":
        tiers = ((35, 2048), (60, 4096), (160, 8192))
        return next((tokens for below, tokens in tiers if memory < below * GIB), 16384), 256
    if backend == "trtllm":
        return 8192, 2048
    return 8192, 256


def _deployment(row: SiliconRow, engine: str, gpu: Any = None) -> dict[str, Any]:
    """``deployment`` of ``row``: one replica of ``row.tp`` GPUs, or the row's prefill and decode roles
    (requests placed on the least-loaded replica of each role; a decode replica seats its
    ``decode_batch_size`` sequences, at least the server's default). Its token budget and seats are those
    the row's backend takes by default on ``gpu`` (:func:`server_defaults`; the seats at least the
    clients). It schedules as the row's backend does
    (:data:`~kinsim.workload.spec.ENGINE_SCHEDULING`, and ahead of the GPU where that release does:
    :func:`~kinsim.workload.spec.schedules_ahead`) whatever ``engine`` prices its host time, so that the
    engine overheads are fitted with ``engine: none`` on the backend's own batches. Its requests spend the
    frontend time of the row's backend behind the row's serving stack (:func:`frontend_of`). The KV cache is
    what ``engine`` leaves (:mod:`kinsim.engine.memory_budget`): with ``engine: none`` (the overheads' fit),
    vLLM's budget, which differs from TensorRT-LLM's and SGLang's only on rows whose clients outgrow it."""
    chunked, admission = ENGINE_SCHEDULING[row.backend]
    tokens, seats = server_defaults(row.backend, gpu)
    common = {"data_parallel": 1, "max_num_batched_tokens": tokens, "engine": engine, "chunked_prefill": chunked,
              "admission": admission, "schedule_ahead": schedules_ahead(row.backend, row.version)}
    frontend = frontend_of(row)
    if frontend is not None and engine == row.backend:  # the stack's frontend; none with engine: none
        common["frontend_s"] = f"{frontend!r} s"
    if row.version is not None and engine == row.backend:  # the release's overhead preset
        common["engine_version"] = row.version
    if row.prefill is None or row.decode is None:
        return {**common, "tensor_parallel": row.tp, "expert_parallel": row.expert_parallel,
                "max_num_seqs": max(seats, row.concurrency)}
    return {**common, "tensor_parallel": row.prefill.tp, "expert_parallel": row.expert_parallel,
            "max_num_seqs": max(seats, row.decode.batch_size),
            "router": "least_loaded",
            "disaggregation": {role: {"replicas": spec.workers, "tensor_parallel": spec.tp}
                               for role, spec in (("prefill", row.prefill), ("decode", row.decode))}}


def client_figures(result: Any, row: SiliconRow) -> tuple[float, float]:
    """(TTFT, TPOT) means in seconds as the row's benchmark client saw them, from a run's ``result``
    (anything indexed by kinsim's dotted metric keys).

    Aggregated: kinsim's means. Disaggregated: the client gets its first token from the decode worker,
    once the KV has moved, so TTFT adds the mean wait for a decode seat and for the KV
    (``disaggregation.decode_queue_s`` and ``.transfer_stall_s``) to kinsim's TTFT (which ends at the
    prefill replica's first token), and TPOT, over the ``osl - 1`` gaps after the first token, loses that
    wait from its first gap. Those two means are over every request that moved (kinsim keeps them per
    transfer, not per request), where TTFT and TPOT leave out a warm-up round if the client has one."""
    ttft, tpot = result["latency.request.ttft.mean"], result["latency.request.tpot.mean"]
    if not row.disaggregated:
        return ttft, tpot
    handoff = sum(result[f"disaggregation.{key}.mean"] or 0.0 for key in ("decode_queue_s", "transfer_stall_s"))
    return ttft + handoff, tpot - handoff / max(1, row.osl - 1)


def fit_frontend_s(simulated_s, measured_s, current_s: float) -> float:
    """The serving frontend's time per request (``EngineOverhead.frontend_s``, seconds) that minimises the
    mean absolute relative TTFT error of rows simulated with ``current_s``, reading each row's TTFT as
    additive in it (it delays the request's entry into the engine; the step times hardly move): the
    minimiser of sum |simulated - current + f - measured| / measured is the median of measured - simulated +
    current weighted by 1 / measured (the lower one on a tie), at least 0."""
    import numpy as np

    simulated, measured = np.asarray(simulated_s, dtype=float), np.asarray(measured_s, dtype=float)
    shift = measured - simulated + current_s
    order = np.argsort(shift, kind="stable")
    weights = (1.0 / measured)[order]
    cumulative = np.cumsum(weights)
    index = int(np.searchsorted(cumulative, 0.5 * cumulative[-1]))
    return max(0.0, float(shift[order][index]))


def least_absolute_deviations(a, b):
    """The x >= 0 minimising sum |b - a x| (``a``: rows x columns, ``b``: rows), as a linear programme: x
    and a bound u_i >= |b_i - a_i x| per row, minimising sum u. With each row scaled by 1 / measured it
    minimises the mean absolute relative error, the figure the targets score (least squares minimises the
    squared one, which a few rows far off dominate). Needs scipy (the ``dev`` or ``calibrate`` extra)."""
    import numpy as np
    from scipy.optimize import linprog

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rows, cols = a.shape
    cost = np.concatenate([np.zeros(cols), np.ones(rows)])
    upper = np.block([[-a, -np.eye(rows)], [a, -np.eye(rows)]])  # b - a x <= u and a x - b <= u
    result = linprog(cost, A_ub=upper, b_ub=np.concatenate([-b, b]), bounds=[(0, None)] * (cols + rows),
                     method="highs")
    if not result.success:  # the programme is always feasible and bounded below; a solver failure is news
        raise RuntimeError(f"least absolute deviations: {result.message}")
    return result.x[:cols]


def decode_floor_s(row: SiliconRow, model: Any, hbm_bandwidth: float) -> float:
    """Seconds a decode step of the row's batch takes at least on one decode replica (``model``: the row's
    :class:`~kinsim.model.ModelSpec`; ``hbm_bandwidth``: one GPU's datasheet HBM bandwidth, B/s): its GPUs
    read the weights the step uses and every sequence's KV once, at the mean context (``isl + osl / 2``
    tokens), at full bandwidth. The batch is the concurrency (aggregated) or ``decode_batch_size``
    (disaggregated); the weights are all of them but the routed experts no token of the batch chooses
    (skewed routing, :mod:`kinsim.ops.lower`: fewer experts, so a lower floor).

    A step produces one token per sequence, so a measured TPOT below this floor says that the stated batch
    did not run (:func:`consistent`)."""
    from kinsim.dtypes import bytes_per_element
    from kinsim.ops.lower import experts_touched

    batch, gpus = (row.decode.batch_size, row.decode.tp) if row.decode is not None else (row.concurrency, row.tp)
    weights = model.weight_bytes
    if model.moe is not None:
        unread = model.moe.experts - experts_touched(model.moe, float(batch))
        weights -= unread * model.moe_layers * model.expert_params * bytes_per_element(model.expert_weight_dtype)
    kv = batch * ((row.isl + row.osl / 2) * model.kv_bytes_per_token + model.window_kv_bytes)
    return (weights + kv) / (gpus * hbm_bandwidth)


def consistent(row: SiliconRow, model: Any, hbm_bandwidth: float) -> bool:
    """Whether the row's measured TPOT is at least :func:`decode_floor_s` (else it did not run the batch it
    states, and no model of the stated deployment can match it)."""
    return row.tpot_s >= decode_floor_s(row, model, hbm_bandwidth)
