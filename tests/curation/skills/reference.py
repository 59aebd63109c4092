"""Slow, obviously-correct reference matching, to test the fast paths against.

Regexes: one RE2 `finditer` per skill on the str. Keywords: at each position,
the longest keyword that matches there (case and word boundaries checked
directly), then jump past it; otherwise move one character on.
"""

from __future__ import annotations

import random

import re2

from curation.skills.detectors import KeywordsDetector
from curation.skills.keywords import fold, is_word_char
from curation.skills.regex import effective_pattern, re2_options
from curation.skills.spec import SkillSpec


def _keyword_at(text: str, folded: str, at: int, keyword: str, detector: KeywordsDetector) -> bool:
    end = at + len(keyword)
    if end > len(text):
        return False
    if detector.case_sensitive:
        if text[at:end] != keyword:
            return False
    elif folded[at:end] != fold(keyword):
        return False
    if detector.word_boundaries:
        if is_word_char(keyword[0]) and at > 0 and is_word_char(text[at - 1]):
            return False
        if is_word_char(keyword[-1]) and end < len(text) and is_word_char(text[end]):
            return False
    return True


def leftmost_longest(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Non-overlapping spans: the earliest start wins, then the longest, then resume after it."""
    chosen: list[tuple[int, int]] = []
    position = 0
    for start, end in sorted(spans, key=lambda span: (span[0], -span[1])):
        if start >= position:
            chosen.append((start, end))
            position = end
    return chosen


def reference_keywords(text: str, detector: KeywordsDetector) -> list[tuple[int, int]]:
    by_prefix: dict[str, list[str]] = {}  # keywords by their first two folded characters
    for keyword in detector.keywords:
        by_prefix.setdefault(fold(keyword)[:2], []).append(keyword)
    folded = fold(text)
    spans = []
    at = 0
    while at < len(text):
        candidates = by_prefix.get(folded[at], []) + by_prefix.get(folded[at : at + 2], [])
        lengths = [len(k) for k in candidates if _keyword_at(text, folded, at, k, detector)]
        if lengths:
            spans.append((at, at + max(lengths)))
            at += max(lengths)
        else:
            at += 1
    return spans


def reference_find(specs: list[SkillSpec], text: str) -> dict[str, list[tuple[int, int]]]:
    found = {}
    for spec in specs:
        detector = spec.concrete_detector()
        if isinstance(detector, KeywordsDetector):
            spans = reference_keywords(text, detector)
        else:
            pattern = effective_pattern(detector.pattern, detector.case_sensitive)
            spans = [m.span() for m in re2.compile(pattern, re2_options()).finditer(text)]
        if spans:
            found[spec.id] = spans
    return found


_PIECES = [
    "the", "New", "new", "York", "york", "New York", "newyork", "Yorkshire", "cat", "Cat",
    "concatenate", "C++", "c++17", "café", "CAFÉ", "İstanbul", "ΟΔΟΣ", "οδος", "naïve", "_x",
    "2024-01-02", "1999-12-31", "3 + 4 mod 13 = 7", "12 + 1 mod 13 = 0", "cmp 47 52 : <",
    "cmp 9 9 : =", "a@b.org", "x", "xx", "foo_bar", "Foo", "🙂", "—", "’", "\n", "\t", " ", "  ",
    ".", ",", "(", ")", "-", "'", "12", "7", "mod", "=", "+", "tiger", "zebra", "<", ">", "Kelvin",
    "K", "ſ", "s", "Ⓐ", "ⓐ", "x²", "a\u0301",
]  # fmt: skip
_SAFE_PIECES = [p for p in _PIECES if all(c.isascii() or c in "🙂—’" for c in p)]


def random_text(rng: random.Random, pieces: int = 40, risky: bool = True) -> str:
    """Text made of pieces that detectors care about, joined by random separators.

    With `risky=False`, no non-ASCII word or cased characters: texts on which
    the keyword detectors take their RE2 path instead of the automaton.
    """
    choices = _PIECES if risky else _SAFE_PIECES
    out = []
    for _ in range(rng.randint(0, pieces)):
        out.append(rng.choice(choices))
        out.append(rng.choice(["", " ", " ", "\n", ", ", "-"]))
    return "".join(out)
