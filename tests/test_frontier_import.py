"""``kinsim samples import kinetics``: Kinetics generations files into scored samples.

The tokenizer is made here: a word-level vocabulary with the ``Whitespace`` pre-tokenizer (a token is a run of
word characters or a run of other non-space characters) and ``<eos>`` as a special token, so every count
below is the number of such pieces, written out in a comment.
"""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
import yaml

from kinsim.cli import main
from kinsim.errors import SpecError
from kinsim.frontier.importers import boxed_answer, kinetics_attention, kinetics_attention_name

pytest.importorskip("tokenizers")

WORDS = "what is two plus three four so the answer".split()

#: The run summary LiteSys writes as line 1, with the sparse settings the cost scripts read from it.
BLOCK_META = {"task": "aime24", "pass@1": 50.0, "total_example": 4, "pass@4": 50.0,
              "attn_local": 0, "attn_block_topk": 64, "attn_block_size": 16, "attn_topk": None}
Q1, Q2 = "what is two plus three", "what is two plus four"
GENERATIONS = [
    # 10 tokens: so | the | answer | is | \ | boxed | { | 5 | } | <eos>; the boxed answer ends at token 9
    {"query": Q1, "prediction": ["so the answer is \\boxed{5}<eos>"], "choices": ["5"], "score": 100.0},
    # 7 tokens: so | \ | boxed | { | 4 | } | <eos>
    {"query": Q1, "prediction": ["so \\boxed{4}<eos>"], "choices": ["5"], "score": 0.0},
    # 3 tokens: the | answer | <eos>; no boxed answer
    {"query": Q2, "prediction": ["the answer<eos>"], "choices": ["6"], "score": 0},
    # 5 tokens: \ | boxed | { | 5 | } (cut before its end-of-sequence token)
    {"query": Q1, "prediction": ["\\boxed{5}"], "choices": ["5"], "score": 100},
]


@pytest.fixture
def tokenizer_file(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["<eos>"])
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def write_generations(path, metadata, generations, raw_lines=()):
    lines = ([json.dumps(metadata)] if metadata is not None else []) + [json.dumps(g) for g in generations]
    path.write_text("\n".join([*lines, *raw_lines]) + "\n", encoding="utf-8")
    return path


def run_import(tmp_path, gen, tokenizer_file, *extra, out="samples.jsonl"):
    return main(["samples", "import", "kinetics", str(gen), "--model", "qwen3-8b", "--tokenizer",
                 str(tokenizer_file), "--out", str(tmp_path / out), *extra])


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tokens_scores_answers_and_block_topk_attention(tmp_path, tokenizer_file, capsys):
    gen = write_generations(tmp_path / "gen.jsonl", BLOCK_META, GENERATIONS)
    assert run_import(tmp_path, gen, tokenizer_file, "--budgets", "5,10") == 0
    rows = read_rows(tmp_path / "samples.jsonl")
    p1 = hashlib.sha256(Q1.encode()).hexdigest()[:12]
    p2 = hashlib.sha256(Q2.encode()).hexdigest()[:12]
    name = "local0_block16_blocktopk64"
    # prompts: what | is | two | plus | three = 5 tokens; "four" is in the vocabulary too: 5 tokens
    assert [(r["problem"], r["sample"], r["prompt_tokens"], r["output_tokens"], r["correct"], r["answer"])
            for r in rows] == [(p1, 0, 5, 10, 1, "5"), (p1, 1, 5, 7, 0, "4"), (p2, 0, 5, 3, 0, None),
                               (p1, 2, 5, 5, 1, "5")]
    assert {r["model"] for r in rows} == {"qwen3-8b"} and {r["attention"] for r in rows} == {name}
    # budgets: the first sample's answer ends at token 9 (> 5, <= 10); the last one's at token 5 (<= 5);
    # wrong samples are wrong at every budget
    assert [r["budgets"] for r in rows] == [[[5, 0], [10, 1]], [[5, 0], [10, 0]], [[5, 0], [10, 0]],
                                            [[5, 1], [10, 1]]]
    attention = yaml.safe_load((tmp_path / "samples.attention.yaml").read_text())
    # Kinetics' block top-k: 64 blocks of 16, local window 0, and the 4 sink tokens LiteSys always keeps
    assert attention == {"attention": {name: {"policy": "block_topk", "block_size": 16, "top_k": 64,
                                              "local_window": 0, "sink_tokens": 4}}}
    out = capsys.readouterr().out
    assert "wrote 4 samples of 2 problems" in out and "from the metadata line" in out


