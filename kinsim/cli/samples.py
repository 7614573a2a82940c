"""``kinsim samples import kinetics``: scored generations of another tool into kinsim's scored-sample format.

``import kinetics GEN.jsonl --model MODEL --tokenizer tokenizer.json --out samples.jsonl``: read a
generations file of the Kinetics paper's public traces (a metadata line holding the sparse-attention
settings, then one line per generation with the problem, the generated text and a score of 0 or 100; see
:mod:`kinsim.frontier.importers`), count the prompt's and the generation's tokens with the model's
tokenizer file (the Hugging Face tokenizer.json; pip install "kinsim[frontier]"), and write one scored
sample per generation, with the attention configuration in samples.attention.yaml beside it. The file names
no model: --model gives it (a preset such as qwen3-8b, or a model file). Nothing is downloaded.

``--append`` adds the samples to an existing samples file and its attention file (one import per model and
attention configuration builds a whole set); a sample already there, or an attention name defined
otherwise, is refused.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.outputs import Outputs


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("samples", help="import scored generations as scored samples",
                                   description=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="samples_command", metavar="STEP", required=True)
    imported = commands.add_parser(
        "import", help="convert scored generations into a scored-sample file",
        description="Convert a generations file of the Kinetics paper's public traces into scored samples: "
                    "one row per generation with its prompt and output tokens (counted with the tokenizer "
                    "file), correct 0 or 1 and the final boxed answer; the attention settings of the file go "
                    "to <out stem>.attention.yaml. Needs pip install 'kinsim[frontier]'.")
    imported.add_argument("source", choices=("kinetics",), help="the format of the generations file")
    imported.add_argument("generations", metavar="GEN", help="generations file (JSONL)")
    imported.add_argument("--model", required=True,
                          help="the model that generated it: a preset name (qwen3-8b) or a model file")
    imported.add_argument("--tokenizer", required=True, metavar="FILE",
                          help="the model's tokenizer.json (Hugging Face tokenizers format)")
    imported.add_argument("--out", required=True, metavar="FILE", help="scored-sample file to write (.jsonl)")
    imported.add_argument("--attention-name", default=None, metavar="NAME",
                          help="the attention column's value (default from the settings: dense, "
                               "local0_block16_blocktopk64, ...)")
    imported.add_argument("--prompt-template", default=None, metavar="FILE",
                          help="text file with the prompt as the model saw it, {query} where the problem goes "
                               "(default: the problem's text alone)")
    imported.add_argument("--budgets", default=None, metavar="B1,B2,...",
                          help="generation budgets in tokens: add each sample's correctness when cut there "
                               "(right only if its final boxed answer ends within the budget)")
    imported.add_argument("--append", action="store_true",
                          help="add to an existing --out file and its attention file instead of replacing them")
    imported.set_defaults(run=run_import)


def run_import(args: argparse.Namespace) -> int:
    import sys

    from kinsim.frontier.importers import (
        attention_file_of,
        attention_yaml,
        import_kinetics,
        load_tokenizer,
        read_prompt_template,
        rows_jsonl,
    )

    out = Path(args.out)
    if out.suffix.lower() != ".jsonl":
        raise SpecError("must end in .jsonl (the importer writes JSONL)", path="--out", value=args.out)
    budgets = _budgets(args.budgets)
    model = _model_reference(args.model, out)
    with Outputs() as outputs:
        outputs.file("--out", out)
        attention_file = attention_file_of(out)
        outputs.file("attention file", attention_file)
        keys = _existing_keys(out) if args.append else set()
        existing_attention = _existing_attention(attention_file) if args.append else {}
        template = read_prompt_template(args.prompt_template) if args.prompt_template else None
        tokenizer = load_tokenizer(args.tokenizer)
        imported = import_kinetics(args.generations, tokenizer, model, attention_name=args.attention_name,
                                   prompt_template=template, budgets=budgets)
        definitions = _merged_attention(existing_attention, imported.attention_name, imported.attention,
                                        attention_file)
        _refuse_duplicates(keys, imported.rows, out)
        text = rows_jsonl(imported.rows)
        outputs.write("--out", lambda tmp: _write_samples(tmp, text, out if args.append else None))
        header = (f"Attention configurations of {out.name}, written by kinsim samples import (the last import: "
                  f"{imported.attention_name}, from {imported.attention_source} of {Path(args.generations).name}).")
        outputs.write_text("attention file", attention_yaml(definitions, header))
    if imported.empty_generations:
        print(f"kinsim: warning: {imported.empty_generations} generations had no text; each counted as 1 token",
              file=sys.stderr)
    if imported.dropped_answers:
        print(f"kinsim: warning: {imported.dropped_answers} answers dropped (no vote): the same boxed answer was "
              "graded right and wrong within a problem", file=sys.stderr)
    answers = sum(row["answer"] is not None for row in imported.rows)
    shown = ", ".join(f"{k} {v}" for k, v in imported.attention.items() if k != "policy")
    print(f"{'added' if args.append else 'wrote'} {len(imported.rows)} samples of {len(imported.problems)} "
          f"problems {'to' if args.append else 'in'} {out} (model {model}; {answers} with a boxed answer)")
    print(f"attention {imported.attention_name}: {imported.attention['policy']}"
          f"{' (' + shown + ')' if shown else ''}, from {imported.attention_source}; in {attention_file}")
    return 0


def _budgets(text: str | None) -> tuple[int, ...]:
    """The ``--budgets`` list: whole numbers >= 1, in increasing order, no repeats."""
    if text is None:
        return ()
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise SpecError("expected whole numbers of tokens separated by commas", path="--budgets",
                        value=text) from None
    from kinsim.limits import MAX_TOKENS

    if any(v < 1 for v in values) or values != sorted(set(values)):
        raise SpecError("budgets must be >= 1 and increasing", path="--budgets", value=text)
    if values[-1] > MAX_TOKENS:
        raise SpecError(f"budgets must be at most {MAX_TOKENS:,} tokens", path="--budgets", value=text)
    return tuple(values)


def _model_reference(value: str, out: Path) -> str:
    """``--model`` as the samples file carries it: a preset name as given, or a model file's path relative
    to the samples file's folder."""
    from kinsim.frontier.samples import resolve_model
    from kinsim.model.presets import preset_raw

    try:
        preset_raw(value, path="--model")
        return value
    except SpecError:
        if not Path(value).is_file():
            raise
    reference = os.path.relpath(Path(value).resolve(), out.resolve().parent)
    if os.sep not in reference and "/" not in reference:
        reference = f"./{reference}"  # beside the samples: a path, not a preset name
    try:  # as kinsim frontier will read it: a model file it can load
        resolve_model(reference, out.resolve().parent, "model", str(out))
    except SpecError as error:
        raise SpecError(f"is not a model kinsim frontier can read: {error}", path="--model", value=value) from None
    return reference


