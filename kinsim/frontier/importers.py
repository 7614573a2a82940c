"""Scored generations written by other tools, turned into kinsim's scored-sample rows.

The Kinetics generations format
-------------------------------
The Kinetics paper (Sadhukhan et al., "Kinetics: Rethinking Test-Time Scaling Laws", arXiv 2506.05333)
publishes its AIME24 and AIME25 reasoning traces of the Qwen3 models, dense and sparse, as JSONL files (the
Hugging Face dataset ``InfiniAILab/Kinetics-generations``, linked from the README of
github.com/Infini-AI-Lab/Kinetics). One file holds one model with one attention configuration. What this
reader relies on, and where in that repository it was read:

- **Line 1 is a metadata object.** The cost scripts read it with ``json.loads(f.readline())`` and take the
  sparse-attention settings from it with ``metadata.get(...)`` (``cost_model/best_of_N/cost_model_ntrial.py``):
  ``attn_local`` (absent or null: dense attention), ``attn_block_topk`` with ``attn_block_size`` (block
  top-k), otherwise ``attn_topk`` (token top-k). The generation script writes a run summary there
  (``task``, ``pass@1``, ``total_example``, ``pass@N``: ``LiteSys/examples/eval_math.py``), and the long
  chain-of-thought script reads the settings from the file name instead (``local0``, ``block16``,
  ``blocktopk64``, ``topk256``: ``cost_model/long_CoT/cost_model_genlen.py``; the generation script names
  its folders ``l0``, ``blk16``, ``blktopk64``). So the settings are taken from the metadata's ``attn_*``
  keys when it has any, else from such parts of the file's name (or of its folder's name), else the
  attention is dense; the command says which.
- **Every other line is one generation** (``LiteSys/examples/eval_math.py``; the README lists the keys):
  ``query`` (the problem's text), ``prediction`` (a list holding the generated text), ``choices`` (a list
  holding the reference answer) and ``score`` (``0.0`` or ``100.0``: the extracted answer matched the
  reference). A problem appears once per sample, 32 times (8 for Qwen3-32B).
- **The generated text keeps its special tokens**: it is the tokenizer's decoding of the generated tokens,
  the end-of-sequence token included (``LiteSys/litesys/engine/engine.py``), so encoding it again counts
  the tokens the model generated.
- **Sparse attention keeps 4 sink tokens** besides the local window and the selected tokens or blocks, and
  leaves layer 0 dense (``LiteSys/litesys/attention/sparsity_utils.py``: ``sink=4``,
  ``attn_layer_skip=[0]``). kinsim's policies apply to every layer; the 4 sink tokens are kept.

Prompts were the problem inside an instruction, in the model's chat template, and the template is not in
the file: ``prompt_tokens`` counts the ``query`` alone unless a prompt template is given (a text file in
which ``{query}`` stands for the problem, written as the model saw it, chat markers included).

Attention settings become a kinsim ``attention:`` mapping (:func:`kinetics_attention`):

==========================================  ===================================================================
Kinetics settings                            kinsim attention
==========================================  ===================================================================
``attn_local`` null                          ``dense``
``attn_block_topk`` k, ``attn_block_size`` b  ``block_topk``: ``block_size`` b (default 16), ``top_k`` k,
                                             ``local_window`` = ``attn_local``, ``sink_tokens`` 4
``attn_topk`` t                              ``topk``: ``token_budget`` t + ``attn_local`` + 4
``attn_random_select`` or                    ``topk`` with that many tokens + ``attn_local`` + 4 (what a step
``attn_random_nsample`` n                    reads; choosing them costs nothing in either)
``attn_local`` alone                         ``sliding_window``: ``window`` = ``attn_local``, ``sink_tokens`` 4
``attn_stride``, ``quest_topk_blocks``       refused: no kinsim policy reads what these read
==========================================  ===================================================================
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.limits import MAX_NESTING
from kinsim.reading import check_nesting, open_checked, read_text

#: Sink tokens LiteSys's sparse attention always reads (``sparsity_utils.py``, ``sink=4``).
KINETICS_SINK_TOKENS = 4
#: LiteSys's default ``attn_block_size`` (``eval_math.py``, ``--attn_block_size`` default 16).
KINETICS_BLOCK_SIZE = 16
#: The metadata keys that set the attention; any other key (the run summary) is ignored.
KINETICS_SETTINGS = ("attn_local", "attn_topk", "attn_block_topk", "attn_block_size", "attn_stride",
                     "attn_random_select", "attn_random_nsample", "quest_topk_blocks")
#: Parts of a file or folder name that carry a setting, as the Kinetics scripts write them.
_NAME_PARTS = (
    (re.compile(r"(?:blocktopk|blktopk)(\d+)"), "attn_block_topk"),
    (re.compile(r"(?:block|blk)(\d+)"), "attn_block_size"),
    (re.compile(r"topk(\d+)"), "attn_topk"),
    (re.compile(r"(?:local|l)(\d+)"), "attn_local"),
    (re.compile(r"stride(\d+)"), "attn_stride"),
)
#: Generations encoded per call of the tokenizer (it encodes a batch on all cores).
_BATCH = 128
#: Hexadecimal digits of a problem id (the start of the SHA-256 of the problem's text).
PROBLEM_ID_DIGITS = 12


@dataclass
class ImportedSamples:
    """The rows of one imported file and what they were made with.

    Attributes:
        rows: scored-sample rows (mappings with the columns of the scored-sample format), in file order.
        attention_name: the name the rows carry in ``attention``.
        attention: the kinsim ``attention:`` mapping of that name.
        attention_source: where the settings came from, as a phrase for the user.
        metadata: the file's metadata object.
        empty_generations: generations whose text had no token (counted as 1 token).
        problems: samples per problem id.
        dropped_answers: answers set to null because the file grades them both right and wrong within one
            problem.
    """

    rows: list[dict[str, Any]]
    attention_name: str
    attention: dict[str, Any]
    attention_source: str
    metadata: dict[str, Any]
    empty_generations: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    dropped_answers: int = 0


def load_tokenizer(path: str | Path) -> Any:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file (the Hugging Face format); needs the
    ``tokenizers`` library (``pip install kinsim[frontier]``). Read from the file alone: no network."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise SpecError("counting tokens needs the tokenizers library, which is not installed", path="--tokenizer",
                        hint='pip install "kinsim[frontier]"') from None
    text = read_text(path, "json")
    try:
        return Tokenizer.from_str(text)
    except Exception as error:  # noqa: BLE001 - the library raises a bare Exception for a bad file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SpecError(f"is not a tokenizer.json file of the tokenizers library ({reason})",
                        file=str(path)) from None


def read_prompt_template(path: str | Path) -> str:
    """The text of a prompt template file, which must hold ``{query}`` exactly once."""
    text = read_text(path, "yaml")
    if text.count("{query}") != 1:
        raise SpecError("a prompt template must hold {query} exactly once, where the problem's text goes",
                        value=text.count("{query}"), file=str(path), path="{query}")
    return text


def problem_id(query: str) -> str:
    """The id of a problem: the first :data:`PROBLEM_ID_DIGITS` hexadecimal digits of the SHA-256 of its
    text (UTF-8), the same in every file that holds the problem, whatever the order of its lines."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()[:PROBLEM_ID_DIGITS]