def test_prompt_template_and_dense_metadata(tmp_path, tokenizer_file):
    meta = {**BLOCK_META, "attn_local": None, "attn_block_topk": None}  # attn_local null: dense (Kinetics' rule)
    gen = write_generations(tmp_path / "gen.jsonl", meta, GENERATIONS[:1])
    template = tmp_path / "prompt.txt"
    template.write_text("<eos>so {query} is", encoding="utf-8")  # <eos> | so | 5 words | is = 8 tokens
    assert run_import(tmp_path, gen, tokenizer_file, "--prompt-template", str(template)) == 0
    [row] = read_rows(tmp_path / "samples.jsonl")
    assert row["attention"] == "dense" and row["prompt_tokens"] == 8 and "budgets" not in row
    # dense is built in: the attention file defines nothing
    assert yaml.safe_load((tmp_path / "samples.attention.yaml").read_text()) == {"attention": {}}


def test_settings_from_the_file_name_when_the_metadata_has_none(tmp_path, tokenizer_file, capsys):
    summary = {"task": "aime24", "pass@1": 50.0, "total_example": 4, "pass@32": 50.0}  # LiteSys's summary only
    gen = write_generations(tmp_path / "aime24_qwen3-8b_local128_topk256.jsonl", summary, GENERATIONS)
    assert run_import(tmp_path, gen, tokenizer_file) == 0
    attention = yaml.safe_load((tmp_path / "samples.attention.yaml").read_text())["attention"]
    assert attention == {"local128_topk256": {"policy": "topk", "token_budget": 388}}  # 256 + 128 + 4 sink
    assert "from the file name (aime24_qwen3-8b_local128_topk256)" in capsys.readouterr().out


@pytest.mark.parametrize("settings, expected", [
    ({}, {"policy": "dense"}),
    ({"attn_local": None, "attn_topk": None}, {"policy": "dense"}),
    ({"attn_local": 16, "attn_block_topk": 4, "attn_block_size": 64},
     {"policy": "block_topk", "block_size": 64, "top_k": 4, "local_window": 16, "sink_tokens": 4}),
    ({"attn_local": 0, "attn_block_topk": 64},  # LiteSys's default block size, 16
     {"policy": "block_topk", "block_size": 16, "top_k": 64, "local_window": 0, "sink_tokens": 4}),
    ({"attn_local": 0, "attn_topk": 1024}, {"policy": "topk", "token_budget": 1028}),  # 1024 + 0 + 4
    ({"attn_local": 32, "attn_random_select": 96}, {"policy": "topk", "token_budget": 132}),  # 96 + 32 + 4
    ({"attn_local": 512}, {"policy": "sliding_window", "window": 512, "sink_tokens": 4}),
])
def test_attention_mapping(settings, expected):
    assert kinetics_attention(settings) == expected


@pytest.mark.parametrize("settings, message", [
    ({"attn_local": 0, "attn_block_topk": 64, "attn_stride": 8}, "line 1.attn_stride: has no kinsim attention"),
    ({"attn_local": 0, "attn_topk": 64, "attn_block_topk": 4}, "only one of attn_topk"),
    ({"attn_topk": 64}, "line 1.attn_local: attn_local must be set"),
    ({"attn_local": 0, "attn_topk": 2.5}, "line 1.attn_topk: must be a whole number >= 1 or null, got 2.5"),
])
def test_attention_settings_refused(settings, message):
    with pytest.raises(SpecError, match=message):
        kinetics_attention(settings)


