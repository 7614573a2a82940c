"""The Azure LLM inference traces (2023 and 2024), as published.

Source: https://github.com/Azure/AzurePublicDataset (``AzureLLMInferenceDataset2023.md`` and
``AzureLLMInferenceDataset2024.md``); files ``AzureLLMInferenceTrace_conv.csv``, ``_code.csv`` (2023) and
``AzureLLMInferenceTrace_conv_1week.csv``, ``_code_1week.csv`` (2024). Header::

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:15:46.6805900,374,44

``TIMESTAMP`` is a date and time (2023: seven fractional digits, no offset; 2024:
``2024-05-10 00:00:00.009930+00:00``), taken as UTC when it has no offset. Rows with
``GeneratedTokens`` 0 exist; they count as failed requests.
"""

from __future__ import annotations

from pathlib import Path

from kinsim.limits import MAX_TOKENS
from kinsim.workload.formats.columns import Column, read_columns
from kinsim.workload.formats.table import TraceTable, shifted_to_first

NAME = "azure"
HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
COLUMNS = (Column("TIMESTAMP", "datetime"), Column("ContextTokens", "int", 0, maximum=MAX_TOKENS),
           Column("GeneratedTokens", "int", 0, maximum=MAX_TOKENS))


def read(path: str | Path) -> TraceTable:
    """The rows of an Azure trace; times in seconds from its first request."""
    line, values = read_columns(path, COLUMNS, jsonl=False)
    return TraceTable(file=str(path), format=NAME, line=line, time_s=shifted_to_first(values["TIMESTAMP"]),
                      prompt_tokens=values["ContextTokens"], output_tokens=values["GeneratedTokens"])