def boxed_answer(text: str) -> tuple[str, int] | None:
    """The final answer of a generation: the content of its last ``\\boxed{...}`` (braces balanced,
    spaces around it dropped) and the index of the character after its closing brace; ``None`` when the
    text has no complete, non-empty one."""
    start, limit = text.rfind("\\boxed{"), len(text)
    while start >= 0:
        depth = 0
        for i in range(start + len("\\boxed"), limit):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    answer = text[start + len("\\boxed{"):i].strip()
                    return (answer, i + 1) if answer else None
        # unclosed (a cut generation): try the one before it, which, open when it reaches this one, stays
        # open to the end too (so each character is scanned once)
        start, limit = text.rfind("\\boxed{", 0, start), start
    return None

# ----------------------------------------------------------------------------------------- attention

def kinetics_settings(metadata: Mapping[str, Any], path: Path, line: int = 1) -> tuple[dict[str, Any], str, str]:
    """The attention settings of a Kinetics file, where they came from (a phrase) and the key path that
    names them in a message: the metadata's ``attn_*`` keys when it has any, else the parts of the file's
    name (then its folder's name) that carry one."""
    if any(key in metadata for key in KINETICS_SETTINGS):
        return {key: metadata.get(key) for key in KINETICS_SETTINGS}, "the metadata line", f"line {line}"
    for name, where in ((path.stem, "file name"), (path.resolve().parent.name, "folder name")):
        found: dict[str, Any] = {}
        for part in re.split(r"[_\-.]", name):
            for pattern, key in _NAME_PARTS:
                match = pattern.fullmatch(part)
                if match:
                    found[key] = int(match.group(1))
                    break
        if found:
            return found, f"the {where} ({name})", where
    return {}, "neither the metadata line nor the file name (dense attention)", f"line {line}"


