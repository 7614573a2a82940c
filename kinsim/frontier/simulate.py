"""Simulated cost of frontier points: each task (a model, an attention policy, and the lengths of the samples a
frontier point chose) becomes a kinsim workload, simulated on the hardware; its cost per problem is the mean
of its problems' GPU-seconds, and the matching shares of the run's energy and price.

**The workload of a task.** A Best-of-N workload (``requests.kind: best_of_n``) of the task's problems, each
with its N samples sharing its prompt (and the prompt's KV), the lengths listed exactly (``{dist: list,
values: [...]}``: prompt tokens problem by problem, output tokens problem by problem and sample by sample), so
that every request generates its sample's output tokens and no more (``max_output_tokens`` is the longest: a
cap that cuts nothing). Every problem arrives at time 0, an offline batch, as the Kinetics paper costs a
task, unless a template gives ``requests.arrival``.

**The deployment.** A workload template (``workload``: a workload YAML such as ``workloads/aime_bon32.yaml``,
or one with only some keys) gives ``deployment``, ``seed`` and, if it has one, ``requests.arrival``; its
model, attention and other request keys are replaced by the task's. Without a template, or where the
template's deployment sets neither ``tensor_parallel`` nor ``disaggregation``, each model gets the default
(:func:`default_tensor_parallel`): one replica (``data_parallel`` 1, or the template's) of the smallest
``tensor_parallel`` (1, 2, 4, ... up to the hardware's GPUs per node) at which kinsim finds room for a KV
cache (:func:`kinsim.engine.kv.kv_layout`, the check behind "does not fit") and that cache holds one whole
problem of the model's tasks: all its samples at their full length, the prompt's whole blocks shared once,
with vLLM's watermark to spare, so that a problem's samples can decode together as Best-of-N assumes. The
choice is made once per model over all its tasks in the call (every attention policy and N), so that a
model's points share one deployment: pass every task of a frontier in one call.

**Cost per problem.** A problem's GPU-seconds are its requests' ``gpu_s`` summed (each request's share of
the GPU time of the steps it took part in, :mod:`kinsim.engine.attribution`; over all problems they add up
to the replicas' busy GPU-seconds, and idle GPUs count nothing), stored with the run's metrics. ``gpu_s``:
their mean over the problems, weighted by :attr:`SimTask.weights` where given (a long chain of thought's
samples are problems of the simulation, weighted so that each scored problem counts alike). ``joules``: the
run's ``energy_j`` (every GPU of the deployment at idle power for the makespan, plus TDP minus idle while
its replica runs a step) times the task's share of the run's GPU-seconds; with equal weights, the energy
over the problems. ``usd``: the run's ``cost_usd`` (GPU price x GPUs x makespan) likewise, ``None`` when
the hardware file has no ``gpu.price``. Every request must finish: one that does
not (its KV does not fit the deployment's cache) is a :class:`SpecError` naming the model, attention and N.

**Cache and workers.** A task's resolved workload and hardware are keyed as a sweep point's are
(:func:`kinsim.sweep.store.content_key`) and kept in a sweep results file (``store``), so that a rerun, or a
frontier or sweep with the same inputs, simulates nothing again; the simulations run as a sweep's do
(:func:`kinsim.sweep.execute.run_points`), on local worker processes or a Dask cluster. Simulations are
deterministic and the costs are read back from the results file, so the same tasks give the same numbers,
to the bit, on any number of workers, fresh or cached.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from kinsim.engine.kv import kv_layout
from kinsim.engine.simulation import check_deployment
from kinsim.errors import KinsimError, SpecError
from kinsim.hardware.load import load_hardware
from kinsim.hardware.spec import HardwareSpec
from kinsim.model.load import expand_model_ref
from kinsim.schema import to_raw
from kinsim.sweep.execute import Point, run_points, simulate_point
from kinsim.sweep.store import ResultStore, content_key
from kinsim.workload.load import workload_from_raw
from kinsim.workload.spec import WorkloadSpec
from kinsim.yamlio import read_with_extends


@dataclass(frozen=True)
class SimTask:
    """One simulation: the workload one frontier point describes."""

    model: str                                   # preset name or absolute model YAML path
    attention: Mapping[str, Any]                 # a kinsim `attention:` mapping, e.g. {"policy": "dense"}
    prompts: tuple[int, ...]                     # prompt tokens of each problem
    outputs: tuple[tuple[int, ...], ...]         # output tokens of each sample of each problem (chosen, truncated)
    #: Each problem's weight in the task's mean cost (summing to 1); None: equal weights.
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class SimCost:
    """The simulated cost of one task, per problem."""

    gpu_s: float            # GPU-seconds per problem (task), mean over the problems
    joules: float | None    # per problem, None when the hardware file gives no power
    usd: float | None       # per problem, None when the hardware file gives no price
    deployment: str         # e.g. "tp2" : the deployment used, for the report


#: The sweep name frontier simulations are stored under in a results file.
STORE_NAME = "frontier"

#: Keys of a workload template that are kept (``requests`` only for its ``arrival``).
TEMPLATE_KEPT = ("deployment", "seed", "requests")


@dataclass(frozen=True)
class Template:
    """What a workload template gives every task: raw ``deployment`` keys, ``seed``, ``requests.arrival``."""

    deployment: dict[str, Any]
    seed: int | None
    arrival: Any
    base_dir: Path
    file: str | None

    @property
    def sets_tensor_parallel(self) -> bool:
        """Whether the template fixes the replicas' GPUs (then the default rule does not apply)."""
        return "tensor_parallel" in self.deployment or self.deployment.get("disaggregation") is not None


