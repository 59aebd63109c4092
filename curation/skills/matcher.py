"""One compiled matcher for a project's skills.

`find(text)` first scans the text with two `re2.Set`s: one holds every regex
detector (plus a pattern for the characters that make keyword matching need
the exact automaton), the other a prefilter for every keyword detector (a
pattern that matches wherever one of its keywords can). Two Sets, because RE2's
DFA for the union of both runs slower than the two passes. They say which
skills can match; most documents hit few, and pay for these passes alone. Each
skill that can match then gets its exact pass:

- a regex: RE2, non-overlapping and leftmost-first, exactly as `finditer`;
- keywords: one RE2 leftmost-longest alternation on texts where RE2 agrees with
  the keyword semantics (see `keywords.py`), else the skill's Aho-Corasick
  automaton. Either way: leftmost-longest, word boundaries, case folding.

Spans are character offsets into the str.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import NamedTuple

import re2

from curation.skills.detectors import KeywordsDetector
from curation.skills.instance import match_key
from curation.skills.keywords import (
    KeywordAutomaton,
    Span,
    prefilter_pattern,
    risky_chars,
    safe_pattern,
)
from curation.skills.regex import effective_pattern, re2_options
from curation.skills.spec import SkillSpec

SET_MAX_MEM = 512 << 20  # a budget, not an allocation: large keyword sets need room
# A lone surrogate (valid in JSON) has no UTF-8: matched as U+FFFD, one character of
# 3 bytes like its surrogatepass encoding, so character and byte offsets still hold.
_SURROGATES = re.compile("[\ud800-\udfff]")
_UNANCHORED = re2._Anchor.UNANCHORED


class Match(NamedTuple):
    start: int
    end: int
    key: str
    """Match key: hash of the normalised matched text (see `instance.match_key`)."""


def _byte_spans(regexp: re2._Regexp, data: bytes) -> list[Span]:
    """Spans of `regexp` in `data`, exactly as `finditer` gives them.

    Calls the compiled RE2 object under google-re2's wrapper directly (tested
    against `finditer` on random texts): `finditer` builds several Python
    objects per match, which costs more than the match when there are many.
    No pattern here matches the empty string (they are refused or generated),
    so the step past an empty match never splits a character.
    """
    match = regexp._regexp.Match
    spans: list[Span] = []
    position, end = 0, len(data)
    while position <= end:
        start, stop = match(_UNANCHORED, data, position, end)[0]
        if start < 0:
            break
        spans.append((start, stop))
        position = stop if stop > start else stop + 1
    return spans


def _char_spans(data: bytes, spans: list[Span]) -> list[Span]:
    """Byte spans (on character boundaries) as character spans, decoding only what lies between."""
    out: list[Span] = []
    byte_at = char_at = 0
    for start, stop in spans:
        char_at += len(data[byte_at:start].decode("utf-8"))
        first = char_at
        char_at += len(data[start:stop].decode("utf-8"))
        byte_at = stop
        out.append((first, char_at))
    return out


class _KeywordSkill:
    def __init__(self, detector: KeywordsDetector):
        self.detector = detector
        options = re2_options(capture=False)
        options.longest_match = True
        options.max_mem = SET_MAX_MEM
        pattern = safe_pattern(detector)
        self.safe = None if pattern is None else re2.compile(pattern, options)

    @cached_property
    def automaton(self) -> KeywordAutomaton:
        """Built on the first text that needs it: most corpora rarely do."""
        return KeywordAutomaton(self.detector)


def _compile_set(patterns: list[str]) -> re2.Set | None:
    if not patterns:
        return None
    options = re2_options(capture=False)
    options.max_mem = SET_MAX_MEM
    compiled = re2.Set.SearchSet(options)
    for pattern in patterns:
        compiled.Add(pattern)
    compiled.Compile()
    return compiled


class SkillMatcher:
    """Finds every skill of `specs` in a text; build once per worker, reuse per document."""

    def __init__(self, specs: Sequence[SkillSpec]):
        self.skill_ids = [spec.id for spec in specs]
        duplicates = sorted({i for i in self.skill_ids if self.skill_ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate skill ids: {', '.join(duplicates)}")
        options = re2_options(capture=False)  # spans only: lets RE2 answer from its DFAs
        self._regexes: list[tuple[int, re2._Regexp]] = []  # by index in the regex Set
        self._keywords: list[tuple[int, _KeywordSkill]] = []  # by index in the keyword Set
        regex_patterns: list[str] = []
        keyword_patterns: list[str] = []
        for index, spec in enumerate(specs):
            detector = spec.concrete_detector()
            if isinstance(detector, KeywordsDetector):
                self._keywords.append((index, _KeywordSkill(detector)))
                keyword_patterns.append(prefilter_pattern(detector))
            else:
                pattern = effective_pattern(detector.pattern, detector.case_sensitive)
                self._regexes.append((index, re2.compile(pattern, options)))
                regex_patterns.append(pattern)
        self._risky = len(regex_patterns)
        if keyword_patterns:
            regex_patterns.append(risky_chars())
        # Two Sets: one DFA for the union of everything would be slower than both.
        self._regex_set = _compile_set(regex_patterns)
        self._keyword_set = _compile_set(keyword_patterns)

    def find_spans(self, text: str) -> dict[int, list[Span]]:
        """Spans per skill index, for skills with at least one match."""
        if self._regex_set is None and self._keyword_set is None:
            return {}
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            text = _SURROGATES.sub("\ufffd", text)
            data = text.encode("utf-8")
        regex_hits = self._regex_set.Match(data) if self._regex_set else None
        keyword_hits = self._keyword_set.Match(data) if self._keyword_set else None
        if not regex_hits and not keyword_hits:
            return {}
        ascii_text = len(data) == len(text)  # then byte offsets are character offsets

        def spans_of(regexp: re2._Regexp) -> list[Span]:
            spans = _byte_spans(regexp, data)
            return spans if ascii_text else _char_spans(data, spans)

        found: dict[int, list[Span]] = {}
        for hit in regex_hits or ():
            if hit != self._risky:
                index, regexp = self._regexes[hit]
                found[index] = spans_of(regexp)
        risky = regex_hits is not None and self._risky in regex_hits
        for hit in keyword_hits or ():
            index, skill = self._keywords[hit]
            if risky:
                found[index] = skill.automaton.find(text)
            elif skill.safe is not None:
                found[index] = spans_of(skill.safe)
        return {index: spans for index, spans in sorted(found.items()) if spans}

    def find(self, text: str) -> dict[str, list[Match]]:
        """Matches per skill id, in the order of the specs, for skills with at least one match."""
        found = self.find_spans(text)
        if found and not text.isascii() and _SURROGATES.search(text):
            text = _SURROGATES.sub("\ufffd", text)  # as find_spans matched it
        return {
            self.skill_ids[index]: [Match(s, e, match_key(text[s:e])) for s, e in spans]
            for index, spans in found.items()
        }
