"""One compiled matcher for a project's skills.

`find(text)` first scans the text with one `re2.Set` holding, per skill, a
pattern that matches wherever the skill can: the regex itself, or for a keyword
detector a looser alternation of its keywords (plus one pattern for the
characters that make keyword matching need the exact automaton). One Set for
all: RE2 runs the union's DFA over a text about as fast as one of its parts
(on English text, 1.1-1.8x faster than a Set of regexes, then one of keywords).
The Set says which skills can match; most documents hit none, and pay for this
pass alone (`may_match` asks just that, on the UTF-8 bytes). Each skill that
can match then gets its exact pass, compiled on first use:

- a regex: RE2, non-overlapping and leftmost-first, exactly as `finditer`;
- keywords: one RE2 leftmost-longest alternation on texts where RE2 agrees with
  the keyword semantics (see `keywords.py`), else the skill's Aho-Corasick
  automaton, which also takes the first texts of a large set (see
  `_KeywordSkill`). Either way: leftmost-longest, word boundaries, case folding.

`find` gives every match (a scan counts them all; `find_keyed` gives the same as spans
and keys); `first_matches` gives the first few of one skill with work bounded by what it
returns (a preview).
Spans are character offsets into the str.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from typing import NamedTuple

import re2

from curation.skills.detectors import ConcreteDetector, KeywordsDetector
from curation.skills.factors import Factor, detector_factors, factors_version, keyword_factors
from curation.skills.instance import match_key
from curation.skills.keywords import (
    KeywordAutomaton,
    Span,
    TooManyHits,
    is_word_char,
    prefilter_pattern,
    risky_chars,
    safe_pattern,
)
from curation.skills.regex import effective_pattern, re2_options
from curation.skills.screen import SHORT_KEYWORD, FactorScreen, read_cached, write_cached
from curation.skills.spec import SkillSpec

SET_MAX_MEM = 512 << 20  # a budget, not an allocation: large keyword sets need room
RE2_SECONDS_PER_CHAR = 1e-6  # building a keyword alternation, measured; see _KeywordSkill
# `first_matches` stops the automaton after this many keyword hits, ~0.3 s (150 ns each):
# 2 per character of a 1 MiB preview text. English makes 0.002 a character with 441 names,
# 0.95 with each of its own words as a keyword; nested keywords ("é", "éé", ...) one per keyword.
FIRST_MATCHES_MAX_HITS = 2_000_000
# A lone surrogate (valid in JSON) has no UTF-8: matched as U+FFFD, one character of
# 3 bytes like its surrogatepass encoding, so character and byte offsets still hold.
_SURROGATES = re.compile("[\ud800-\udfff]")
_UNANCHORED = re2._Anchor.UNANCHORED


class Match(NamedTuple):
    start: int
    end: int
    key: str
    """Match key: hash of the normalised matched text (see `instance.match_key`)."""


def _byte_spans(regexp: re2._Regexp, data: bytes) -> Iterator[Span]:
    """Spans of `regexp` in `data`, exactly as `finditer` gives them, one search per span.

    Calls the compiled RE2 object under google-re2's wrapper directly (tested
    against `finditer` on random texts): `finditer` builds several Python
    objects per match, which costs more than the match when there are many.
    No pattern here matches the empty string (they are refused or generated),
    so the step past an empty match never splits a character.
    """
    match = regexp._regexp.Match
    position, end = 0, len(data)
    while position <= end:
        start, stop = match(_UNANCHORED, data, position, end)[0]
        if start < 0:
            break
        yield start, stop
        position = stop if stop > start else stop + 1


def _char_spans(data: bytes, spans: Iterable[Span]) -> Iterator[Span]:
    """Byte spans (on character boundaries) as character spans, decoding only what lies between."""
    byte_at = char_at = 0
    for start, stop in spans:
        char_at += len(data[byte_at:start].decode("utf-8"))
        first = char_at
        char_at += len(data[start:stop].decode("utf-8"))
        byte_at = stop
        yield first, char_at


def _re2_spans(regexp: re2._Regexp, text: str, data: bytes) -> Iterator[Span]:
    """Character spans of `regexp` in `text`, whose UTF-8 is `data`."""
    spans = _byte_spans(regexp, data)
    return spans if len(data) == len(text) else _char_spans(data, spans)


def _encoded(text: str) -> tuple[str, bytes]:
    """The text as matched (lone surrogates replaced) and its UTF-8."""
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATES.sub("\ufffd", text)
        return text, text.encode("utf-8")


class _RegexSkill:
    def __init__(self, pattern: str):
        self.pattern = pattern

    @cached_property
    def regexp(self) -> re2._Regexp:
        """Compiled on the first text the Set sends here: rare skills often never are."""
        return re2.compile(self.pattern, re2_options(capture=False))


class _KeywordSkill:
    """One keyword detector's exact engines: RE2 on safe texts, the automaton on any text.

    RE2's alternation is the faster per text, but building it and its first
    span search (which compiles the reversed program) cost ~1 µs per keyword
    character: 0.6 s for 50,000 names, for each worker. The automaton builds
    4x faster. So safe texts go to the automaton too, until the time spent in it
    reaches RE2's estimated cost (rent, then buy): a set found in few texts never
    builds RE2, and none pays much more than twice the better choice.
    """

    def __init__(self, detector: KeywordsDetector):
        self.detector = detector
        self.rent_seconds = RE2_SECONDS_PER_CHAR * sum(map(len, detector.keywords))

    def find_safe(self, text: str, data: bytes) -> list[Span]:
        """Spans in a safe text (see `keywords.py`) whose UTF-8 is `data`."""
        if self.rent_seconds > 0:
            started = time.perf_counter()
            spans = self.automaton.find(text)
            self.rent_seconds -= time.perf_counter() - started
            return spans
        return list(self.iter_safe(text, data))

    def iter_safe(self, text: str, data: bytes) -> Iterator[Span]:
        """Spans in a safe text by RE2, one search per span: linear, however the keywords nest."""
        return _re2_spans(self.safe, text, data) if self.safe is not None else iter(())

    def first_safe(self, text: str, data: bytes, max_hits: int) -> Iterator[Span]:
        """Spans in a safe text, lazily: the automaton (the quicker to build) for `max_hits`
        hits, then RE2 for the spans after those it settled."""
        settled = 0
        try:
            for span in self.automaton.iter_spans(text, max_hits):
                yield span
                settled += 1
        except TooManyHits:
            yield from islice(self.iter_safe(text, data), settled, None)

    @cached_property
    def safe(self) -> re2._Regexp | None:
        """Built on the first text that needs it, like `automaton`."""
        pattern = safe_pattern(self.detector)
        if pattern is None:
            return None
        options = re2_options(capture=False)
        options.longest_match = True
        options.max_mem = SET_MAX_MEM
        return re2.compile(pattern, options)

    @cached_property
    def automaton(self) -> KeywordAutomaton:
        """Built on the first text that needs it: most corpora rarely do."""
        return KeywordAutomaton(self.detector)


SET_PATTERNS_VERSION = "1"  # of what set_patterns makes; risky_chars also follows Unicode's


def set_patterns(detectors: Sequence[ConcreteDetector], digest: str) -> list[str]:
    """The Set's patterns for `detectors` (whose digest is `digest`): per detector its regex,
    or its keywords' `prefilter_pattern`; then `risky_chars` if there are keywords.

    Cached like the factor screens: for 50,000 keywords, and the Unicode tables behind
    risky_chars, making them took ~0.2 s of every scan task's start; loading takes ~5 ms."""
    version = f"{SET_PATTERNS_VERSION}/{unicodedata.unidata_version}"
    key = "set-" + hashlib.sha256(f"{version}\0{digest}".encode()).hexdigest()
    cached = read_cached(key, version)
    if cached is not None:
        return list(cached["patterns"])
    patterns = [
        prefilter_pattern(d)
        if isinstance(d, KeywordsDetector)
        else effective_pattern(d.pattern, d.case_sensitive)
        for d in detectors
    ]
    if any(isinstance(d, KeywordsDetector) for d in detectors):
        patterns.append(risky_chars())
    write_cached(key, {"version": version, "patterns": patterns})
    return patterns