def simulate_costs(tasks: Sequence[SimTask], hw: str | Path | HardwareSpec, *, workload: str | Path | None = None,
                   workers: int = 1, dask: str | None = None, store: str | Path | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[SimCost]:
    """The simulated cost per problem of each task on the hardware ``hw`` (a file or a spec), in task order.

    Args:
        workload: a workload template giving the deployment (see the module docstring); ``None``: the default.
        workers: local worker processes; ``dask``: the address of a Dask scheduler (``tcp://host:port``)
            instead.
        store: a sweep results file (SQLite) that keeps every simulation for reuse; ``None``: a temporary
            one (identical tasks of one call are still simulated once).
        progress: called with (simulations done, simulations to run) as each ends; cached ones are not run.

    Raises :class:`SpecError` for bad input (naming the task's model, attention and N) and for a task any
    of whose requests did not finish."""
    if workers < 1:
        raise SpecError("must be at least 1", path="--workers", value=workers)
    hardware = hw if isinstance(hw, HardwareSpec) else load_hardware(hw)
    template = read_template(workload) if workload is not None else None
    specs = task_workloads(tasks, hardware, template)
    hardware_raw = to_raw(hardware)
    points: dict[str, Point] = {}
    keys = []
    for index, (task, spec) in enumerate(zip(tasks, specs)):
        inputs = {"workload": to_raw(spec), "hardware": hardware_raw}
        key = content_key(inputs)  # the key a sweep point with these resolved inputs has
        keys.append(key)
        if key not in points:
            values = {"model": spec.model.name, "attention": dict(task.attention), "problems": len(task.prompts),
                      "samples": len(task.outputs[0])}
            points[key] = Point(index, values, {}, key, inputs)
    with _results(store) as results:
        run_points(list(points.values()), results, STORE_NAME, simulate_point,
                   lambda point: (specs[point.index], hardware, {}, problem_gpu_seconds), workers, dask, progress)
        stored = {key: results.get(key) for key in points}
    return [task_cost(task, spec, stored[key]) for task, spec, key in zip(tasks, specs, keys)]


# ------------------------------------------------------------------------------------- inputs


def read_template(path: str | Path) -> Template:
    """The keys a workload template gives every task (:class:`SpecError` naming the file on a bad one)."""
    path = Path(path)
    file = str(path)
    raw = read_with_extends(path)
    known = {f.name for f in fields(WorkloadSpec)}
    for key in raw:
        if key not in known:
            raise SpecError("not a key of a workload file", path=str(key), file=file,
                            hint="a template's deployment, seed and requests.arrival are used; see "
                                 "docs/file-formats.md")
    deployment = raw.get("deployment", {})
    if not isinstance(deployment, Mapping):
        raise SpecError("expected a mapping", path="deployment", value=deployment, file=file)
    requests = raw.get("requests")
    if requests is not None and not isinstance(requests, Mapping):
        raise SpecError("expected a mapping of keys to values", path="requests", value=requests, file=file,
                        hint="a template's requests.arrival is used (the task gives the rest)")
    arrival = requests.get("arrival") if isinstance(requests, Mapping) else None
    return Template(dict(deployment), raw.get("seed"), arrival, path.parent, file)


def task_workloads(tasks: Sequence[SimTask], hardware: HardwareSpec, template: Template | None) -> list[WorkloadSpec]:
    """The workload of each task, with its model's deployment (the template's, or the default)."""
    base = dict(template.deployment) if template is not None else {}
    models: dict[str, Any] = {}
    specs = []
    for task in tasks:
        _check_shape(task)
        try:
            if task.model not in models:
                models[task.model] = _model_raw(task.model)
            specs.append(_workload(task, models[task.model], base, template))
        except SpecError as error:
            raise _in_task(error, task) from None
    if template is not None and template.sets_tensor_parallel:
        return specs
    by_model: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        by_model.setdefault(task.model, []).append(index)
    for members in by_model.values():
        tp = default_tensor_parallel([specs[i] for i in members], hardware)
        for i in members:
            specs[i] = _with_tensor_parallel(specs[i], tp)
    return specs


def _check_shape(task: SimTask) -> None:
    """Problems with prompts, and the same number (N >= 1) of samples each."""
    if not task.prompts or len(task.outputs) != len(task.prompts):
        raise _in_task(SpecError(f"needs one list of outputs per problem ({len(task.prompts)} prompts, "
                                 f"{len(task.outputs)} lists of outputs) and at least one problem"), task)
    counts = sorted({len(samples) for samples in task.outputs})
    if counts[0] < 1 or len(counts) > 1:
        raise _in_task(SpecError("every problem needs the same number (N >= 1) of samples (the first N of each)",
                                 value=counts), task)


def _model_raw(ref: str) -> dict[str, Any]:
    """The full raw model mapping of a preset name, a Hugging Face config (``.json`` or a folder holding one)
    or a model YAML file (the keys ``model:`` takes: every key, or ``preset:`` with keys changed)."""
    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml"):
        return expand_model_ref(read_with_extends(path), base_dir=path.parent, file=ref)
    return expand_model_ref(ref, base_dir=Path("."))


def _workload(task: SimTask, model: dict[str, Any], deployment: dict[str, Any],
              template: Template | None) -> WorkloadSpec:
    """The workload of ``task`` (see the module docstring), validated."""
    samples = len(task.outputs[0])
    outputs = [int(tokens) for problem in task.outputs for tokens in problem]
    arrival = template.arrival if template is not None and template.arrival is not None else \
        {"process": "all_at_once"}
    policy = task.attention.get("policy", "dense") if isinstance(task.attention, Mapping) else task.attention
    raw = {
        "name": f"frontier {model.get('name')} {policy} N={samples}",
        "model": model,
        "deployment": deployment,
        "attention": dict(task.attention) if isinstance(task.attention, Mapping) else task.attention,
        "requests": {
            "kind": "best_of_n", "problems": len(task.prompts), "samples": samples,
            "prompt_tokens": {"dist": "list", "values": [int(tokens) for tokens in task.prompts]},
            "output_tokens": {"dist": "list", "values": outputs},
            "max_output_tokens": max(outputs),
            "arrival": arrival,
        },
    }
    if template is not None and template.seed is not None:
        raw["seed"] = template.seed
    base_dir = template.base_dir if template is not None else Path(".")
    return workload_from_raw(raw, base_dir=base_dir, file=template.file if template is not None else None)


def _with_tensor_parallel(spec: WorkloadSpec, tp: int) -> WorkloadSpec:
    return spec if spec.deployment.tensor_parallel == tp else spec.with_overrides({"deployment.tensor_parallel": tp})


# ------------------------------------------------------------------------------------- deployment


def default_tensor_parallel(workloads: Sequence[WorkloadSpec], hardware: HardwareSpec) -> int:
    """The smallest power of two, up to the hardware's GPUs per node, at which every workload (one model's
    tasks) passes kinsim's deployment checks, has room for a KV cache, and that cache holds one whole
    problem (:func:`problem_fits`). :class:`SpecError` naming the model when none does."""
    reasons = []
    tp = 1
    while tp <= hardware.node.gpus:
        try:
            short = next((w for w in workloads if not problem_fits(_with_tensor_parallel(w, tp), hardware)), None)
        except SpecError as error:  # heads that tp does not divide, too many GPUs, no room for KV
            reasons.append(f"tensor_parallel {tp}: {error.rule}")
        else:
            if short is None:
                return tp
            reasons.append(f"tensor_parallel {tp}: the KV cache does not hold one problem's samples")
        tp *= 2
    model = workloads[0].model.name
    raise SpecError(f"does not fit one node of {hardware.name} ({hardware.node.gpus} GPUs) with room for one "
                    f"problem's KV ({reasons[-1]})", path="model", value=model,
                    hint="give a workload template (--workload) with a deployment, hardware with more GPU memory, "
                         "or fewer samples")


def problem_fits(workload: WorkloadSpec, hardware: HardwareSpec) -> bool:
    """Whether one replica of ``workload``'s deployment holds the KV of its largest problem: the prompt's whole
    blocks once, and every sample's own blocks at its full length (prompt plus output tokens), with the
    admission watermark to spare. :class:`SpecError` when the deployment does not fit the hardware at all
    (kinsim's own checks: :func:`~kinsim.engine.simulation.check_deployment` and
    :func:`~kinsim.engine.kv.kv_layout`)."""
    check_deployment(workload, hardware)
    layout = kv_layout(workload.model, workload.deployment, workload.attention, hardware)
    source = workload.requests
    prompts = np.asarray(source.prompt_tokens.values, dtype=np.int64)
    outputs = np.asarray(source.output_tokens.values, dtype=np.int64).reshape(len(prompts), source.samples)
    need = 0
    for prompt, samples in zip(prompts.tolist(), outputs):
        shared = layout.shared_tokens(prompt)
        blocks = shared // layout.block_size + int(np.sum(layout.private_blocks(prompt + samples, shared)))
        need = max(need, blocks)
    return need + layout.watermark_blocks <= layout.total_blocks


# ------------------------------------------------------------------------------------- costs


def task_cost(task: SimTask, workload: WorkloadSpec, stored: dict[str, Any] | None) -> SimCost:
    """A task's cost per problem from its stored run; :class:`SpecError` if it failed or left requests
    unfinished."""
    if stored is None:  # run_points returns only when every point is stored
        raise KinsimError(f"no stored result for {_task_words(task)}")
    if stored["status"] != "ok":
        raise _in_task(SpecError(f"cannot be simulated: {stored['reason']}"), task)
    metrics = stored["metrics"]
    requests = metrics["requests"]
    if requests["unfinished"]:
        reason, count = next(iter(requests["unfinished_reasons"].items()), ("", 0))
        raise _in_task(SpecError(f"{requests['unfinished']} of {requests['total']} requests did not finish on "
                                 f"{deployment_words(workload)} of {metrics['hardware']} ({count}: {reason})",
                                 hint="give a workload template (--workload) whose deployment holds them (more "
                                      "tensor_parallel, fp8 KV)"), task)
    by_problem = np.asarray(metrics[PROBLEM_GPU_S], dtype=float)
    weights = (np.full(len(task.prompts), 1.0 / len(task.prompts)) if task.weights is None
               else np.asarray(task.weights, dtype=float))
    gpu_s = float(np.dot(weights, by_problem))
    share = gpu_s / float(by_problem.sum()) if by_problem.sum() > 0 else 0.0  # of the run's GPU time
    energy, price = metrics.get("energy_j"), metrics.get("cost_usd")
    return SimCost(gpu_s=gpu_s, joules=None if energy is None else energy * share,
                   usd=None if price is None else price * share, deployment=deployment_words(workload))


#: The stored metric with each problem's GPU-seconds (its requests' ``gpu_s`` summed), in problem order.
PROBLEM_GPU_S = "frontier_problem_gpu_s"


def problem_gpu_seconds(result) -> dict[str, Any]:
    """Each problem's GPU-seconds in a run (its requests' shares of the GPU time, summed; they add up to the
    replicas' busy GPU-seconds): stored beside the run's metrics (:func:`kinsim.sweep.execute.simulate_point`'s
    ``extra``)."""
    outcomes = result.records.sequences
    table = outcomes.table
    return {PROBLEM_GPU_S: np.bincount(table.group, weights=outcomes.gpu_s, minlength=table.groups).tolist()}


def deployment_words(workload: WorkloadSpec) -> str:
    """The deployment in a few words: ``tp2``, ``tp1 dp8``, ``prefill 2 x tp1 + decode 6 x tp1``."""
    deployment = workload.deployment
    if deployment.disaggregation is None:
        dp = deployment.data_parallel
        return f"tp{deployment.tensor_parallel}" + (f" dp{dp}" if dp > 1 else "")
    roles = zip(("prefill", "decode"), workload.deployment_tensor_parallels())
    return " + ".join(f"{role} {getattr(deployment.disaggregation, role).replicas} x tp{tp}" for role, (tp, _) in roles)


def _task_words(task: SimTask) -> str:
    """A task named for a message: model, attention, N."""
    attention = dict(task.attention) if isinstance(task.attention, Mapping) else {"policy": task.attention}
    policy = attention.pop("policy", "dense")
    details = ", ".join(f"{key} {value}" for key, value in sorted(attention.items(), key=lambda item: str(item[0])))
    n = len(task.outputs[0]) if task.outputs else 0
    return f"{Path(task.model).name}, attention {policy}{f' ({details})' if details else ''}, N={n}"


def _in_task(error: SpecError, task: SimTask) -> SpecError:
    """``error`` as seen from the task: its path starts with the task's model, attention and N."""
    path = f"[{_task_words(task)}]" + (f" {error.path}" if error.path else "")
    return SpecError(error.rule, path=path, value=error.value, file=error.file, hint=error.hint)


@contextmanager
def _results(store: str | Path | None) -> Iterator[ResultStore]:
    """The results file at ``store``, or a temporary one; closed (a temporary one removed) on leaving."""
    with tempfile.TemporaryDirectory(prefix="kinsim-frontier-") as folder:
        results = ResultStore(Path(folder) / "frontier.sqlite" if store is None else store, option="--db")
        try:
            yield results
        finally:
            results.close()
