"""One row per (model, attention, strategy, N or budget): accuracy and cost per task, and the workload
each row describes for a simulation.

Strategies:

* ``best_of_n`` at N: accuracy the mean over problems of pass@N (:func:`~kinsim.frontier.accuracy.pass_at`,
  from all the problem's samples); cost the mean over problems of the cost of its **first N samples** (by
  ``sample`` index).
* ``majority`` at N (where the configuration has answers): accuracy the mean over problems of the majority
  vote's credit over the first N samples; cost as ``best_of_n`` at N (the same samples).
* ``long_cot`` at each budget B the file scores: accuracy the mean over problems of the share of samples
  correct when cut at B; cost the mean over problems and samples of one sample generating
  ``min(output_tokens, B)`` tokens (N = 1 per task).

Values of N: by default 1, 2, 4, ... up to the fewest samples any problem of the configuration has, and
that number itself; values given (``--n``) above it are left out for that configuration (pass@N needs
N <= n).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kinsim.frontier.accuracy import majority_credit, mean_correct, pass_at
from kinsim.frontier.flops import PAPER_INTENSITY, single_sample_costs, task_cost
from kinsim.frontier.samples import ScoredSamples
from kinsim.schema import to_raw

STRATEGIES = ("best_of_n", "majority", "long_cot")
#: Cost units: the two counted here and the three a simulation gives.
COUNTED_UNITS = ("flops", "eflops")
SIMULATED_UNITS = ("gpu_s", "joules", "usd")
UNITS = COUNTED_UNITS + SIMULATED_UNITS
#: Columns of the rows, in order (``on_frontier_*`` are added by :func:`kinsim.frontier.pareto.mark_frontiers`).
COLUMNS = ("model", "attention", "strategy", "n", "budget", "accuracy", *(f"cost_{u}" for u in UNITS),
           "problems", "params", "policy", "deployment", "task")


@dataclass(frozen=True)
class TaskSpec:
    """The workload one row describes, the fields of ``kinsim.frontier.simulate.SimTask``: a model preset or
    absolute model file path, a kinsim ``attention:`` mapping, the prompt tokens of each problem and the
    output tokens of each of its samples (chosen and cut), and each problem's weight in the task's mean cost
    (None: equal; a long chain of thought's samples are problems of their own, weighted so that every
    scored problem counts alike)."""

    model: str
    attention: Mapping[str, Any]
    prompts: tuple[int, ...]
    outputs: tuple[tuple[int, ...], ...]
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class _Problem:
    prompt: int
    outputs: np.ndarray      # tokens, by sample index
    correct: np.ndarray      # 0/1, by sample index
    answers: list[str | None]


def default_ns(fewest: int) -> list[int]:
    """1, 2, 4, ... up to ``fewest`` samples, and ``fewest`` itself."""
    ns = [1 << i for i in range(fewest.bit_length()) if 1 << i <= fewest]
    return ns if ns[-1] == fewest else [*ns, fewest]


def _problems(group: pd.DataFrame) -> list[_Problem]:
    """The problems of one (model, attention), in the order they first appear, samples by index."""
    by_problem = dict(list(group.groupby("problem", sort=False)))
    out = []
    for problem in dict.fromkeys(group["problem"]):
        rows = by_problem[problem].sort_values("sample", kind="stable")
        out.append(_Problem(prompt=int(rows["prompt_tokens"].iloc[0]), outputs=rows["output_tokens"].to_numpy(),
                            correct=rows["correct"].to_numpy(), answers=list(rows["answer"])))
    return out


def frontier_rows(samples: ScoredSamples, intensity: float = PAPER_INTENSITY,
                  ns: Sequence[int] | None = None) -> tuple[pd.DataFrame, list[TaskSpec]]:
    """The rows of every configuration of ``samples`` and the distinct tasks they describe (``task`` is the
    index of a row's task; rows of ``best_of_n`` and ``majority`` at one N share one). Simulated cost
    columns are NaN until :func:`attach_simulated` fills them."""
    rows: list[dict[str, Any]] = []
    tasks: dict[tuple, int] = {}
    specs: list[TaskSpec] = []

    def task_index(model: str, attention: str, prompts: tuple[int, ...], outputs: tuple,
                   weights: tuple[float, ...] | None = None) -> int:
        key = (model, attention, prompts, outputs, weights)
        if key not in tasks:
            tasks[key] = len(specs)
            policy = samples.attention[attention]
            specs.append(TaskSpec(samples.models[model].ref, to_raw(policy), prompts, outputs, weights))
        return tasks[key]

    for (model, attention), group in samples.samples.groupby(["model", "attention"], sort=False):
        spec, policy = samples.models[model].spec, samples.attention[attention]
        problems = _problems(group)
        base = {"model": model, "attention": attention, "problems": len(problems), "params": spec.params_active,
                "policy": type(policy).KIND}
        fewest = min(len(p.outputs) for p in problems)
        voting = any(a is not None for p in problems for a in p.answers)
        for n in [n for n in (ns or default_ns(fewest)) if n <= fewest]:
            costs = [task_cost(spec, policy, p.prompt, p.outputs[:n], intensity) for p in problems]
            cost = {"cost_flops": float(np.mean([c.compute_flops for c in costs])),
                    "cost_eflops": float(np.mean([c.eflops for c in costs]))}
            index = task_index(model, attention, tuple(p.prompt for p in problems),
                               tuple(tuple(int(x) for x in p.outputs[:n]) for p in problems))
            accuracy = float(np.mean([pass_at(len(p.outputs), int(p.correct.sum()), n) for p in problems]))
            rows.append({**base, "strategy": "best_of_n", "n": n, "budget": None, "accuracy": accuracy, **cost,
                         "task": index})
            if voting:
                accuracy = float(np.mean([majority_credit(p.answers[:n], p.correct[:n]) for p in problems]))
                rows.append({**base, "strategy": "majority", "n": n, "budget": None, "accuracy": accuracy, **cost,
                             "task": index})
        rows += _long_cot_rows(samples, model, attention, problems, base, intensity, task_index)
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("deployment",) and not
                                        c.endswith(SIMULATED_UNITS)])
    for unit in SIMULATED_UNITS:
        frame[f"cost_{unit}"] = np.nan
    frame["deployment"] = None
    for column in ("n", "budget"):
        frame[column] = pd.array(frame[column], dtype="Int64")
    return frame[list(COLUMNS)], specs


def _long_cot_rows(samples: ScoredSamples, model: str, attention: str, problems: list[_Problem],
                   base: dict[str, Any], intensity: float, task_index) -> list[dict[str, Any]]:
    table = samples.budgets
    mine = table[(table["model"] == model) & (table["attention"] == attention)]
    if mine.empty:
        return []
    spec, policy = samples.models[model].spec, samples.attention[attention]
    order = {p: i for i, p in enumerate(dict.fromkeys(samples.samples.loc[
        (samples.samples["model"] == model) & (samples.samples["attention"] == attention), "problem"]))}
    rows = []
    for budget, at_budget in mine.groupby("budget", sort=True):
        at_budget = at_budget.assign(order=at_budget["problem"].map(order)).sort_values(["order", "sample"])
        accuracy = float(np.mean([mean_correct(g["correct"].to_numpy()) for _, g in
                                  at_budget.groupby("order", sort=True)]))
        prompts = np.concatenate([np.full(len(p.outputs), p.prompt) for p in problems])
        outputs = np.minimum(np.concatenate([p.outputs for p in problems]), int(budget))
        flops, eflops = single_sample_costs(spec, policy, prompts, outputs, intensity)
        per_problem = np.repeat(np.arange(len(problems)), [len(p.outputs) for p in problems])
        counts = np.bincount(per_problem)
        cost = {"cost_flops": float(np.mean(np.bincount(per_problem, flops) / counts)),
                "cost_eflops": float(np.mean(np.bincount(per_problem, eflops) / counts))}
        # each sample is a problem of the simulation, weighted 1 / (its problem's samples x problems): the
        # mean over problems of the mean over their samples, as the accuracy and the counted costs
        weights = tuple(float(w) for w in 1.0 / (counts[per_problem] * len(problems)))
        index = task_index(model, attention, tuple(int(x) for x in prompts), tuple((int(x),) for x in outputs),
                           weights)
        rows.append({**base, "strategy": "long_cot", "n": None, "budget": int(budget), "accuracy": accuracy, **cost,
                     "task": index})
    return rows


def attach_simulated(frame: pd.DataFrame, costs: Sequence[Any]) -> pd.DataFrame:
    """``frame`` with ``cost_gpu_s``, ``cost_joules``, ``cost_usd`` and ``deployment`` from one simulated cost
    per task (``kinsim.frontier.simulate.SimCost``: ``gpu_s``, ``joules``, ``usd``, ``deployment``); a
    figure the hardware file cannot give (None) is NaN."""
    frame = frame.copy()
    tasks = frame["task"].to_numpy()

    def column(name: str) -> np.ndarray:
        values = [getattr(c, name) for c in costs]
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)[tasks]

    frame["cost_gpu_s"], frame["cost_joules"], frame["cost_usd"] = (column(n) for n in ("gpu_s", "joules", "usd"))
    frame["deployment"] = [costs[t].deployment for t in tasks]
    return frame
