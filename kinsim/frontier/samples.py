"""Scored-sample files: one row per generated sample, with its length and whether it was correct.

=============== ======== ==================================================================================
column          required meaning
=============== ======== ==================================================================================
model           yes      a model preset (``Qwen3-8B``, any case) or a model file (``.yaml``, ``.yml``, or a
                         Hugging Face ``.json``) relative to the samples file
attention       yes      ``dense``, or a name defined in the attention file
problem         yes      problem id (string or whole number; compared as a string)
sample          yes      sample index, whole number >= 0, unique within (model, attention, problem); the
                         first N samples are the N smallest indices
prompt_tokens   yes      whole number >= 1, equal within (model, problem)
output_tokens   yes      the sample's full generated length, whole number >= 1
correct         yes      0 or 1 (``true``/``false`` accepted)
answer          no       the extracted final answer (string or whole number), for majority voting; empty or
                         null: no answer (the sample does not vote)
budgets         no       long chain of thought: correctness when the generation is cut at budgets. JSONL: a
                         list of ``[budget, correct]`` pairs or a mapping ``{"budget": correct}``; CSV and
                         Parquet: a string ``"1024:0;2048:1;4096:1"``
=============== ======== ==================================================================================

Formats by suffix: ``.jsonl`` (or ``.json``: one object a line), ``.csv`` (a header row), ``.parquet``
(needs pyarrow). Unknown columns are errors. Rules across rows, each refused with the line of the row that
breaks it: a sample index appears once per (model, attention, problem); the samples of one (model,
problem) have one prompt length; one answer to a problem is either correct or wrong, wherever it appears;
within one (model, attention) every row has budgets or none does, and every row has the same budgets; the
correctness at a budget at least as long as the sample is its ``correct`` (the sample ended before the
cut); every (model, attention) covers the same problems (accuracies on different problem sets are not
comparable).

Attention file (YAML): ``attention: {NAME: {policy: ..., ...}}``, each mapping with the keys of a workload's
``attention:`` (``kinsim/workload/spec.py``). ``dense`` is built in and cannot be redefined. Looked up from
``--attention FILE``, else ``<samples file stem>.attention.yaml`` beside the samples file.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kinsim.errors import SpecError
from kinsim.limits import MAX_TOKENS
from kinsim.model.load import expand_model_ref, load_model
from kinsim.model.presets import PRESETS, preset_raw
from kinsim.model.spec import ModelSpec
from kinsim.reading import checked_file
from kinsim.schema import build
from kinsim.workload.formats import cells
from kinsim.workload.spec import AttentionPolicy, DenseAttention
from kinsim.yamlio import read_with_extends

REQUIRED = ("model", "attention", "problem", "sample", "prompt_tokens", "output_tokens", "correct")
OPTIONAL = ("answer", "budgets")
COLUMNS = REQUIRED + OPTIONAL
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
#: The attention configuration every samples file may name without defining it.
DENSE = "dense"
#: Model references read as files (relative to the samples file) rather than preset names.
MODEL_FILE_SUFFIXES = (".yaml", ".yml", ".json")

_POLICIES = {cls.KIND: cls for cls in typing.get_args(AttentionPolicy)}


@dataclass(frozen=True)
class SampleModel:
    """A model a samples file names: ``label`` as tables show it (a preset's own spelling, or the path as
    written), ``ref`` for a simulation (a preset name or an absolute file path) and its ``spec``."""

    label: str
    ref: str
    spec: ModelSpec


@dataclass(frozen=True)
class ScoredSamples:
    """A validated samples file as columns.

    ``samples``: one row per sample, columns ``line`` (line or row of the file), ``model`` (the model's
    label), ``attention``, ``problem`` (str), ``sample``, ``prompt_tokens``, ``output_tokens``, ``correct``
    (0/1), ``answer`` (str or None). ``budgets``: one row per (sample, budget), columns ``line``, ``model``,
    ``attention``, ``problem``, ``sample``, ``budget`` (tokens), ``correct``. ``attention``: every
    configuration the file may name (``dense`` and those of the attention file). ``models``: by label.
    """

    file: str
    samples: pd.DataFrame
    budgets: pd.DataFrame
    attention: dict[str, AttentionPolicy]
    models: dict[str, SampleModel]
    attention_file: str | None = None

    @property
    def configurations(self) -> list[tuple[str, str]]:
        """(model, attention) pairs in the order they first appear in the file."""
        pairs = self.samples[["model", "attention"]].drop_duplicates()
        return list(pairs.itertuples(index=False, name=None))


# ------------------------------------------------------------------------------------------- attention


def default_attention_file(samples_path: str | Path) -> Path:
    """``<stem>.attention.yaml`` beside the samples file."""
    path = Path(samples_path)
    return path.with_name(f"{path.stem}.attention.yaml")


def load_attention(path: str | Path) -> dict[str, AttentionPolicy]:
    """The named attention configurations of an attention file (``dense`` included)."""
    file = str(path)
    raw = read_with_extends(path)
    for key in raw:
        if key != "attention":
            raise SpecError(f"unknown key {key!r}", file=file, hint="an attention file has one key, attention: "
                            "{NAME: {policy: block_topk, ...}}")
    table = raw.get("attention")
    if table is None and "attention" in raw:
        table = {}  # "attention:" with nothing under it: no setting beside dense
    if not isinstance(table, Mapping):
        raise SpecError("expected a mapping of names to attention settings", path="attention",
                        value=table, file=file, hint="attention: {sparse64: {policy: block_topk, top_k: 64}}")
    out: dict[str, AttentionPolicy] = {DENSE: DenseAttention()}
    for name, value in table.items():
        where = f"attention.{name}"
        if not isinstance(name, str) or not name.strip():
            raise SpecError("expected a non-empty name", path="attention", value=name, file=file)
        if name == DENSE:
            raise SpecError("is built in (policy: dense) and cannot be redefined", path=where, file=file,
                            hint="choose another name")
        out[name] = attention_policy(value, where, file)
    return out


def attention_policy(value: Any, path: str, file: str | None) -> AttentionPolicy:
    """An attention setting built from its mapping, as a workload's ``attention:`` key is."""
    if not isinstance(value, Mapping):
        raise SpecError("expected a mapping of keys to values", path=path, value=value, file=file)
    if "policy" not in value:
        raise SpecError("missing required key", path=f"{path}.policy", file=file,
                        hint="one of " + ", ".join(_POLICIES))
    kind = value["policy"]
    if not isinstance(kind, str) or kind not in _POLICIES:
        raise SpecError("must be one of " + ", ".join(_POLICIES), path=f"{path}.policy", value=kind, file=file)
    return build(_POLICIES[kind], value, path=path, file=file)


