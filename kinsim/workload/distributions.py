"""Token-length distributions for generated requests (prompt and output lengths).

Each distribution is a small spec class with a ``dist`` tag and a ``sample(rng, count)`` method that
returns whole token counts of at least 1. A bare number in YAML means a constant::

    prompt_tokens: 150
    output_tokens: {dist: lognormal, median: 11000, sigma: 0.6}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kinsim.errors import SpecError
from kinsim.limits import MAX_TOKENS
from kinsim.schema import at_least, at_most, check_fields, positive, spec_field

_TOKENS = at_most(MAX_TOKENS, "tokens: kinsim's cap, 2**24")


def _at_least_one(values: np.ndarray) -> np.ndarray:
    return np.maximum(np.rint(values), 1).astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class Constant:
    """Every draw is ``value``."""

    TAG_KEY: ClassVar[str] = "dist"
    KIND: ClassVar[str] = "constant"
    value: int = spec_field("The token count.", check=(at_least(1), _TOKENS))

    def __post_init__(self) -> None:
        check_fields(self)

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

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return _at_least_one(rng.normal(self.mean, self.std, size=count))

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

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return _at_least_one(rng.lognormal(np.log(self.median), self.sigma, size=count))

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
