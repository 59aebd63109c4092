"""`copy w1 w2 w3 w4 : w1 w2 w3 w4`: repeat a random span of tokens (induction)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from pydantic import Field, model_validator

from curation.skills.families.base import TemplateFamily, check_range
from curation.skills.families.template import Field as TemplateField
from curation.skills.families.tokens import TokenParams, alternation
from curation.skills.instance import Instance

MAX_SPAN = 32


class CopyingParams(TokenParams):
    vocab_size: int = Field(100, ge=2, le=10_000, description="Number of distinct tokens used.")
    min_len: int = Field(4, ge=1, le=MAX_SPAN, description="Fewest tokens in a span.")
    max_len: int = Field(8, ge=1, le=MAX_SPAN, description="Most tokens in a span.")

    @model_validator(mode="after")
    def _check(self) -> CopyingParams:
        check_range("min_len", self.min_len, "max_len", self.max_len)
        self.pick(self.vocab_size, "vocab_size")
        return self


class Copying(TemplateFamily[CopyingParams]):
    name = "copying"
    Params = CopyingParams

    def __init__(self, params: CopyingParams):
        self.tokens = params.pick(params.vocab_size, "vocab_size")
        token = alternation(self.tokens)
        span = TemplateField(f"{token}(?:\\s+{token}){{{params.min_len - 1},{params.max_len - 1}}}")
        super().__init__(
            params, "copy {span} : {copy}", {"span": span, "copy": span}, answer="copy"
        )

    def _render(self, tokens: tuple[str, ...] | list[str]) -> Instance:
        span = " ".join(tokens)
        return self.template.render({"span": span, "copy": span})

    @property
    def size(self) -> int:
        v = len(self.tokens)
        return sum(v**length for length in range(self.params.min_len, self.params.max_len + 1))

    def _enumerate(self) -> Iterator[Instance]:
        lengths = range(self.params.min_len, self.params.max_len + 1)
        return (
            self._render(tokens)
            for length in lengths
            for tokens in itertools.product(self.tokens, repeat=length)
        )

    def draw(self, rng: random.Random) -> Instance:
        length = rng.randint(self.params.min_len, self.params.max_len)
        return self._render([rng.choice(self.tokens) for _ in range(length)])