def test_attention_names():
    assert kinetics_attention_name({"attn_local": None}) == "dense"
    assert kinetics_attention_name({"attn_local": 0, "attn_block_topk": 64}) == "local0_block16_blocktopk64"
    assert kinetics_attention_name({"attn_local": 128}) == "local128"


def test_boxed_answer_takes_the_last_complete_one():
    # "\boxed{1} then " is 9 + 6 characters, "\boxed{" 7, "\frac{1}{2}" 11: the closing brace is at 33
    assert boxed_answer("\\boxed{1} then \\boxed{\\frac{1}{2}} done") == ("\\frac{1}{2}", 34)
    assert boxed_answer("\\boxed{7} and a cut \\boxed{12") == ("7", 9)
    assert boxed_answer("\\boxed{a \\boxed{b}") == ("b", 18)  # 7 + 2 + 9 characters: "}" is the 18th
    assert boxed_answer("no answer") is None and boxed_answer("\\boxed{ }") is None


@pytest.mark.parametrize("case", ["no metadata", "bad score", "not JSON", "bad prediction", "no query"])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, tokenizer_file, capsys, case):
    metadata, generations, raw = BLOCK_META, list(GENERATIONS), []
    if case == "no metadata":
        metadata, expected = None, "gen.jsonl: line 1: expected the metadata object"
    elif case == "bad score":
        generations[1] = {**generations[1], "score": 50}
        expected = "gen.jsonl: line 3.score: must be 0 or 100 (the Kinetics score of a wrong or right answer), got 50"
    elif case == "not JSON":
        raw, expected = ['{"query": "x", '], "gen.jsonl: line 6: not JSON"
    elif case == "bad prediction":
        generations[0] = {**generations[0], "prediction": ["a", "b"]}
        expected = "gen.jsonl: line 2.prediction: expected a list holding one generated text"
    else:
        generations[2] = {k: v for k, v in generations[2].items() if k != "query"}
        expected = "gen.jsonl: line 4.query: missing key"
    gen = write_generations(tmp_path / "gen.jsonl", metadata, generations, raw)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run_import(tmp_path, gen, tokenizer_file) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kinsim: error: ") and expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary


def test_a_bad_tokenizer_or_template_is_one_line(tmp_path, tokenizer_file, capsys):
    gen = write_generations(tmp_path / "gen.jsonl", BLOCK_META, GENERATIONS)
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.0"}', encoding="utf-8")
    assert run_import(tmp_path, gen, bad) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json: is not a tokenizer.json file of the tokenizers library" in err
    template = tmp_path / "prompt.txt"
    template.write_text("no placeholder", encoding="utf-8")
    assert run_import(tmp_path, gen, tokenizer_file, "--prompt-template", str(template)) == 2
    assert "prompt.txt: {query}: a prompt template must hold {query} exactly once" in capsys.readouterr().err
    assert not (tmp_path / "samples.jsonl").exists()


def test_append_builds_one_set_and_refuses_a_repeat(tmp_path, tokenizer_file, capsys):
    dense_meta = {**BLOCK_META, "attn_local": None, "attn_block_topk": None}
    dense = write_generations(tmp_path / "dense.jsonl", dense_meta, GENERATIONS)
    sparse = write_generations(tmp_path / "sparse.jsonl", BLOCK_META, GENERATIONS[:2])
    assert run_import(tmp_path, dense, tokenizer_file) == 0
    assert run_import(tmp_path, sparse, tokenizer_file, "--append") == 0
    rows = read_rows(tmp_path / "samples.jsonl")
    assert [r["attention"] for r in rows] == ["dense"] * 4 + ["local0_block16_blocktopk64"] * 2
    attention = yaml.safe_load((tmp_path / "samples.attention.yaml").read_text())["attention"]
    assert list(attention) == ["local0_block16_blocktopk64"]
    before = (tmp_path / "samples.jsonl").read_text()
    capsys.readouterr()
    assert run_import(tmp_path, sparse, tokenizer_file, "--append") == 2
    assert "--append: already holds model qwen3-8b, attention local0_block16_blocktopk64" in capsys.readouterr().err
    assert (tmp_path / "samples.jsonl").read_text() == before
    # the same name for another configuration is refused too
    assert run_import(tmp_path, dense, tokenizer_file, "--append", "--attention-name",
                      "local0_block16_blocktopk64") == 2
    assert "already defines local0_block16_blocktopk64 otherwise" in capsys.readouterr().err