def kinetics_attention(settings: Mapping[str, Any], *, file: str | None = None,
                       where: str = "line 1") -> dict[str, Any]:
    """The kinsim ``attention:`` mapping of Kinetics attention settings (see the module's table)."""
    def number(key: str, least: int) -> int | None:
        value = settings.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SpecError(f"must be a whole number >= {least} or null", path=f"{where}.{key}", value=value,
                            file=file)
        return value

    local = number("attn_local", 0)
    topk, block_topk = number("attn_topk", 1), number("attn_block_topk", 1)
    block_size = number("attn_block_size", 1)
    random_select, random_nsample = number("attn_random_select", 1), number("attn_random_nsample", 1)
    for key in ("attn_stride", "quest_topk_blocks"):
        if settings.get(key) is not None:
            raise SpecError("has no kinsim attention policy (strided blocks and Quest read other tokens than "
                            "block top-k)", path=f"{where}.{key}", value=settings[key], file=file)
    chosen = [(k, v) for k, v in (("attn_topk", topk), ("attn_block_topk", block_topk),
                                  ("attn_random_select", random_select), ("attn_random_nsample", random_nsample))
              if v is not None]
    if len(chosen) > 1:
        raise SpecError("only one of attn_topk, attn_block_topk, attn_random_select, attn_random_nsample may be "
                        "set", path=f"{where}.{chosen[1][0]}", value=chosen[1][1], file=file)
    if chosen and local is None:
        raise SpecError("attn_local must be set with a sparse setting (LiteSys requires it)",
                        path=f"{where}.attn_local", value=None, file=file)
    sink = KINETICS_SINK_TOKENS
    if block_topk is not None:
        return {"policy": "block_topk", "block_size": block_size or KINETICS_BLOCK_SIZE, "top_k": block_topk,
                "local_window": local, "sink_tokens": sink}
    if chosen:
        return {"policy": "topk", "token_budget": chosen[0][1] + local + sink}
    if local is not None:
        if local == 0:
            raise SpecError("attn_local 0 with no other setting reads only the sink tokens; kinsim's sliding "
                            "window needs a window of at least 1 token", path=f"{where}.attn_local", value=local,
                            file=file)
        return {"policy": "sliding_window", "window": local, "sink_tokens": sink}
    return {"policy": "dense"}


def kinetics_attention_name(settings: Mapping[str, Any]) -> str:
    """A name for the attention of Kinetics settings, in the style of the Kinetics file names:
    ``dense``, ``local0_block16_blocktopk64``, ``local0_topk256``, ``local128``."""
    if settings.get("attn_local") is None:
        return "dense"
    parts = [f"local{settings['attn_local']}"]
    if settings.get("attn_block_topk") is not None:
        parts += [f"block{settings.get('attn_block_size') or KINETICS_BLOCK_SIZE}",
                  f"blocktopk{settings['attn_block_topk']}"]
    for key, word in (("attn_topk", "topk"), ("attn_random_select", "randomselect"),
                      ("attn_random_nsample", "randomsample")):
        if settings.get(key) is not None:
            parts.append(f"{word}{settings[key]}")
    return "_".join(parts)


def check_attention(mapping: Mapping[str, Any], *, path: str, file: str | None = None) -> None:
    """Refuse an ``attention:`` mapping that ``kinsim frontier`` would refuse (its reader's own rule)."""
    from kinsim.frontier.samples import attention_policy

    attention_policy(mapping, path, file)


