"""Detector definitions: how an instance of a skill is found in running text."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from curation.skills.regex import MAX_PATTERN_CHARS, PatternError, compile_pattern

MAX_KEYWORDS = 100_000
MAX_KEYWORD_CHARS = 256
MAX_KEYWORDS_TOTAL_CHARS = 2_000_000  # what RE2 compiles into the matcher's prefilter in time

Keyword = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEYWORD_CHARS)]


class RegexDetector(BaseModel):
    """An RE2 pattern (linear time: no backreferences, no look-around).

    Matches are non-overlapping and leftmost-first, like `re.finditer`.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["regex"] = "regex"
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN_CHARS)
    case_sensitive: bool = True

    @field_validator("pattern")
    @classmethod
    def _compiles_with_re2(cls, pattern: str) -> str:
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        return pattern


class KeywordsDetector(BaseModel):
    """A set of literal strings.

    Overlapping hits resolve to leftmost-longest non-overlapping matches: scanning
    left to right, the match that starts first wins, the longest keyword wins
    among those starting there, and the scan resumes after it. With
    `word_boundaries`, a hit must not glue a word character of the keyword to a
    word character of the text (letters, digits and `_`, Unicode-aware): "cat"
    is not found in "concatenate", while "C++" is found in "C++17" because its
    last character is not a word character. Case folding is `str.lower` per
    character, so offsets into the original text stay exact.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["keywords"] = "keywords"
    keywords: list[Keyword] = Field(min_length=1, max_length=MAX_KEYWORDS)
    case_sensitive: bool = False
    word_boundaries: bool = True

    @field_validator("keywords")
    @classmethod
    def _no_blank_keywords(cls, keywords: list[str]) -> list[str]:
        total = sum(map(len, keywords))
        if total > MAX_KEYWORDS_TOTAL_CHARS:
            raise ValueError(
                f"keywords have {total:,} characters in all; the limit is "
                f"{MAX_KEYWORDS_TOTAL_CHARS:,}"
            )
        for index, keyword in enumerate(keywords):
            if not keyword.strip():
                raise ValueError(
                    f"keywords[{index}] is blank; every keyword needs a visible character"
                )
        return keywords


class BuiltinDetector(BaseModel):
    """The detector of the skill's generator family (see `families`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["builtin"] = "builtin"


Detector = Annotated[
    RegexDetector | KeywordsDetector | BuiltinDetector, Field(discriminator="kind")
]
ConcreteDetector = RegexDetector | KeywordsDetector