def test_without_tokenizers_the_error_says_what_to_install(tmp_path, tokenizer_file, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers now raises ImportError
    gen = write_generations(tmp_path / "gen.jsonl", BLOCK_META, GENERATIONS)
    assert run_import(tmp_path, gen, tokenizer_file) == 2
    assert 'pip install "kinsim[frontier]"' in capsys.readouterr().err
    assert not (tmp_path / "samples.jsonl").exists()


def test_model_must_be_a_preset_or_a_file(tmp_path, tokenizer_file, capsys):
    gen = write_generations(tmp_path / "gen.jsonl", BLOCK_META, GENERATIONS)
    assert main(["samples", "import", "kinetics", str(gen), "--model", "qwen3-9b", "--tokenizer",
                 str(tokenizer_file), "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "--model: unknown model preset" in capsys.readouterr().err


def test_a_dense_only_import_runs_through_kinsim_frontier(tmp_path, tokenizer_file, capsys):
    dense_meta = {**BLOCK_META, "attn_local": None, "attn_block_topk": None}
    gen = write_generations(tmp_path / "gen.jsonl", dense_meta, GENERATIONS)
    assert run_import(tmp_path, gen, tokenizer_file) == 0
    assert main(["frontier", str(tmp_path / "samples.jsonl"), "--quiet"]) == 0  # attention: {} is no setting
    assert "best_of_n:" in capsys.readouterr().out


def test_append_checks_every_definition_of_the_existing_attention_file(tmp_path, tokenizer_file, capsys):
    gen = write_generations(tmp_path / "gen.jsonl", BLOCK_META, GENERATIONS)
    assert run_import(tmp_path, gen, tokenizer_file) == 0
    attention = tmp_path / "samples.attention.yaml"
    for bad, message in (("other: 5", "attention.other: expected a mapping"),
                         ("other: {policy: magic}", "attention.other")):
        attention.write_text(f"attention:\n  {bad}\n", encoding="utf-8")
        before = (tmp_path / "samples.jsonl").read_text()
        capsys.readouterr()
        assert run_import(tmp_path, gen, tokenizer_file, "--append", "--attention-name", "again") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err
        assert (tmp_path / "samples.jsonl").read_text() == before


def test_the_importer_refuses_what_kinsim_frontier_would(tmp_path, tokenizer_file, capsys):
    gen = write_generations(tmp_path / "gen.jsonl", BLOCK_META, GENERATIONS)
    assert run_import(tmp_path, gen, tokenizer_file, "--budgets", "5,99999999999") == 2
    assert "--budgets: budgets must be at most 16,777,216 tokens" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n", encoding="utf-8")
    assert main(["samples", "import", "kinetics", str(gen), "--model", str(notes), "--tokenizer",
                 str(tokenizer_file), "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "--model: is not a model kinsim frontier can read" in capsys.readouterr().err
    assert not (tmp_path / "s.jsonl").exists()


def test_an_answer_graded_right_and_wrong_is_dropped_from_the_vote(tmp_path, tokenizer_file, capsys):
    # the second generation boxes 5, as the first, but is graded wrong: 5 has no single verdict for problem 1
    graded = [GENERATIONS[0], {**GENERATIONS[1], "prediction": ["so \\boxed{5}<eos>"]}, GENERATIONS[2]]
    gen = write_generations(tmp_path / "gen.jsonl", BLOCK_META, graded)
    assert run_import(tmp_path, gen, tokenizer_file) == 0
    assert "2 answers dropped" in capsys.readouterr().err
    assert [r["answer"] for r in read_rows(tmp_path / "samples.jsonl")] == [None, None, None]
    assert main(["frontier", str(tmp_path / "samples.jsonl"), "--quiet"]) == 0