# ----------------------------------------------------------------------------------------- reading

def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of each non-blank line of a JSONL file, with one clear error for a line
    that is not UTF-8 or not JSON."""
    file = str(path)
    with open_checked(path, "trace") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise SpecError(f"is not UTF-8 text (byte {error.start})", path=f"line {number}",
                                file=file) from None
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise SpecError(f"not JSON ({error.msg} at column {error.colno})", path=f"line {number}",
                                file=file) from None
            except RecursionError:
                raise SpecError(f"nests lists and objects more than {MAX_NESTING} deep", path=f"line {number}",
                                file=file) from None
            check_nesting(value, file, f"line {number}")
            yield number, value


@dataclass
class _Generation:
    """One generation line, checked, before its tokens are counted."""

    problem: str
    query: str
    text: str
    correct: int


def _generation(number: int, row: Any, file: str) -> _Generation:
    """Check one generation line of a Kinetics file."""
    if not isinstance(row, dict):
        raise SpecError("expected a JSON object (a generation)", path=f"line {number}", value=row, file=file)
    for key in ("query", "prediction", "score"):
        if key not in row:
            raise SpecError("missing key (a Kinetics generation has query, prediction, choices and score)",
                            path=f"line {number}.{key}", file=file)
    query, prediction, score = row["query"], row["prediction"], row["score"]
    if not isinstance(query, str):
        raise SpecError("expected the problem's text", path=f"line {number}.query", value=query, file=file)
    if isinstance(prediction, list) and len(prediction) == 1:
        prediction = prediction[0]
    if not isinstance(prediction, str):
        raise SpecError("expected a list holding one generated text", path=f"line {number}.prediction",
                        value=row["prediction"], file=file)
    if isinstance(score, bool) or score not in (0, 100):
        raise SpecError("must be 0 or 100 (the Kinetics score of a wrong or right answer)",
                        path=f"line {number}.score", value=score, file=file)
    return _Generation(problem_id(query), query, prediction, 1 if score == 100 else 0)


def import_kinetics(path: str | Path, tokenizer: Any, model: str, *, attention_name: str | None = None,
                    prompt_template: str | None = None, budgets: Sequence[int] = ()) -> ImportedSamples:
    """The scored-sample rows of a Kinetics generations file.

    Args:
        path: the JSONL file (metadata line, then one generation per line).
        tokenizer: a ``tokenizers.Tokenizer`` (:func:`load_tokenizer`) of the model that generated it.
        model: the ``model`` every row carries (a preset name or model file, as the format takes).
        attention_name: the ``attention`` every row carries; default from the settings
            (:func:`kinetics_attention_name`).
        prompt_template: text in which ``{query}`` stands for the problem (the prompt as the model saw it);
            default the problem's text alone.
        budgets: generation budgets (tokens) at which to give each sample's correctness (the ``budgets``
            column): right at budget B when right in full and its final ``\\boxed{}`` answer ends within the
            first B generated tokens (a right sample without one: when its whole generation fits); wrong
            otherwise. An approximation: Kinetics graded the truncated text again.

    Each row: ``problem`` is :func:`problem_id` of the ``query``; ``sample`` counts the problem's lines in
    file order from 0; ``prompt_tokens`` counts the prompt with the tokenizer's special tokens (a BOS token
    where the tokenizer adds one), ``output_tokens`` the generated text without adding any (it holds its
    own end-of-sequence token); ``correct`` is 1 for a score of 100, 0 for 0; ``answer`` is
    :func:`boxed_answer` of the generated text, or null when it has none.
    """
    path = Path(path)
    file = str(path)
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise SpecError("is empty: a Kinetics generations file starts with its metadata line", file=file)
    number, metadata = first
    if not isinstance(metadata, dict) or "prediction" in metadata:
        got = "a generation" if isinstance(metadata, dict) else type(metadata).__name__
        raise SpecError("expected the metadata object that starts a Kinetics generations file (the run's "
                        f"settings), got {got}", path=f"line {number}", file=file,
                        hint="the file lacks its first line; a Kinetics file is the metadata line, then one "
                             "generation per line")
    settings, source, where = kinetics_settings(metadata, path, number)
    attention = kinetics_attention(settings, file=file, where=where)
    if attention_name is not None and not attention_name.strip():
        raise SpecError("must not be empty", path="--attention-name", value=attention_name)
    name = attention_name or kinetics_attention_name(settings)
    if name == "dense" and attention["policy"] != "dense":
        raise SpecError("dense is built in and means dense attention; name this configuration otherwise",
                        path="--attention-name", value=name)
    check_attention(attention, path=name)
    result = ImportedSamples([], name, attention, source, metadata)
    prompts: dict[str, int] = {}
    batch: list[_Generation] = []
    for number, row in lines:
        batch.append(_generation(number, row, file))
        if len(batch) == _BATCH:
            _add_rows(result, batch, tokenizer, model, prompts, prompt_template, budgets)
            batch = []
    _add_rows(result, batch, tokenizer, model, prompts, prompt_template, budgets)
    if not result.rows:
        raise SpecError("has a metadata line and no generation", file=file)
    result.dropped_answers = _drop_contradicted_answers(result.rows)
    return result


def _drop_contradicted_answers(rows: list[dict[str, Any]]) -> int:
    """Set to null the answers that the file grades both right and wrong within one problem (the grader read
    another part of the text than the last ``\boxed{}``); a majority vote needs one verdict per answer.
    Returns how many were dropped."""
    verdicts: dict[tuple[str, str], set[int]] = {}
    for row in rows:
        if row["answer"] is not None:
            verdicts.setdefault((row["problem"], row["answer"]), set()).add(int(row["correct"]))
    dropped = 0
    for row in rows:
        if row["answer"] is not None and len(verdicts[(row["problem"], row["answer"])]) > 1:
            row["answer"] = None
            dropped += 1
    return dropped


def _add_rows(result: ImportedSamples, batch: list[_Generation], tokenizer: Any, model: str,
              prompts: dict[str, int], template: str | None, budgets: Sequence[int]) -> None:
    """Count the tokens of a batch of generations and add their rows to ``result``."""
    if not batch:
        return
    new = sorted({g.query for g in batch if g.problem not in prompts})
    texts = [template.replace("{query}", q) if template is not None else q for q in new]
    for query, encoding in zip(new, tokenizer.encode_batch(texts, add_special_tokens=True)):
        prompts[problem_id(query)] = max(len(encoding.ids), 1)
    outputs = tokenizer.encode_batch([g.text for g in batch], add_special_tokens=False)
    for generation, encoding in zip(batch, outputs):
        tokens = len(encoding.ids)
        if tokens == 0:
            result.empty_generations += 1
            tokens = 1
        sample = result.problems.get(generation.problem, 0)
        result.problems[generation.problem] = sample + 1
        found = boxed_answer(generation.text)
        row = {"model": model, "attention": result.attention_name, "problem": generation.problem,
               "sample": sample, "prompt_tokens": prompts[generation.problem], "output_tokens": tokens,
               "correct": generation.correct, "answer": found[0] if found else None}
        if budgets:
            needed = tokens
            if found is not None:  # tokens up to the one that holds the closing brace
                ends = [end for _, end in encoding.offsets]
                needed = min(bisect.bisect_left(ends, found[1]) + 1, tokens)
            row["budgets"] = [[b, int(generation.correct and needed <= b)] for b in budgets]
        result.rows.append(row)


# ----------------------------------------------------------------------------------------- writing

def rows_jsonl(rows: Sequence[Mapping[str, Any]]) -> str:
    """Scored-sample rows as JSONL text, one object per line."""
    return "".join(json.dumps(row) + "\n" for row in rows)


def attention_yaml(attention: Mapping[str, Mapping[str, Any]], header: str) -> str:
    """An attention file (``attention: {NAME: mapping}``) with a comment header."""
    import yaml

    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + yaml.safe_dump({"attention": {k: dict(v) for k, v in attention.items()}}, sort_keys=False)


def attention_file_of(samples: str | Path) -> Path:
    """The attention file beside a samples file: ``<stem>.attention.yaml``."""
    samples = Path(samples)
    return samples.with_name(samples.stem + ".attention.yaml")
