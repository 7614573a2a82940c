"""BurstGPT, as published.

Source: https://github.com/HPMLL/BurstGPT (``data/BurstGPT_1.csv`` ... and the README's column table);
paper: Wang et al., "BurstGPT: A Real-world Workload Dataset to Optimize LLM Serving Systems",
arXiv 2401.17644. Header::

    Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
    5,ChatGPT,472,18,490,Conversation log

``Timestamp`` is seconds (a number) from the start of the trace; ``Model`` names the model served
(``ChatGPT``, ``GPT-4``); a failed request has ``Response tokens`` 0; ``Total tokens`` and ``Log Type``
(``Conversation log``, ``API log``) are read past.
"""

from __future__ import annotations

from pathlib import Path

from kinsim.limits import MAX_TOKENS
from kinsim.workload.formats.columns import Column, read_columns
from kinsim.workload.formats.table import TraceTable, shifted_to_first

NAME = "burstgpt"
HEADER = ("Timestamp", "Model", "Request tokens", "Response tokens")
COLUMNS = (Column("Timestamp", "float", 0), Column("Model", "category"),
           Column("Request tokens", "int", 0, maximum=MAX_TOKENS),
           Column("Response tokens", "int", 0, maximum=MAX_TOKENS))


def read(path: str | Path) -> TraceTable:
    """The rows of a BurstGPT trace; times in seconds from its first request."""
    line, values = read_columns(path, COLUMNS, jsonl=False)
    return TraceTable(file=str(path), format=NAME, line=line, time_s=shifted_to_first(values["Timestamp"]),
                      prompt_tokens=values["Request tokens"], output_tokens=values["Response tokens"],
                      model=values["Model.codes"], models=tuple(str(n) for n in values["Model.names"]))
