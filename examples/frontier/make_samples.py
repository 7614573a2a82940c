"""A SYNTHETIC scored-sample set for the accuracy-cost frontier: made up by a stated model, not measured.

30 problems x 32 samples for six Qwen3 models (the presets qwen3-0.6b ... qwen3-32b), each with dense
attention and with block top-k (``block_topk64``: blocks of 16 tokens, the 64 best, the last 16 tokens
always read, as ``workloads/aime_bon32_blocktopk.yaml``): 11,520 rows in kinsim's scored-sample format,
written as ``samples.jsonl`` with ``samples.attention.yaml`` beside it. No model generated anything here;
the numbers come from the model below, so the frontier they give shows how kinsim reads such data, not
how Qwen3 performs.

The model (every constant is in :data:`SKILL` and the ``*_`` constants below):

- **Correctness: an item-response model.** Problem j has a difficulty ``d_j ~ Normal(1.0, 2.0)``; model m
  a skill ``s_m`` (:data:`SKILL`: rising steeply to 4B and slowly above, the shape of the Qwen3 series'
  published AIME scores, not their values); block top-k lowers it by :data:`SPARSE_SKILL_LOSS`. A sample is
  right with probability ``sigmoid(s_m - d_j)``. Dense and sparse samples of one model share their random
  draws (the same uniform number decides both), so a sample right with block top-k is right with dense
  attention too.
- **Output length: lognormal.** ``ln L = ln 10000 + 0.2 (d_j - s_m) + 0.4 [wrong] + ln 1.1 [block top-k]
  + 0.45 z``, ``z ~ Normal(0, 1)``: longer for harder problems and weaker models, longer when wrong (a wrong
  chain of thought wanders), 10% longer with block top-k; rounded, at least 256 tokens and cut at the
  generation limit of 32,768 tokens. **A sample cut at the limit is wrong** (it never reached an answer),
  whatever the draw said.
- **Prompt length:** a whole number of tokens uniform in [90, 260] per problem, the same for every model
  (the Qwen3 models share one tokenizer).
- **Answers, for majority voting:** each problem has a right answer (a whole number in [0, 999], as AIME's)
  and three distractors (distinct wrong whole numbers) with weights drawn from a flat Dirichlet; a right
  sample answers the right answer, a wrong one a distractor drawn by those weights.
- **Long chain of thought:** correctness at the budgets 2,048, 4,096, 8,192, 16,384 and 32,768 tokens.
  The rule: a sample is right at budget B when it is right and its whole generation fits (``L <= B``); the
  answer comes at the end of the chain of thought, so a sample cut short is wrong. No sample is marked
  otherwise.

Everything is drawn from NumPy's ``default_rng`` seeded with ``--seed`` (default 0): the same seed gives the
same bytes.

Run: ``python examples/frontier/make_samples.py [--out build/frontier/samples.jsonl] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

#: Skill of each model (logits of the item-response model), smallest to largest.
SKILL = {"qwen3-0.6b": -2.0, "qwen3-1.7b": 0.2, "qwen3-4b": 1.3, "qwen3-8b": 1.6, "qwen3-14b": 1.9,
         "qwen3-32b": 2.2}
#: How much block top-k lowers a model's skill.
SPARSE_SKILL_LOSS = 0.25
#: The attention configurations: dense (built in) and Kinetics' block top-k.
ATTENTION = {"block_topk64": {"policy": "block_topk", "block_size": 16, "top_k": 64, "local_window": 16,
                              "sink_tokens": 0}}
ATTENTION_NAMES = ("dense", "block_topk64")
PROBLEMS, SAMPLES = 30, 32
#: Difficulty of the problems: Normal(mean, standard deviation).
DIFFICULTY_MEAN, DIFFICULTY_SD = 1.0, 2.0
#: Output length: median at d = s, slope per unit of d - s, extra when wrong, factor with block top-k, spread.
LENGTH_MEDIAN, LENGTH_SLOPE, LENGTH_WRONG, LENGTH_SPARSE, LENGTH_SD = 10000.0, 0.2, 0.4, 1.1, 0.45
#: Shortest output and the generation limit (tokens).
MIN_OUTPUT, MAX_OUTPUT = 256, 32768
#: Prompt tokens per problem: uniform whole numbers in [low, high].
PROMPT_LOW, PROMPT_HIGH = 90, 260
#: Generation budgets of the long chain-of-thought column (tokens).
BUDGETS = (2048, 4096, 8192, 16384, 32768)
DISTRACTORS = 3


def problems(seed: int) -> dict[str, np.ndarray]:
    """What belongs to the problems, shared by every model: difficulty, prompt tokens, the right answer,
    the distractors and their weights (arrays over the problems)."""
    rng = np.random.default_rng([seed, 0])
    difficulty = rng.normal(DIFFICULTY_MEAN, DIFFICULTY_SD, PROBLEMS)
    prompt = rng.integers(PROMPT_LOW, PROMPT_HIGH + 1, PROBLEMS)
    answers = np.array([rng.choice(1000, DISTRACTORS + 1, replace=False) for _ in range(PROBLEMS)])
    weights = rng.dirichlet(np.ones(DISTRACTORS), PROBLEMS)
    return {"difficulty": difficulty, "prompt": prompt, "right": answers[:, 0], "distractors": answers[:, 1:],
            "weights": weights}


def model_samples(seed: int, index: int, skill: float, shared: dict[str, np.ndarray]) -> dict[str, dict]:
    """Correctness, length and answer of every sample of one model, per attention configuration (arrays of
    shape problems x samples). Both configurations use the same draws."""
    rng = np.random.default_rng([seed, 1 + index])
    shape = (PROBLEMS, SAMPLES)
    decide, spread, pick = rng.random(shape), rng.standard_normal(shape), rng.random(shape)
    d = shared["difficulty"][:, None]
    out = {}
    for name in ATTENTION_NAMES:
        sparse = name != "dense"
        s = skill - (SPARSE_SKILL_LOSS if sparse else 0.0)
        right = decide < 1.0 / (1.0 + np.exp(-(s - d)))
        log_length = (np.log(LENGTH_MEDIAN) + LENGTH_SLOPE * (d - s) + LENGTH_WRONG * ~right
                      + (np.log(LENGTH_SPARSE) if sparse else 0.0) + LENGTH_SD * spread)
        length = np.clip(np.rint(np.exp(log_length)), MIN_OUTPUT, MAX_OUTPUT).astype(np.int64)
        right &= length < MAX_OUTPUT  # cut at the limit: no answer reached
        cumulative = np.cumsum(shared["weights"], axis=1)[:, None, :]  # problems x 1 x distractors
        chosen = np.minimum((pick[:, :, None] >= cumulative).sum(axis=2), DISTRACTORS - 1)
        wrong_answer = np.take_along_axis(shared["distractors"], chosen, axis=1)
        answer = np.where(right, shared["right"][:, None], wrong_answer)
        out[name] = {"right": right, "length": length, "answer": answer}
    return out


def make_samples(seed: int = 0) -> list[dict[str, Any]]:
    """Every row of the set, by model (smallest first), attention, problem and sample."""
    shared = problems(seed)
    rows = []
    for index, (model, skill) in enumerate(SKILL.items()):
        drawn = model_samples(seed, index, skill, shared)
        for name in ATTENTION_NAMES:
            right, length, answer = drawn[name]["right"], drawn[name]["length"], drawn[name]["answer"]
            for p in range(PROBLEMS):
                for k in range(SAMPLES):
                    ok, n = int(right[p, k]), int(length[p, k])
                    rows.append({"model": model, "attention": name, "problem": p, "sample": k,
                                 "prompt_tokens": int(shared["prompt"][p]), "output_tokens": n, "correct": ok,
                                 "answer": str(int(answer[p, k])),
                                 "budgets": [[b, int(ok and n <= b)] for b in BUDGETS]})
    return rows


def attention_text(seed: int) -> str:
    """The attention file beside the samples."""
    import yaml

    return (f"# SYNTHETIC example (examples/frontier/make_samples.py, seed {seed}): the attention configurations\n"
            "# its samples name; dense is built in.\n"
            + yaml.safe_dump({"attention": ATTENTION}, sort_keys=False))


def write(out: Path, seed: int) -> list[dict[str, Any]]:
    """Write ``out`` (JSONL) and ``<out stem>.attention.yaml`` beside it, both or neither."""
    from kinsim.outputs import Outputs

    rows = make_samples(seed)
    attention = out.with_name(out.stem + ".attention.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    with Outputs() as outputs:
        outputs.file("--out", out)
        outputs.file("attention file", attention)
        outputs.write_text("--out", "".join(json.dumps(row) + "\n" for row in rows))
        outputs.write_text("attention file", attention_text(seed))
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "frontier" / "samples.jsonl",
                        help="samples file to write (.jsonl; default build/frontier/samples.jsonl)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    args = parser.parse_args(argv)
    rows = write(args.out, args.seed)
    print(f"wrote {len(rows)} SYNTHETIC samples ({len(SKILL)} models x {len(ATTENTION_NAMES)} attention x "
          f"{PROBLEMS} problems x {SAMPLES} samples) to {args.out}")
    for model in SKILL:
        line = "  ".join(f"{name} {_accuracy(rows, model, name):.3f}" for name in ATTENTION_NAMES)
        print(f"  {model:<11} pass@1 {line}")
    return rows


def _accuracy(rows: list[dict[str, Any]], model: str, attention: str) -> float:
    picked = [r["correct"] for r in rows if r["model"] == model and r["attention"] == attention]
    return sum(picked) / len(picked)


if __name__ == "__main__":
    main()
