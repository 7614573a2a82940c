"""Token-length distributions for generated requests (prompt and output lengths).

Each distribution is a small spec class with a ``dist`` tag and a ``sample(rng, count)`` method that
returns whole token counts of at least 1. A bare number in YAML means a constant::

    prompt_tokens: 150
    output_tokens: {dist: lognormal, median: 11000, sigma: 0.6}

**Valid values.** A token count is a whole number from 1 to :data:`~kinsim.limits.MAX_TOKENS`
(2**24). Two checks keep every draw in that range:

1. *Up front* (when the workload is read): a distribution whose upper tail reaches past MAX_TOKENS is
   refused, naming the parameter. The test is its quantile at 1 - 1e-9 (:data:`TAIL_Z` = 5.998 standard
   deviations of the normal, or of the logarithm for the log-normal): ``median x exp(5.998 sigma)``,
   ``mean + 5.998 std``, ``high``, ``value``, the largest listed value. So ``{dist: lognormal, median:
   11000, sigma: 60}`` (most of whose draws overflow int64) is refused, while a wide but sane
   ``sigma: 1.5`` passes.
2. *Every draw*: samples are drawn in float64 and checked finite and at most MAX_TOKENS *before* they are
   rounded, cast to int64 or capped (``max_output_tokens``); a draw outside the range (possible only in the
   tail beyond the 1e-9 quantile) is an error naming the key, never a silently wrapped number.

Values below 1 are not errors: the normal is clipped below at 1 by definition, as documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kinsim.errors import SpecError
from kinsim.limits import MAX_TOKENS
from kinsim.schema import at_least, at_most, check_fields, positive, spec_field

_TOKENS = at_most(MAX_TOKENS, "tokens: kinsim's cap, 2**24")

#: The one-sided tail the up-front check allows past MAX_TOKENS: 1e-9 of the draws.
TAIL = 1e-9
#: The standard normal's quantile at 1 - TAIL.
TAIL_Z = 5.998


def _at_least_one(values: np.ndarray) -> np.ndarray:
    """Float draws to whole token counts, at least 1 (after :func:`check_draws`)."""
    return np.maximum(np.rint(values), 1).astype(np.int64)


def check_draws(values: np.ndarray) -> np.ndarray:
    """``values`` (float64 draws) when every one is finite and at most MAX_TOKENS, else a
    :class:`SpecError` (without a path: the caller knows the key) naming the first bad draw."""
    bad = ~(np.abs(values) <= MAX_TOKENS)  # NaN compares false: caught too
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise SpecError(f"drew {float(values[index]):.6g} tokens (draw {index + 1} of {len(values):,}), outside "
                        f"1 to {MAX_TOKENS:,}, the most a request may have",
                        hint="narrow the distribution")
    return values


def _check_tail(quantile: float, path: str, value: object) -> None:
    """Refuse a distribution whose 1 - TAIL quantile (``quantile``, tokens) is past MAX_TOKENS."""
    if not quantile <= MAX_TOKENS:  # NaN fails too
        raise SpecError(f"gives draws past {MAX_TOKENS:,} tokens, the most a request may have (its 1 - {TAIL:g} "
                        f"quantile is {quantile:.3g} tokens)", path=path, value=value,
                        hint="a token-length distribution must keep all but 1e-9 of its draws within the bound")


@dataclass(frozen=True, kw_only=True)
class Constant:
    """Every draw is ``value``."""

    TAG_KEY: ClassVar[str] = "dist"
    KIND: ClassVar[str] = "constant"
    value: int = spec_field("The token count.", check=(at_least(1), _TOKENS))

    def __post_init__(self) -> None:
        check_fields(self)
        _check_tail(self.value, "value", self.value)

    def upper_quantile(self) -> float:
        """The 1 - TAIL quantile, tokens."""
        return float(self.value)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return np.full(count, self.value, dtype=np.int64)

    def expected_value(self) -> float:
        """Expected value before any cap, tokens."""
        return float(self.value)


@dataclass(frozen=True, kw_only=True)
class Uniform:
    """Whole numbers drawn uniformly from ``low`` to ``high`` inclusive."""

    TAG_KEY: ClassVar[str] = "dist"
    KIND: ClassVar[str] = "uniform"
    low: int = spec_field("Smallest token count.", check=(at_least(1), _TOKENS))
    high: int = spec_field("Largest token count.", check=(at_least(1), _TOKENS))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.high < self.low:
            raise SpecError(f"must be at least low ({self.low})", path="high", value=self.high)
        _check_tail(self.high, "high", self.high)

    def upper_quantile(self) -> float:
        return float(self.high)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=count, dtype=np.int64)

    def expected_value(self) -> float:
        return (self.low + self.high) / 2


@dataclass(frozen=True, kw_only=True)
class Normal:
    """A normal distribution rounded to whole tokens and clipped below at 1."""

    TAG_KEY: ClassVar[str] = "dist"
    KIND: ClassVar[str] = "normal"
    mean: float = spec_field("Mean, tokens.", check=positive)
    std: float = spec_field("Standard deviation, tokens.", check=positive)

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.mean <= MAX_TOKENS:
            _check_tail(self.mean, "mean", self.mean)
        _check_tail(self.upper_quantile(), "std", self.std)

    def upper_quantile(self) -> float:
        return self.mean + TAIL_Z * self.std

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return _at_least_one(check_draws(rng.normal(self.mean, self.std, size=count)))

    def expected_value(self) -> float:
        return self.mean


@dataclass(frozen=True, kw_only=True)
class LogNormal:
    """A log-normal distribution: ``exp(N(log(median), sigma^2))``, rounded, at least 1. Reasoning
    lengths are right-skewed with a long tail, which this shape follows."""

    TAG_KEY: ClassVar[str] = "dist"
    KIND: ClassVar[str] = "lognormal"
    median: float = spec_field("Median, tokens.", check=positive)
    sigma: float = spec_field("Standard deviation of the logarithm.", check=positive)

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.median <= MAX_TOKENS:
            _check_tail(self.median, "median", self.median)
        _check_tail(self.upper_quantile(), "sigma", self.sigma)

    def upper_quantile(self) -> float:
        with np.errstate(over="ignore"):
            return float(self.median * np.exp(min(TAIL_Z * self.sigma, 800.0)))  # inf, not an overflow warning

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        with np.errstate(over="ignore"):  # an overflow is an inf draw, refused by check_draws
            draws = rng.lognormal(np.log(self.median), self.sigma, size=count)
        return _at_least_one(check_draws(draws))

    def expected_value(self) -> float:
        return float(self.median * np.exp(self.sigma**2 / 2))


@dataclass(frozen=True, kw_only=True)
class Listed:
    """Explicit token counts, used in order and repeated when more draws are needed."""

    TAG_KEY: ClassVar[str] = "dist"
    KIND: ClassVar[str] = "list"
    values: tuple[int, ...] = spec_field("Token counts, used in order.", check=(at_least(1), _TOKENS))

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.values:
            raise SpecError("must list at least one token count", path="values", value=[])
        largest = max(range(len(self.values)), key=self.values.__getitem__)
        _check_tail(self.values[largest], f"values[{largest}]", self.values[largest])

    def upper_quantile(self) -> float:
        return float(max(self.values))

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return np.resize(np.asarray(self.values, dtype=np.int64), count)

    def expected_value(self) -> float:
        return float(np.mean(self.values))


LengthDistribution = Constant | Uniform | Normal | LogNormal | Listed


def constant_shorthand(value: object) -> dict | None:
    """``150`` in YAML abbreviates ``{dist: constant, value: 150}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"dist": "constant", "value": value}
    return None


def length_field(doc: str) -> LengthDistribution:
    """A spec field holding a token-length distribution (or a bare number for a constant)."""
    return spec_field(doc, tag="dist", shorthand=constant_shorthand)