def _existing_attention(attention_file: Path) -> dict[str, Any]:
    """The definitions of an existing attention file (``--append``); none when there is no file."""
    from kinsim.yamlio import read_yaml_mapping

    if not attention_file.exists():
        return {}
    from kinsim.frontier.importers import check_attention

    definitions = read_yaml_mapping(attention_file).get("attention") or {}
    if not isinstance(definitions, dict):
        raise SpecError("expected a mapping of names to attention mappings", path="attention",
                        value=definitions, file=str(attention_file))
    for name, mapping in definitions.items():
        if not isinstance(mapping, dict):
            raise SpecError("expected a mapping of keys to values", path=f"attention.{name}", value=mapping,
                            file=str(attention_file))
        check_attention(mapping, path=f"attention.{name}", file=str(attention_file))
    return definitions


def _existing_keys(out: Path) -> set[tuple[Any, ...]]:
    """(model, attention, problem, sample) of each row of an existing samples file (``--append``), read
    line by line."""
    import json

    from kinsim.reading import open_checked

    keys: set[tuple[Any, ...]] = set()
    if not out.exists():
        return keys
    with open_checked(out, "trace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                keys.add((row["model"], row["attention"], str(row["problem"]), row["sample"]))
            except (ValueError, KeyError, TypeError):
                raise SpecError("is not a scored-sample row (needs model, attention, problem, sample)",
                                path=f"line {number}", file=str(out)) from None
    return keys


def _refuse_duplicates(keys: set[tuple[Any, ...]], rows: list[dict[str, Any]], out: Path) -> None:
    """Refuse new rows whose (model, attention, problem, sample) the existing samples file already holds."""
    for row in rows:
        key = (row["model"], row["attention"], row["problem"], row["sample"])
        if key in keys:
            raise SpecError(f"already holds model {key[0]}, attention {key[1]}, problem {key[2]}, sample {key[3]}",
                            path="--append", file=str(out), hint="import each model and attention once")


def _write_samples(tmp: Path, text: str, before: Path | None) -> None:
    """Write the samples file into ``tmp``: the existing file's bytes first (``--append``), then ``text``."""
    import shutil

    with open(tmp, "wb") as sink:
        if before is not None and before.exists():
            with open(before, "rb") as source:
                shutil.copyfileobj(source, sink)
            if sink.tell() and _last_byte(before) != b"\n":
                sink.write(b"\n")
        sink.write(text.encode("utf-8"))


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def _merged_attention(existing: dict[str, Any], name: str, attention: dict[str, Any],
                      attention_file: Path) -> dict[str, Any]:
    """The attention definitions after adding ``name`` (dense needs none); a name defined otherwise before
    is refused."""
    definitions = dict(existing)
    if name == "dense":
        return definitions
    if name in definitions and definitions[name] != attention:
        raise SpecError(f"already defines {name} otherwise", path=f"attention.{name}", value=definitions[name],
                        file=str(attention_file), hint="give this configuration another --attention-name")
    definitions[name] = attention
    return definitions
