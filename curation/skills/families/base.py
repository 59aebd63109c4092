"""What every built-in generator family provides."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from curation.skills.detectors import ConcreteDetector, RegexDetector
from curation.skills.families.template import Field, Template
from curation.skills.instance import Instance

MAX_LABELS = 1000
"""A closed answer set larger than this is treated as open (no forced choice): scoring a
choice costs one forward pass per label and probe instance."""

ENUMERATE_LIMIT = 1_000_000
"""A family with at most this many distinct instances is "finite": it can be
enumerated, and its probe set can be a fraction of it."""

P = TypeVar("P", bound=BaseModel)


class FamilyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Family(ABC, Generic[P]):
    """A generator of fresh instances of one skill, deterministic for a seeded `rng`."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: P):
        self.params = params

    @property
    @abstractmethod
    def size(self) -> int:
        """Number of distinct instances."""

    @property
    def finite(self) -> bool:
        """Small enough to enumerate (at most ENUMERATE_LIMIT instances)."""
        return self.size <= ENUMERATE_LIMIT

    def enumerate(self) -> Iterator[Instance]:
        """Every instance once, in a fixed order; only for finite families."""
        if not self.finite:
            raise ValueError(
                f"family {self.name!r} has {self.size:,} instances with these params; "
                f"only families of at most {ENUMERATE_LIMIT:,} can be enumerated"
            )
        return self._enumerate()

    @abstractmethod
    def _enumerate(self) -> Iterator[Instance]: ...

    @abstractmethod
    def draw(self, rng: random.Random) -> Instance:
        """One instance drawn at random (with replacement)."""

    def sample(self, rng: random.Random, n: int) -> list[Instance]:
        return [self.draw(rng) for _ in range(n)]

    @abstractmethod
    def detector(self) -> ConcreteDetector:
        """The builtin detector: finds this family's rendered instances in running text."""

    @abstractmethod
    def parse(self, text: str) -> tuple[str, str] | None:
        """(prompt, answer) of a detector match, or None if `text` is not one."""

    def labels(self) -> list[str] | None:
        """The closed set of answers every instance chooses from, or None for open answers.

        Where it is a list, a readout can score the skill as a forced choice among these
        labels (training.evaluate), apart from whether the model emits a label at all.
        """
        return None

    def stratum(self, instance: Instance) -> str | None:
        """The hard stratum `instance` belongs to, or None.

        A hard stratum holds the instances that a cheaper heuristic gets wrong (for
        two-digit comparison: equal tens digits, where a tens-digit-only rule guesses), so
        a readout on it tells "learned the rule" from "learned a shortcut".
        """
        return None


class TemplateFamily(Family[P]):
    """A family whose instances are a template rendered with field values."""

    def __init__(self, params: P, template: str, fields: dict[str, Field], answer: str):
        super().__init__(params)
        self.template = Template(template, fields, answer)

    def detector(self) -> ConcreteDetector:
        # Generated, not user input: skip the user limits (a token alternation can
        # be longer than MAX_PATTERN_CHARS); RE2 compiled it in Template already.
        return RegexDetector.model_construct(pattern=self.template.pattern, case_sensitive=True)

    def parse(self, text: str) -> tuple[str, str] | None:
        return self.template.parse(text)

    def values(self, instance: Instance) -> dict[str, str]:
        """The template field values `instance` was rendered with."""
        values = self.template.values(instance.text)
        if values is None:
            raise ValueError(f"{instance.text!r} is not an instance of family {self.name!r}")
        return values


class OperandPairFamily(TemplateFamily[P]):
    """A template family over every pair (a, b) of integers in [low, high]."""

    low: int
    high: int

    @abstractmethod
    def _render(self, a: int, b: int) -> Instance: ...

    @property
    def size(self) -> int:
        return (self.high - self.low + 1) ** 2

    def _enumerate(self) -> Iterator[Instance]:
        operands = range(self.low, self.high + 1)
        return (self._render(a, b) for a in operands for b in operands)

    def draw(self, rng: random.Random) -> Instance:
        return self._render(rng.randint(self.low, self.high), rng.randint(self.low, self.high))


def check_range(low_name: str, low: int, high_name: str, high: int) -> None:
    if high < low:
        raise ValueError(f"{high_name} ({high}) must be at least {low_name} ({low})")


def digits_range(min_digits: int, max_digits: int) -> tuple[int, int]:
    """Smallest and largest integer written with min_digits..max_digits digits."""
    return (0 if min_digits == 1 else 10 ** (min_digits - 1)), 10**max_digits - 1


def digits_pattern(min_digits: int, max_digits: int) -> str:
    """RE2 pattern of an integer with min_digits..max_digits digits and no leading zero."""
    if min_digits == 1:
        return f"(?:0|[1-9]\\d{{0,{max_digits - 1}}})"
    return f"[1-9]\\d{{{min_digits - 1},{max_digits - 1}}}"
