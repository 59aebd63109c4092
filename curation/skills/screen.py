"""FactorScreen: says which raw JSONL lines (or UTF-8 texts) may hold a skill, exactly.

Every skill contributes its required factors (`curation.skills.factors`); a
text in which no factor occurs cannot match any skill. The screen searches the
factors' UTF-8 bytes with Hyperscan (the `hyperscan` package, where it
installs), else with one RE2 Set in Latin-1 mode (bytes as characters): the
same byte patterns either way.

On a raw JSONL line the text is JSON-encoded: a character of a factor may be
written as an escape, which the byte search would miss. So a line is also a
candidate when it holds an escape that could stand for a character of any
factor: `\\uXXXX` of such a character (either case of hex digits; for a
character beyond the BMP, its high surrogate; for U+FFFD, which a lone
surrogate becomes when matched, any surrogate), `\\"`, `\\\\`, `\\/` and
`\\b \\f \\n \\r \\t` when their character is in a factor. Everything else in a
line (keys, other fields) can only add candidates, never hide one. A line the
screen rules out still has to be parsed for its text's length and validity;
what it saves is everything after (see `curation.sources.reader`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import re2

from curation.skills.factors import Factor

# JSON's two-character escapes, by the character each stands for
_SIMPLE_ESCAPES = dict(zip('"\\/\b\f\n\r\t', '"\\/bfnrt', strict=True))
REPLACEMENT = "\ufffd"


def _byte(b: int) -> str:
    return f"\\x{b:02x}"


def _bytes(data: bytes) -> str:
    return "".join(map(_byte, data))


def factor_pattern(factor: Factor) -> str:
    """The UTF-8 bytes of a factor as a byte-level regex (Hyperscan and RE2 Latin-1 syntax)."""
    parts = []
    for position in factor:
        options = sorted({_bytes(c.encode("utf-8")) for c in position})
        parts.append(options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")")
    return "".join(parts)


def _hex_either_case(code: int) -> str:
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{code:04x}")


def escape_patterns(chars: Iterable[str]) -> list[str]:
    """Byte regexes of the JSON escapes that could stand for any of `chars` (see module doc)."""
    backslash = _byte(0x5C)
    patterns: set[str] = set()
    for char in chars:
        code = ord(char)
        if char in _SIMPLE_ESCAPES:
            patterns.add(backslash + _bytes(_SIMPLE_ESCAPES[char].encode()))
        if char == REPLACEMENT:
            patterns.add(backslash + "u[dD][89a-fA-F]")  # any surrogate, lone or paired
        if code > 0xFFFF:
            high = 0xD800 + ((code - 0x10000) >> 10)
            patterns.add(backslash + "u" + _hex_either_case(high))
        else:
            patterns.add(backslash + "u" + _hex_either_case(code))
    return sorted(patterns)


class _Engine:
    """Any-match search over bytes with one of two libraries."""

    def __init__(self, patterns: list[str]):
        self.patterns = patterns
        self._search: Any = None

    def search(self, data: bytes) -> bool:
        if self._search is None:
            self._search = self._build()
        result: bool = self._search(data)
        return result

    def _build(self) -> Any:
        try:
            import hyperscan
        except ImportError:
            return self._re2()
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        database.compile(
            expressions=[p.encode("ascii") for p in self.patterns],
            ids=list(range(len(self.patterns))),
            elements=len(self.patterns),
            flags=hyperscan.HS_FLAG_SINGLEMATCH,
        )
        scan, terminated = database.scan, hyperscan.ScanTerminated

        def stop(*_: Any) -> bool:
            return True  # the first match settles it: stop scanning

        def search(data: bytes) -> bool:
            try:
                scan(data, match_event_handler=stop)
            except terminated:
                return True
            return False

        return search

    def _re2(self) -> Any:
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1
        options.never_capture = True
        options.max_mem = 256 << 20
        options.log_errors = False
        compiled = re2.Set.SearchSet(options)
        for pattern in self.patterns:
            compiled.Add(pattern)
        compiled.Compile()
        match = compiled._set.Match
        return lambda data: bool(match(data))


class FactorScreen:
    """Built from every skill's factors; None in place of a skill's factors disables it."""

    def __init__(self, factors: Iterable[frozenset[Factor]]):
        patterns: set[str] = set()
        chars: set[str] = set()
        for skill_factors in factors:
            for factor in skill_factors:
                patterns.add(factor_pattern(factor))
                chars.update(c for position in factor for c in position)
        self.text_patterns = sorted(patterns)
        self.escape_patterns = escape_patterns(chars)
        self._text = _Engine(self.text_patterns)
        self._line = _Engine(self.text_patterns + self.escape_patterns)

    def may_match_text(self, utf8: bytes) -> bool:
        """False if no skill can match the text whose UTF-8 is `utf8`."""
        return bool(self.text_patterns) and self._text.search(utf8)

    def may_match_line(self, line: bytes) -> bool:
        """False if no skill can match any string value of the JSON line `line`."""
        return bool(self.text_patterns) and self._line.search(line)