# ------------------------------------------------------------------------------------------- models


def resolve_model(value: str, base_dir: Path, where: str, file: str) -> SampleModel:
    """The model a row's ``model`` cell names: a preset (any case) or a model file relative to ``base_dir``."""
    if value.lower().endswith(MODEL_FILE_SUFFIXES) or "/" in value or os.sep in value:
        target = base_dir / value
        if not os.path.lexists(target):
            raise SpecError("model file not found", path=where, value=value, file=file,
                            hint=f"looked for {target}; a preset is named like Qwen3-8B")
        checked_file(target, "json" if value.lower().endswith(".json") else "yaml")
        if value.lower().endswith(".json"):
            spec = load_model(target.resolve())
        else:  # the keys a workload's model: takes: every key, or preset: (or config:) with keys changed
            raw = expand_model_ref(read_with_extends(target), base_dir=target.parent, file=str(target))
            spec = build(ModelSpec, raw, file=str(target))
        return SampleModel(label=value, ref=str(target.resolve()), spec=spec)
    try:
        preset_raw(value, path=where, file=file)
    except SpecError as error:
        raise SpecError(error.rule, path=where, value=value, file=file, hint=error.hint) from None
    name = {key.lower(): key for key in PRESETS}[value.lower()]
    return SampleModel(label=name, ref=name, spec=load_model(name))


# ------------------------------------------------------------------------------------------- cells


