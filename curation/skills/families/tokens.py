"""Shared by the families whose instances are made of vocabulary tokens."""

from __future__ import annotations

import random

import re2
from pydantic import Field, field_validator

from curation.skills.families.base import FamilyParams
from curation.skills.families.words import WORDS

MAX_VOCABULARY = 100_000
MAX_TOKEN_CHARS = 64
_TOKEN = re2.compile(r"[A-Za-z0-9_]+")


class TokenParams(FamilyParams):
    vocabulary: list[str] | None = Field(
        None,
        max_length=MAX_VOCABULARY,
        description="Tokens to draw items from: distinct ASCII words ([A-Za-z0-9_]+). "
        "Default: a shipped list of plain lowercase English words.",
    )
    seed: int = Field(0, description="Seed of the draw of items from the vocabulary.")

    @field_validator("vocabulary")
    @classmethod
    def _tokens(cls, vocabulary: list[str] | None) -> list[str] | None:
        if vocabulary is None:
            return None
        for index, token in enumerate(vocabulary):
            # ASCII only: RE2's \b, which delimits tokens in the detector, is ASCII.
            if len(token) > MAX_TOKEN_CHARS or _TOKEN.fullmatch(token) is None:
                raise ValueError(
                    f"vocabulary[{index}] = {token[:80]!r} must be 1-{MAX_TOKEN_CHARS} "
                    "ASCII letters, digits or underscores"
                )
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("vocabulary items must be distinct")
        return vocabulary

    def pick(self, count: int, what: str) -> list[str]:
        """`count` distinct tokens drawn with `seed`; their order is part of the draw."""
        vocabulary = self.vocabulary or list(WORDS)
        if count > len(vocabulary):
            raise ValueError(
                f"{what}={count} needs at least {count} vocabulary items; "
                f"there are {len(vocabulary)}"
            )
        return random.Random(self.seed).sample(vocabulary, count)


def alternation(tokens: list[str]) -> str:
    """RE2 pattern matching any one of `tokens`."""
    return "(?:" + "|".join(re2.escape(token) for token in tokens) + ")"