def _compile_set(patterns: list[str]) -> re2.Set | None:
    if not patterns:
        return None
    options = re2_options(capture=False)  # spans only: lets RE2 answer from its DFAs
    options.max_mem = SET_MAX_MEM
    compiled = re2.Set.SearchSet(options)
    for pattern in patterns:
        compiled.Add(pattern)
    compiled.Compile()
    return compiled


SCREEN_WARMUP_TEXTS = 200  # texts may_match screens before timing (builds, caches)
SCREEN_PROBE_TEXTS = 2000  # texts on which may_match then times its factor screen and its Set


def screen_pays(screen_seconds: float, set_seconds: float, texts: float, passed: float) -> bool:
    """Whether screening first costs less than the Set alone: the screen on every text plus
    the Set on those it passes, against the Set on every text (with a 10% margin, so timing
    noise does not keep a screen that saves nothing)."""
    if texts == 0:
        return True
    return screen_seconds + set_seconds * passed / texts < 0.9 * set_seconds


@dataclass
class _ScreenProbe:
    """A factor screen's trial against the Set (may_match's on texts, may_match_line's on
    raw lines): the warm-up texts seen, then the timed ones (how many, how many the screen
    passed, and the seconds each pass took in all)."""

    warmed: int = 0
    texts: int = 0
    passed: int = 0
    screen_seconds: float = 0.0
    set_seconds: float = 0.0

    def trial(
        self, screen: Callable[[bytes], bool], match: Callable[[bytes], list[int]], data: bytes
    ) -> tuple[bool, list[int]]:
        """The screen's answer and the Set's hits for `data`: both run, and timed once
        SCREEN_WARMUP_TEXTS have built and warmed them (the screen compiles on first use,
        RE2 fills its DFA cache)."""
        if self.warmed < SCREEN_WARMUP_TEXTS:
            self.warmed += 1
            return screen(data), match(data)
        started = time.perf_counter()
        passed = screen(data)
        screened = time.perf_counter()
        hits = match(data)
        self.texts += 1
        self.passed += passed
        self.screen_seconds += screened - started
        self.set_seconds += time.perf_counter() - screened
        return passed, hits

    def verdict(self) -> str:
        """ "probe" until SCREEN_PROBE_TEXTS texts are timed, then "on" if the screen pays
        (`screen_pays`), else "off"."""
        if self.texts < SCREEN_PROBE_TEXTS:
            return "probe"
        return (
            "on"
            if screen_pays(self.screen_seconds, self.set_seconds, self.texts, self.passed)
            else "off"
        )


