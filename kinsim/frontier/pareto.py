"""Pareto frontiers of accuracy against cost per task, and what they say.

Definitions (``unit`` is one cost column: ``flops``, ``eflops``, ``gpu_s``, ``joules``, ``usd``):

* **Dominance.** Row p dominates row q when p costs no more and is no less accurate, and is cheaper or
  more accurate. A row is **on the frontier** when no row dominates it; rows with no cost in ``unit`` (a
  figure the hardware file cannot give) are never on it. Identical points are both on it.
* **One frontier per strategy.** pass@N (``best_of_n``) assumes an oracle verifier and is not comparable
  with majority voting or long chain-of-thought accuracy, so each strategy has its frontiers:
  ``on_frontier_model`` among one model's rows (every attention setting and N or budget),
  ``on_frontier_global`` among every model's rows. The global frontier, sorted by cost, is the best model
  and configuration at each cost: at a cost C the best row is the frontier point with the largest cost
  not above C (:func:`best_at`).
* **Size threshold** (CLARIFICATIONS: the smallest model that is on the frontier at every cost above some
  point). Along the global frontier sorted by cost, C0 is the lowest cost above which the frontier never
  moves back to a smaller model (models by active parameters): the start of the longest run of frontier
  points whose model sizes do not decrease. The threshold is the model of the frontier at C0, the smallest
  model on the frontier at every cost above C0; smaller models are the best choice only below C0. A
  frontier that moves to ever larger models all along starts that run at its first point: every size is
  then best somewhere and the threshold is the smallest frontier model. The *ladder* lists, for each cost
  at which it changes, the smallest model on the frontier at any higher cost.
* **Cost at an accuracy.** A frontier sorted by cost has rising accuracy; the cost of reaching accuracy a
  is interpolated linearly in log cost between the two frontier points whose accuracies bracket a, and is
  undefined outside the frontier's range of accuracies. Ratios are read at :data:`ACCURACY_GRID` where
  both sides are defined, and summarised by their geometric mean.
* **Dense against sparse**, per strategy and sparse setting: the cost of the frontier of the rows with dense
  attention (every model) over that of the rows with the sparse setting, at equal accuracy; above 1 the
  sparse setting is cheaper. Also the largest accuracy gain of the sparse frontier over the dense one at
  equal cost (each a step function: the best accuracy at a cost no more than C), read at the costs of
  both frontiers' points where both are defined.
* **Plan against optimum**: following the frontier of one unit (the FLOPs-optimal choice at each
  accuracy), judged in another, more faithful unit (eFLOPs, or simulated seconds): the judged cost of the
  plan's choice (interpolated with the same weights in log cost) over the judged unit's own frontier
  cost, at equal accuracy. 1 means the plan loses nothing; 2 means it pays twice what it must. Between
  frontier points both sides are interpolations, so a ratio may dip below 1 where the plan's neighbouring
  choices straddle a bend of the judged frontier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Accuracies at which iso-accuracy cost ratios are read (a share of problems, 0.1 to 0.9).
ACCURACY_GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))
#: Cost units from the least to the most faithful: a plan in one is judged in the later ones.
FAITHFULNESS = ("flops", "eflops", "gpu_s")


def pareto_mask(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """Which points are on the frontier (not dominated; module docstring). Points with a missing (NaN) or
    non-positive cost or a missing accuracy are not."""
    cost = np.asarray(cost, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    mask = np.zeros(cost.shape, dtype=bool)
    valid = np.flatnonzero(np.isfinite(cost) & (cost > 0) & np.isfinite(accuracy))
    order = valid[np.lexsort((-accuracy[valid], cost[valid]))]  # cheapest first, most accurate first
    best_cheaper = -math.inf  # best accuracy among strictly cheaper points
    start = 0
    while start < len(order):
        end = start
        while end < len(order) and cost[order[end]] == cost[order[start]]:
            end += 1
        group = order[start:end]
        top = accuracy[group[0]]
        if top > best_cheaper:
            mask[group[accuracy[group] == top]] = True
        best_cheaper = max(best_cheaper, top)
        start = end
    return mask


def mark_frontiers(frame: pd.DataFrame, unit: str) -> pd.DataFrame:
    """``frame`` with ``on_frontier_model`` and ``on_frontier_global`` for cost ``unit``, per strategy."""
    frame = frame.copy()
    column = f"cost_{unit}"
    frame["on_frontier_model"] = False
    frame["on_frontier_global"] = False
    for _, rows in frame.groupby("strategy", sort=False):
        frame.loc[rows.index, "on_frontier_global"] = pareto_mask(rows[column], rows["accuracy"])
        for _, mine in rows.groupby("model", sort=False):
            frame.loc[mine.index, "on_frontier_model"] = pareto_mask(mine[column], mine["accuracy"])
    return frame


def frontier(rows: pd.DataFrame, unit: str) -> pd.DataFrame:
    """The frontier of ``rows`` (one strategy) in ``unit``, sorted by cost; of identical points the first."""
    column = f"cost_{unit}"
    front = rows[pareto_mask(rows[column], rows["accuracy"])]
    front = front.sort_values([column, "accuracy"], kind="stable")
    return front.drop_duplicates([column, "accuracy"])


def best_at(rows: pd.DataFrame, unit: str, cost: float) -> pd.Series | None:
    """The most accurate row of ``rows`` (one strategy) costing at most ``cost`` (the cheapest of equals),
    or None when every row costs more."""
    column = f"cost_{unit}"
    affordable = rows[rows[column] <= cost]
    if affordable.empty:
        return None
    top = affordable["accuracy"].max()
    return affordable[affordable["accuracy"] == top].sort_values(column, kind="stable").iloc[0]


# ----------------------------------------------------------------------------------------- size threshold


def size_threshold(rows: pd.DataFrame, unit: str) -> dict[str, Any] | None:
    """The size threshold of ``rows`` (one strategy) in ``unit`` (module docstring): ``model``, ``params``
    and ``from_cost`` (C0), the ``ladder`` ([cost, model] where the smallest model at any higher cost
    changes) and the models ``never`` on the frontier; None when no row has a cost in ``unit``."""
    front = frontier(rows, unit)
    if front.empty:
        return None
    column = f"cost_{unit}"
    params = front["params"].to_numpy()
    start = len(front) - 1
    while start > 0 and params[start - 1] <= params[start]:
        start -= 1
    ladder: list[list[Any]] = []
    for i in range(len(front)):
        tail = int(np.argmin(params[i:])) + i
        model = front["model"].iloc[tail]
        if not ladder or ladder[-1][1] != model:
            ladder.append([float(front[column].iloc[i]), model])
    on = set(front["model"])
    return {"model": front["model"].iloc[start], "params": int(params[start]),
            "from_cost": float(front[column].iloc[start]), "ladder": ladder,
            "never": [m for m in dict.fromkeys(rows["model"]) if m not in on]}


# ----------------------------------------------------------------------------------------- iso-accuracy


def _brackets(accuracy: np.ndarray, grid: Sequence[float]) -> list[tuple[int, float] | None]:
    """For each accuracy of ``grid``: (i, t) with the target at ``(1 - t) acc[i] + t acc[i + 1]`` on a
    rising ``accuracy``, or None outside its range."""
    out: list[tuple[int, float] | None] = []
    for target in grid:
        if len(accuracy) == 0 or not accuracy[0] <= target <= accuracy[-1]:
            out.append(None)
            continue
        i = int(np.searchsorted(accuracy, target, side="right")) - 1
        if i >= len(accuracy) - 1:
            out.append((len(accuracy) - 1, 0.0))
        else:
            out.append((i, float((target - accuracy[i]) / (accuracy[i + 1] - accuracy[i]))))
    return out


def _log_between(values: np.ndarray, where: tuple[int, float] | None) -> float:
    if where is None:
        return math.nan
    i, t = where
    if t == 0.0:
        return float(values[i])
    return float(math.exp((1 - t) * math.log(values[i]) + t * math.log(values[i + 1])))


def cost_at_accuracy(front: pd.DataFrame, unit: str, grid: Sequence[float] = ACCURACY_GRID,
                     judge: str | None = None) -> np.ndarray:
    """Cost of reaching each accuracy of ``grid`` along ``front`` (a frontier in ``unit``), interpolated in
    log cost; NaN outside its accuracies. With ``judge``, the cost in that unit of the same choices."""
    places = _brackets(front["accuracy"].to_numpy(dtype=np.float64), grid)
    values = front[f"cost_{judge or unit}"].to_numpy(dtype=np.float64)
    return np.array([_log_between(values, where) for where in places])


def _ratio_summary(grid: Sequence[float], ratios: np.ndarray) -> dict[str, Any]:
    defined = [(a, r) for a, r in zip(grid, ratios) if math.isfinite(r) and r > 0]
    return {"accuracy": [a for a, _ in defined], "ratio": [float(r) for _, r in defined],
            "geomean": float(math.exp(np.mean(np.log([r for _, r in defined])))) if defined else None}


def _step(front: pd.DataFrame, column: str, cost: float) -> float:
    """Best accuracy of ``front`` at a cost no more than ``cost`` (NaN below its cheapest point)."""
    affordable = front["accuracy"][front[column] <= cost]
    return float(affordable.max()) if len(affordable) else math.nan


def dense_vs_sparse(rows: pd.DataFrame, unit: str, grid: Sequence[float] = ACCURACY_GRID) -> list[dict[str, Any]]:
    """For each sparse attention setting of ``rows`` (one strategy): the dense over sparse cost ratio at
    equal accuracy and the largest accuracy gain at equal cost (module docstring)."""
    column = f"cost_{unit}"
    dense = frontier(rows[rows["policy"] == "dense"], unit)
    out = []
    for name in dict.fromkeys(rows.loc[rows["policy"] != "dense", "attention"]):
        sparse = frontier(rows[rows["attention"] == name], unit)
        if dense.empty or sparse.empty:
            continue
        summary = _ratio_summary(grid, cost_at_accuracy(dense, unit, grid) / cost_at_accuracy(sparse, unit, grid))
        floor = max(dense[column].min(), sparse[column].min())
        costs = sorted(c for c in set(dense[column]) | set(sparse[column]) if c >= floor)
        gains = [(_step(sparse, column, c) - _step(dense, column, c), c) for c in costs]
        gain, at = max(gains, key=lambda g: g[0])
        out.append({"sparse": name, **summary, "max_gain": gain, "max_gain_cost": at})
    return out


def plan_vs_optimum(rows: pd.DataFrame, plan: str, judge: str,
                    grid: Sequence[float] = ACCURACY_GRID) -> dict[str, Any] | None:
    """The judged cost of following the ``plan`` unit's frontier over the ``judge`` unit's own (module
    docstring); None when either unit has no costs."""
    front = frontier(rows, plan)
    own = frontier(rows, judge)
    if front.empty or own.empty or not np.isfinite(front[f"cost_{judge}"]).all():
        return None
    ratios = cost_at_accuracy(front, plan, grid, judge=judge) / cost_at_accuracy(own, judge, grid)
    return {"plan": plan, "judge": judge, **_ratio_summary(grid, ratios)}


# ----------------------------------------------------------------------------------------- findings


def available_units(frame: pd.DataFrame, units: Sequence[str]) -> list[str]:
    """The units of ``units`` in which some row has a cost."""
    return [u for u in units if f"cost_{u}" in frame and np.isfinite(frame[f"cost_{u}"].to_numpy(float)).any()]


def findings(frame: pd.DataFrame, unit: str, units: Sequence[str], grid: Sequence[float] = ACCURACY_GRID) -> dict:
    """Per strategy: the global frontier in ``unit`` (the best model and configuration at each cost), the
    size threshold in every unit of ``units`` that has costs, dense against sparse in ``unit``, and each
    plan in a less faithful unit judged in a more faithful one (:data:`FAITHFULNESS`)."""
    present = available_units(frame, units)
    out: dict[str, Any] = {}
    for strategy, rows in frame.groupby("strategy", sort=False):
        faithful = [u for u in FAITHFULNESS if u in present]
        plans = [plan_vs_optimum(rows, p, j, grid) for i, p in enumerate(faithful) for j in faithful[i + 1:]]
        front = frontier(rows, unit)
        out[strategy] = {
            "frontier": [_plain_row(r) for r in front.to_dict("records")],
            "threshold": {u: size_threshold(rows, u) for u in present},
            "dense_vs_sparse": dense_vs_sparse(rows, unit, grid),
            "plans": [p for p in plans if p is not None],
        }
    return out


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: plain_value(value) for key, value in row.items()}


def plain_value(value: Any) -> Any:
    """A JSON-ready value: NumPy scalars as Python numbers, NaN and pandas' NA as None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