def _whole(value: Any, where: str, file: str, minimum: int, maximum: int, what: str) -> int:
    """A whole number in [minimum, maximum] (a JSON integer, or a CSV cell of digits)."""
    if isinstance(value, str) and re.fullmatch(r"\s*\+?[0-9]+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
        value = int(value)  # a Parquet column of floats, or 7.0 from a spreadsheet
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected a whole number ({what})", path=where, value=value, file=file)
    if value < minimum:
        raise SpecError(f"must be at least {minimum}", path=where, value=value, file=file)
    if value > maximum:
        raise SpecError(f"must be at most {maximum:,}", path=where, value=value, file=file)
    return value


_TRUE, _FALSE = {"1", "1.0", "true"}, {"0", "0.0", "false"}


def _correct(value: Any, where: str, file: str) -> int:
    """0 or 1: a JSON 0/1 or true/false, or a CSV cell ``0``, ``1``, ``true``, ``false``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return int(value.strip().lower() in _TRUE)
    hint = "a score of 0-100 must be turned into 0/1 first" if value in (100, "100") else None
    raise SpecError("must be 0 or 1 (or true/false)", path=where, value=value, file=file, hint=hint)


def _answer(value: Any, where: str, file: str) -> str | None:
    """The extracted answer as a string without surrounding spaces; None for no answer (null, an empty or
    blank string)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None  # as a CSV cell reads: " 7" and "7" are one answer
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise SpecError("expected a string (the extracted final answer) or a whole number", path=where, value=value,
                    file=file, hint="write other answers as strings, normalised as they should be compared")


def _budgets(value: Any, where: str, file: str) -> tuple[tuple[int, int], ...] | None:
    """(budget, correct) pairs sorted by budget; None for no budgets (null, an empty string or list)."""
    if value is None or (isinstance(value, (str, list, dict)) and not (value.strip() if isinstance(value, str)
                                                                       else value)):
        return None
    if isinstance(value, str):
        pairs = []
        for part in value.split(";"):
            budget, colon, correct = part.partition(":")
            if not colon:
                raise SpecError('expected "budget:correct" pairs separated by ";" like "1024:0;2048:1"',
                                path=where, value=value, file=file)
            pairs.append((budget.strip(), correct.strip()))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for pair in value:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise SpecError("expected a list of [budget, correct] pairs", path=where, value=value, file=file)
            pairs.append(tuple(pair))
    else:
        raise SpecError('expected [budget, correct] pairs, a mapping {"budget": correct} or "1024:0;2048:1"',
                        path=where, value=value, file=file)
    out: dict[int, int] = {}
    for budget, correct in pairs:
        tokens = _whole(budget, where, file, 1, MAX_TOKENS, "a budget of tokens")
        if tokens in out:
            raise SpecError("names a budget twice", path=where, value=tokens, file=file)
        out[tokens] = _correct(correct, where, file)
    return tuple(sorted(out.items()))


# ------------------------------------------------------------------------------------------- rows


def _rows(path: Path, file: str) -> tuple[str, Iterator[tuple[int, dict[str, Any]]]]:
    """("line" or "row", the (number, mapping) of each data row) of a samples file, by its suffix."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "line", cells.jsonl_rows(path)
    if suffix == ".csv":
        header = cells.csv_header(path)
        for name in header:
            if name not in COLUMNS:
                raise SpecError(f"unknown column {name!r}", path="line 1", file=file,
                                hint="columns: " + ", ".join(COLUMNS))
        for name in REQUIRED:
            if name not in header:
                raise SpecError(f"missing required column {name!r}", path="line 1", file=file,
                                hint="header: " + ",".join(REQUIRED))
        return "line", cells.csv_rows(path)
    if suffix == ".parquet":
        return "row", _parquet_rows(path, file)
    raise SpecError("unknown samples file type", value=path.suffix, file=file,
                    hint="expected .jsonl, .csv or .parquet")


def _parquet_rows(path: Path, file: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SpecError("reading Parquet needs pyarrow", file=file, hint='pip install pyarrow') from None
    checked_file(path, "parquet")
    try:
        table = pq.read_table(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds for a broken file
        raise SpecError(f"is not a readable Parquet file ({type(error).__name__})", file=file) from None
    for name in table.column_names:
        if name not in COLUMNS:
            raise SpecError(f"unknown column {name!r}", file=file, hint="columns: " + ", ".join(COLUMNS))
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, {key: value for key, value in row.items() if value is not None}


@dataclass
class _Row:
    line: int
    model: str
    attention: str
    problem: str
    sample: int
    prompt_tokens: int
    output_tokens: int
    correct: int
    answer: str | None
    budgets: tuple[tuple[int, int], ...] | None


class _Reader:
    """Reads rows one by one, resolving models and attention names once each."""

    def __init__(self, path: Path, attention: dict[str, AttentionPolicy], attention_file: str | None) -> None:
        self.path, self.file = path, str(path)
        self.attention, self.attention_file = attention, attention_file
        self.models: dict[str, SampleModel] = {}
        self.by_value: dict[str, SampleModel] = {}

    def row(self, word: str, number: int, raw: dict[str, Any]) -> _Row:
        file = self.file
        for key in raw:
            if key not in COLUMNS:
                raise SpecError(f"unknown column {key!r}", path=f"{word} {number}", file=file,
                                hint="columns: " + ", ".join(COLUMNS))
        for key in REQUIRED:
            if key not in raw:
                raise SpecError("missing required column", path=f"{word} {number}.{key}", file=file)

        def at(column: str) -> str:
            return f"{word} {number}.{column}"

        model = self._model(cells.name(raw["model"], at("model"), file).strip(), at("model"))
        attention = cells.name(raw["attention"], at("attention"), file).strip()
        if attention not in self.attention:
            raise SpecError("names no attention configuration", path=at("attention"), value=attention, file=file,
                            hint=self._attention_hint())
        return _Row(
            line=number, model=model.label, attention=attention,
            problem=cells.name(raw["problem"], at("problem"), file).strip(),
            sample=_whole(raw["sample"], at("sample"), file, 0, 2**62, "a sample index"),
            prompt_tokens=_whole(raw["prompt_tokens"], at("prompt_tokens"), file, 1, MAX_TOKENS, "tokens"),
            output_tokens=_whole(raw["output_tokens"], at("output_tokens"), file, 1, MAX_TOKENS, "tokens"),
            correct=_correct(raw["correct"], at("correct"), file),
            answer=_answer(raw.get("answer"), at("answer"), file),
            budgets=_budgets(raw.get("budgets"), at("budgets"), file),
        )

    def _model(self, value: str, where: str) -> SampleModel:
        if value not in self.by_value:
            model = resolve_model(value, self.path.parent, where, self.file)
            self.by_value[value] = self.models.setdefault(model.label, model)
        return self.by_value[value]

    def _attention_hint(self) -> str:
        names = ", ".join(self.attention)
        if self.attention_file is None:
            return (f"known: {names}; define others in {default_attention_file(self.path).name} beside the samples "
                    "file or give --attention FILE")
        return f"known: {names} ({self.attention_file})"


def load_samples(path: str | Path, attention_file: str | Path | None = None) -> ScoredSamples:
    """Read and validate a samples file and its attention file (``attention_file``, else the default one
    beside it when it exists). Raises :class:`~kinsim.errors.SpecError` naming the file, the line, the
    column, the rule and the value."""
    path = Path(path)
    file = str(path)
    checked_file(path, "trace", "samples file not found")
    if attention_file is None and default_attention_file(path).exists():
        attention_file = default_attention_file(path)
    attention = load_attention(attention_file) if attention_file is not None else {DENSE: DenseAttention()}
    reader = _Reader(path, attention, None if attention_file is None else str(attention_file))
    word, raw_rows = _rows(path, file)
    rows = [reader.row(word, number, raw) for number, raw in raw_rows]
    if not rows:
        raise SpecError("holds no samples", file=file)
    _check_rows(rows, word, file)
    samples = pd.DataFrame({
        "line": [r.line for r in rows], "model": [r.model for r in rows], "attention": [r.attention for r in rows],
        "problem": [r.problem for r in rows], "sample": [r.sample for r in rows],
        "prompt_tokens": [r.prompt_tokens for r in rows], "output_tokens": [r.output_tokens for r in rows],
        "correct": [r.correct for r in rows], "answer": pd.Series([r.answer for r in rows], dtype=object),
    })
    budget_rows = [(r.line, r.model, r.attention, r.problem, r.sample, b, c) for r in rows for b, c in r.budgets or ()]
    budgets = pd.DataFrame(budget_rows, columns=["line", "model", "attention", "problem", "sample", "budget",
                                                 "correct"])
    used = set(samples["attention"])
    return ScoredSamples(file=file, samples=samples, budgets=budgets,
                         attention={k: v for k, v in attention.items() if k in used or k == DENSE},
                         models=reader.models, attention_file=reader.attention_file)


# ------------------------------------------------------------------------------------------- rules across rows


def _check_rows(rows: list[_Row], word: str, file: str) -> None:
    """The rules across rows (module docstring), each refused at the first row that breaks it."""
    seen: dict[tuple[str, str, str, int], int] = {}
    prompts: dict[tuple[str, str], tuple[int, int]] = {}
    answers: dict[tuple[str, str], tuple[int, int]] = {}
    budget_sets: dict[tuple[str, str], tuple[tuple[int, ...] | None, int]] = {}
    for row in rows:
        def at(column: str, row: _Row = row) -> str:
            return f"{word} {row.line}.{column}"

        key = (row.model, row.attention, row.problem, row.sample)
        if key in seen:
            raise SpecError(f"repeats a sample of model {row.model}, attention {row.attention}, problem "
                            f"{row.problem} ({word} {seen[key]})", path=at("sample"), value=row.sample, file=file)
        seen[key] = row.line
        prompt, first = prompts.setdefault((row.model, row.problem), (row.prompt_tokens, row.line))
        if prompt != row.prompt_tokens:
            raise SpecError(f"differs from the problem's prompt_tokens {prompt} ({word} {first}); the samples of "
                            "one model and problem share their prompt", path=at("prompt_tokens"),
                            value=row.prompt_tokens, file=file)
        if row.answer is not None:
            correct, first = answers.setdefault((row.problem, row.answer), (row.correct, row.line))
            if correct != row.correct:
                raise SpecError(f"answer {row.answer!r} to problem {row.problem} is marked correct={row.correct} "
                                f"here and correct={correct} on {word} {first}; one answer is either right or "
                                "wrong", path=at("correct"), value=row.correct, file=file)
        _check_budgets(row, budget_sets, at, word, file)
    _check_problem_sets(rows, word, file)


def _check_budgets(row: _Row, sets: dict, at, word: str, file: str) -> None:
    mine = None if row.budgets is None else tuple(b for b, _ in row.budgets)
    theirs, first = sets.setdefault((row.model, row.attention), (mine, row.line))
    if mine != theirs:
        def shown(budgets):
            return "no budgets" if budgets is None else "budgets " + ", ".join(map(str, budgets))

        raise SpecError(f"has {shown(mine)} but {word} {first} of the same model and attention has "
                        f"{shown(theirs)}; every sample of one model and attention is scored at the same budgets",
                        path=at("budgets"), file=file)
    for budget, correct in row.budgets or ():
        if budget >= row.output_tokens and correct != row.correct:
            raise SpecError(f"correct at budget {budget} must equal the sample's correct ({row.correct}): the sample "
                            f"ends at {row.output_tokens} tokens, before the cut", path=at("budgets"),
                            value=f"{budget}:{correct}", file=file)


def _check_problem_sets(rows: list[_Row], word: str, file: str) -> None:
    problems: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        problems.setdefault((row.model, row.attention), {}).setdefault(row.problem, row.line)
    union: dict[str, tuple[int, tuple[str, str]]] = {}
    for config, found in problems.items():
        for problem, line in found.items():
            union.setdefault(problem, (line, config))
    for (model, attention), found in problems.items():
        for problem, (line, _) in union.items():
            if problem not in found:
                first = next(iter(found.values()))
                raise SpecError(f"model {model} with attention {attention} has no samples of problem {problem} "
                                f"({word} {line} has); every model and attention must cover the same problems",
                                path=f"{word} {first}.problem", file=file)