class SkillMatcher:
    """Finds every skill of `specs` in a text; build once per worker, reuse per document."""

    def __init__(self, specs: Sequence[SkillSpec]):
        self.skill_ids = [spec.id for spec in specs]
        duplicates = sorted({i for i in self.skill_ids if self.skill_ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate skill ids: {', '.join(duplicates)}")
        self._skills: list[_RegexSkill | _KeywordSkill] = []  # by index in the Set
        self._detectors = [spec.concrete_detector() for spec in specs]
        digest = hashlib.sha256()  # of the detectors: names their cached patterns and screen
        for detector in self._detectors:
            digest.update(detector.model_dump_json().encode() + b"\0")
            self._skills.append(
                _KeywordSkill(detector)
                if isinstance(detector, KeywordsDetector)
                else _RegexSkill(effective_pattern(detector.pattern, detector.case_sensitive))
            )
        self._digest = digest.hexdigest()
        patterns = set_patterns(self._detectors, self._digest)
        # The index of risky_chars in the Set, if there are keywords (then it is the last).
        self._risky = len(self._detectors)
        self._set = _compile_set(patterns)
        self._match = self._set._set.Match if self._set is not None else None
        # may_match's factor screen: None until first used, then "probe", "on" or "off".
        self._screening: str | None = None
        self._probe = _ScreenProbe()
        # may_match_line's: "probe" until settled, then "on" or "off".
        self._line_screening = "probe"
        self._line_probe = _ScreenProbe()
        self._last_hits: tuple[bytes, list[int]] | None = None  # may_match's last Set pass

    @cached_property
    def screen(self) -> FactorScreen | None:
        """The skills' factor screen (see `screen.py`); None if a skill has no known factors.

        Looked up in the screen cache first: finding 40 regexes' factors takes ~0.3 s of
        every scan task's start, and a cached screen (or a cached None) needs none of it."""
        key = hashlib.sha256(f"{factors_version()}\0{self._digest}".encode()).hexdigest()
        return FactorScreen.cached(key, self._screen_factors)

    def _screen_factors(
        self,
    ) -> tuple[list[frozenset[Factor]], list[tuple[Factor, bool, bool]]] | None:
        """Every detector's factors; short keywords with word boundaries apart, with theirs.
        None if a regex has no known factors (keyword sets always have)."""
        factors: list[frozenset[Factor]] = []
        bounded: list[tuple[Factor, bool, bool]] = []
        for detector in self._detectors:
            if isinstance(detector, KeywordsDetector) and detector.word_boundaries:
                short = [k for k in detector.keywords if len(k) <= SHORT_KEYWORD]
                long = [k for k in detector.keywords if len(k) > SHORT_KEYWORD]
                for keyword, factor in zip(short, keyword_factors(detector, short), strict=True):
                    left, right = keyword[0], keyword[-1]
                    left_bound = left.isascii() and is_word_char(left)
                    bounded.append((factor, left_bound, right.isascii() and is_word_char(right)))
                factors.append(frozenset(keyword_factors(detector, long)))
            else:
                found = detector_factors(detector)
                if found is None:
                    return None
                factors.append(found)
        return factors, bounded

    def may_match_line(self, line: bytes) -> bool | None:
        """False if no skill matches the text of any string in the JSON line `line`; None
        if there is no line screen to ask (no factors, or settled off): every line passes,
        and a reader stops asking (`curation.sources.records.LineScreen`).

        Like `may_match`'s, the line screen stays on only while it pays: a line it rules
        out saves the Set pass over its text (and building its document), so the first
        SCREEN_PROBE_TEXTS lines time the screen against the Set over the raw line, a
        stand-in for the text; then `screen_pays` settles it."""
        screen = self.screen
        if screen is None or self._line_screening == "off":
            return None
        if self._line_screening == "on" or self._match is None:
            return screen.may_match_line(line)
        passed, _ = self._line_probe.trial(screen.may_match_line, self._match, line)
        self._line_screening = self._line_probe.verdict()
        return passed

    def may_match(self, data: bytes) -> bool:
        """False if no skill matches the text whose UTF-8 is `data` (then `find` gives {}).

        The factor screen goes first while it pays. It is exact either way, but with weak
        factors (a two-letter unit, four digits) it passes most texts and costs more than
        the Set pass it saves on the rest: the first SCREEN_PROBE_TEXTS texts time both
        passes, then the screen stays on only if it saves time (`screen_pays`)."""
        if self._match is None:
            return False
        screening = self._screening or self._start_screening()
        if screening == "probe":
            hits = self._probe_screen(data)
        elif screening == "on" and not self.screen.may_match_text(data):  # type: ignore[union-attr]
            return False
        else:
            hits = self._match(data)
        self._last_hits = (data, hits)
        return bool(hits) and (len(hits) > 1 or hits[0] != self._risky)

    def _set_hits(self, data: bytes) -> list[int]:
        """The Set's hits for `data`: `may_match`'s answer when it just saw the same bytes (a
        scan asks it, then `find` on the document it let through), else a Set pass. Where
        most documents hit, that second pass was a fifth of the scan."""
        last = self._last_hits
        if last is not None and last[0] == data:
            return last[1]
        assert self._match is not None
        return self._match(data)

    def _start_screening(self) -> str:
        self._screening = "off" if self.screen is None else "probe"
        return self._screening

    def _probe_screen(self, data: bytes) -> list[int]:
        """The Set's hits for `data` ([] if the screen rules it out), the screen on trial
        (`_ScreenProbe`; the Set runs on every probed text, passed or not)."""
        assert self.screen is not None and self._match is not None
        passed, hits = self._probe.trial(self.screen.may_match_text, self._match, data)
        self._screening = self._probe.verdict()
        return hits if passed else []

    def find_spans(self, text: str) -> dict[int, list[Span]]:
        """Spans per skill index, for skills with at least one match."""
        if self._match is None:
            return {}
        text, data = _encoded(text)
        hits = self._set_hits(data)
        if not hits:
            return {}
        risky = self._risky in hits
        found: dict[int, list[Span]] = {}
        for index in hits:
            if index == self._risky:
                continue
            skill = self._skills[index]
            if isinstance(skill, _RegexSkill):
                found[index] = list(_re2_spans(skill.regexp, text, data))
            elif risky:
                found[index] = skill.automaton.find(text)
            else:
                found[index] = skill.find_safe(text, data)
        return {index: spans for index, spans in sorted(found.items()) if spans}

    def find(self, text: str) -> dict[str, list[Match]]:
        """Matches per skill id, in the order of the specs, for skills with at least one match."""
        return {
            skill_id: [Match(s, e, k) for (s, e), k in zip(spans, keys, strict=True)]
            for skill_id, (spans, keys) in self.find_keyed(text).items()
        }

    def find_keyed(self, text: str) -> dict[str, tuple[list[Span], list[str]]]:
        """`find` as (spans, match keys) per skill id: what a tagger stores, without a
        `Match` per instance (where most documents hit, a scan makes hundreds of thousands)."""
        found = self.find_spans(text)
        if found and not text.isascii() and _SURROGATES.search(text):
            text = _SURROGATES.sub("\ufffd", text)  # as find_spans matched it
        return {
            self.skill_ids[index]: (spans, [match_key(text[s:e]) for s, e in spans])
            for index, spans in found.items()
        }

    def first_matches(
        self, text: str, skill_id: str, limit: int, max_hits: int = FIRST_MATCHES_MAX_HITS
    ) -> tuple[list[Match], bool]:
        """The first `limit` matches of one skill, as `find` lists them, and whether that is all.

        The work is bounded by what comes back, not by the text: matches are found
        one at a time, and the search stops at the one past `limit`. A keyword set's
        automaton must see every overlapping hit before it can settle a match, and
        nested keywords make one hit per keyword at every character even where nothing
        matches: it stops after `max_hits` hits. Then RE2 takes over on a safe text
        (linear, however the keywords nest); on another, the answer is False: more
        matches may follow. The list is always the start of `find`'s, never different.
        """
        index = self.skill_ids.index(skill_id)
        if self._match is None:
            return [], True
        text, data = _encoded(text)
        hits = self._match(data)
        if index not in hits:
            return [], True
        skill = self._skills[index]
        spans: Iterable[Span]
        if isinstance(skill, _RegexSkill):
            spans = _re2_spans(skill.regexp, text, data)
        elif self._risky in hits:
            spans = skill.automaton.iter_spans(text, max_hits)
        else:
            spans = skill.first_safe(text, data, max_hits)
        matches: list[Match] = []
        try:
            for start, end in spans:
                if len(matches) == limit:
                    return matches, False
                matches.append(Match(start, end, match_key(text[start:end])))
        except TooManyHits:
            return matches, False
        return matches, True
