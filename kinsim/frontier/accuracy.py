"""Accuracy of a test-time strategy on one problem, from its scored samples; a strategy's accuracy is the
mean over problems.

* **Best-of-N coverage** (``best_of_n``): the chance that at least one of N samples is correct, estimated
  without bias from all ``n`` samples of the problem of which ``c`` are correct (Chen et al. 2021, the
  Codex paper, arXiv 2107.03374, eq. 1)::

      pass@N = 1 - C(n - c, N) / C(n, N)

  the chance that N samples drawn without replacement from the n are all wrong, subtracted from 1. It
  assumes an oracle verifier picks a correct sample when there is one.
* **Majority voting** (``majority``): the answer given most often among the first N samples (by sample
  index) is the strategy's answer. Samples without an answer do not vote; with none, the credit is 0.
  **Ties**: when k answers share the largest count, the credit is the share of them that is correct
  (j/k for j correct answers among the k): the expected credit of breaking the tie uniformly at random.
  So a tie between one correct and one wrong answer scores 1/2, on any order of the samples.
* **Long chain of thought** (``long_cot``): the share of the problem's samples correct when cut at the
  budget; N = 1 per task.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def pass_at(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of a problem with ``n`` samples of which ``c`` are correct (``0 <= c <= n``,
    ``1 <= k <= n``), exact: integer binomials, one division."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k holds a correct sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_credit(answers: Sequence[str | None], correct: Sequence[int]) -> float:
    """Credit of majority voting over these samples (in the order given; pass the first N): 1 when the
    most frequent answer is correct, 0 when wrong, j/k for a tie of k answers of which j are correct."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0.0
    right = {a for a, c in zip(answers, correct) if a is not None and c}
    top = max(counts.values())
    tied = [a for a, count in counts.items() if count == top]
    return sum(a in right for a in tied) / len(tied)


def mean_correct(correct: Sequence[int]) -> float:
    """Share of samples correct (a long chain of thought's accuracy on one problem at one budget)."""
    if not len(correct):
        raise ValueError("no samples")
    return sum(correct) / len(correct)
