"""kinsim's own trace format: JSONL (one object a line) or CSV (a header row), with the same columns.

=============== ======== ==============================================================
column          required meaning
=============== ======== ==============================================================
request_id      yes      unique name (string or whole number)
group_id        no       requests with the same group share one prompt; default: own id
arrival_s       yes      arrival time in seconds from the start of the replay (number >= 0)
prompt_tokens   yes      prompt length, tokens (whole number >= 1)
output_tokens   yes      tokens to generate (whole number >= 1)
score           no       a number carried to the request table (``--requests-csv``, ``result.requests``)
hash_ids        no       prefix-block hash ids: a JSON list of whole numbers, or in CSV one cell of whole
                         numbers separated by spaces or semicolons
acceptance      no       speculative-decoding acceptance rate of the request, in [0, 1] (read with
                         ``deployment.speculative.acceptance: trace``)
=============== ======== ==============================================================

Rows of one group must have the same ``prompt_tokens`` (they share the prompt). Unknown columns are
errors. Every broken rule is a :class:`SpecError` naming the file, the line and the column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kinsim.errors import SpecError
from kinsim.limits import MAX_TOKENS
from kinsim.workload.formats.columns import Column, read_columns
from kinsim.workload.formats.table import TraceTable

NAME = "kinsim"
REQUIRED_COLUMNS = ("request_id", "arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL_COLUMNS = ("group_id", "score", "hash_ids", "acceptance")
COLUMNS_NAMES = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
COLUMNS = (Column("request_id", "str"), Column("group_id", "str", required=False), Column("arrival_s", "float", 0),
           Column("prompt_tokens", "int", 1, maximum=MAX_TOKENS), Column("output_tokens", "int", 1, maximum=MAX_TOKENS),
           Column("score", "float", required=False), Column("hash_ids", "ids", required=False),
           Column("acceptance", "float", 0, required=False, maximum=1))


def read(path: str | Path) -> TraceTable:
    """The rows of a kinsim trace (``.jsonl`` or ``.json``: JSONL; anything else: CSV)."""
    file = str(path)
    jsonl = Path(path).suffix.lower() in (".jsonl", ".json")
    line, values = read_columns(path, COLUMNS, jsonl=jsonl, known=COLUMNS_NAMES)
    request_id = [str(v) for v in values["request_id"]]
    group_id = values.get("group_id")
    groups = request_id if group_id is None else [r if g is None else str(g) for r, g in zip(request_id, group_id)]
    prompts = values["prompt_tokens"]
    _check_ids(request_id, line, file)
    if group_id is not None:
        _check_groups(groups, prompts, line, file)
    return TraceTable(file=file, format=NAME, line=line, time_s=values["arrival_s"], prompt_tokens=prompts,
                      output_tokens=values["output_tokens"], request_id=request_id, group_id=groups,
                      score=values.get("score"), hash_offsets=values.get("hash_ids.offsets"),
                      hash_values=values.get("hash_ids.values"), acceptance=values.get("acceptance"))


def _check_ids(request_id: list[str], line: np.ndarray, file: str) -> None:
    if len(set(request_id)) == len(request_id):
        return
    first: dict[str, int] = {}
    for name, where in zip(request_id, line.tolist()):
        if name in first:
            raise SpecError(f"duplicate request_id (first on line {first[name]})", path=f"line {where}.request_id",
                            value=name, file=file)
        first[name] = where


def _check_groups(groups: list[str], prompts: np.ndarray, line: np.ndarray, file: str) -> None:
    first: dict[str, tuple[int, int]] = {}
    for group, prompt, where in zip(groups, prompts.tolist(), line.tolist()):
        seen = first.setdefault(group, (prompt, where))
        if seen[0] != prompt:
            raise SpecError(
                f"differs from the group's prompt_tokens {seen[0]} (line {seen[1]}); requests of one group share "
                "their prompt", path=f"line {where}.prompt_tokens", value=prompt, file=file)
