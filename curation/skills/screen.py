"""FactorScreen: says which raw JSONL lines (or UTF-8 texts) may hold a skill, exactly.

Every skill contributes its required factors (`curation.skills.factors`); a
text in which no factor occurs cannot match any skill. The screen searches the
factors' UTF-8 bytes with Hyperscan (the `hyperscan` package, where it
installs), else with one RE2 Set in Latin-1 mode (bytes as characters): the
same byte patterns either way.

On a raw JSONL line the text is JSON-encoded, so a character of a factor may be
written as an escape, which a plain byte search would miss:

- JSON's two-character escapes (`\\"`, `\\\\`, `\\/`, `\\b \\f \\n \\r \\t`) are
  spelt into the line patterns: a position holding `\\n` also matches the bytes
  `\\` `n`. So an escaped newline elsewhere in a line costs nothing.
- `\\uXXXX` can spell any character: a line holding one of a factor character
  (either case of hex digits; beyond the BMP, its high surrogate; for U+FFFD,
  which a lone surrogate becomes when matched, any surrogate) is a candidate.

Everything else in a line (keys, other fields) can only add candidates, never
hide one. A line the screen rules out is still parsed for its text's length and
validity; what it saves is everything after (see `curation.sources.reader`).

Compiling a large keyword set takes Hyperscan seconds, once per process; the
compiled database is cached under `~/.cache/skillmix/screens/` (or
`$XDG_CACHE_HOME`), keyed by its patterns, so later scans of the same skills
only load it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import re2

from curation.atomic import atomic_file
from curation.skills.factors import Factor, Position

# JSON's two-character escapes, by the character each stands for
_SIMPLE_ESCAPES = dict(zip('"\\/\b\f\n\r\t', '"\\/bfnrt', strict=True))
REPLACEMENT = "\ufffd"
# A word boundary before a factor, on raw JSON, spelt as what the raw line holds just
# before it: a byte that is neither an ASCII word character nor a backslash (a raw
# non-ASCII character, a quote), or an escape of a non-word character (`\\`, `\n`,
# `\u00a0`...), or the start. (ASCII `\b` would also let `\n` + "it" pass as "nit".)
LEFT_BOUNDARY = "(?:^|[^0-9A-Za-z_\\x5c]|\\x5c[\\x5cbfnrt]|\\x5cu[0-9a-fA-F]{4})"
_LEFT = "<left boundary>"  # in a stored pattern; which one depends on the engine
SHORT_KEYWORD = 5  # keywords up to this long are searched at word boundaries
CACHE_VERSION = "6"  # of the patterns made from factors, and of the compiled databases' keys


def _byte(b: int) -> str:
    return f"\\x{b:02x}"


def _bytes(data: bytes) -> str:
    return "".join(map(_byte, data))


@cache
def position_pattern(position: Position) -> str:
    """Any character of `position`, as raw UTF-8 or as a two-character JSON escape."""
    encoded = [c.encode("utf-8") for c in position]
    encoded += [b"\\" + _SIMPLE_ESCAPES[c].encode() for c in position if c in _SIMPLE_ESCAPES]
    single = sorted({e[0] for e in encoded if len(e) == 1})
    options = sorted({_bytes(e) for e in encoded if len(e) > 1})
    if len(single) == 1:
        options.append(_byte(single[0]))
    elif single:
        options.append("[" + "".join(map(_byte, single)) + "]")
    return options[0] if len(options) == 1 else "(?:" + "|".join(sorted(options)) + ")"


MAX_ODD = 2  # non-ASCII characters a literal position may stand for besides its ASCII ones


@cache
def _literal_position(position: Position) -> tuple[str, tuple[str, ...]] | None:
    """(lowercase ASCII character, odd characters) if a caseless literal can stand for it."""
    ascii_chars = sorted(c for c in position if c.isascii())
    if not ascii_chars or len(position) - len(ascii_chars) > MAX_ODD:
        return None
    char = ascii_chars[0].lower()
    if set(ascii_chars) not in ({ascii_chars[0]}, {char, char.upper()}) or char in _SIMPLE_ESCAPES:
        return None
    return char, tuple(c for c in position if not c.isascii())


def _caseless_literal(factor: Factor, odd: set[str]) -> bytes | None:
    """The factor as one lowercase ASCII literal, if each position is one ASCII character
    or an ASCII letter's two cases, plus at most MAX_ODD non-ASCII characters (the
    Kelvin sign in k's case orbit, the long s in s's): those go into `odd`, and a line
    holding one is a candidate anyway. Else None (the factor needs a regex)."""
    literals = list(map(_literal_position, factor))
    if None in literals or all(len(p) == 1 for p in factor):
        return None  # not one, or an exact literal: a regex of its bytes, matched exactly
    for _char, extra in literals:  # type: ignore[misc]
        if extra:
            odd.update(extra)
    return "".join([c for c, _ in literals]).encode("ascii")  # type: ignore[misc]


def factor_pattern(factor: Factor) -> str:
    """The factor as a byte-level regex (Hyperscan and RE2 Latin-1 syntax)."""
    return "".join(map(position_pattern, factor))


def _hex_either_case(code: int) -> str:
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{code:04x}")


def unicode_escape_patterns(chars: Iterable[str]) -> list[str]:
    """Byte regexes of the `\\uXXXX` escapes that could stand for any of `chars`."""
    backslash_u = _byte(0x5C) + "u"
    patterns: set[str] = set()
    for char in chars:
        code = ord(char)
        if char == REPLACEMENT:
            patterns.add(backslash_u + "[dD][89a-fA-F]")  # any surrogate, lone or paired
        if code > 0xFFFF:
            code = 0xD800 + ((code - 0x10000) >> 10)  # the high surrogate
        patterns.add(backslash_u + _hex_either_case(code))
    return sorted(patterns)


def _cache_dir() -> str:
    if os.environ.get("SKILLMIX_SCREEN_CACHE"):  # tests point it at a folder of their own
        return os.environ["SKILLMIX_SCREEN_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "skillmix", "screens")


class _Engine:
    """Any-match search over bytes: caseless literals and byte regexes, in one database."""

    def __init__(self, literals: list[bytes], patterns: list[str]):
        self.literals, self.patterns = literals, patterns
        self._search: Any = None

    def search(self, data: bytes) -> bool:
        if self._search is None:
            self._search = self._build()
        result: bool = self._search(data)
        return result

    def _expressions(self) -> tuple[list[bytes], list[int]]:
        import hyperscan

        caseless = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH
        expressions = [_bytes(lit).encode("ascii") for lit in self.literals]
        expressions += [p.encode("ascii") for p in self.patterns]
        flags = [caseless] * len(self.literals)
        flags += [hyperscan.HS_FLAG_SINGLEMATCH] * len(self.patterns)
        return expressions, flags

    def _database_key(self) -> str:
        """The compiled database's cache key: the literals and patterns it is made of (the
        expressions and flags follow from them, by `_expressions` at CACHE_VERSION). Not
        the expressions themselves: spelling 50,000 literals as hex escapes only to hash
        them took more than half a second of every scan task's start."""
        digest = hashlib.sha256(b"%s\0%d\0" % (CACHE_VERSION.encode(), len(self.literals)))
        digest.update(b"\0".join(self.literals))
        digest.update("\0".join(["", *self.patterns]).encode())
        return digest.hexdigest()

    def _database(self) -> Any:
        import hyperscan

        path = os.path.join(_cache_dir(), self._database_key() + ".hsdb")
        try:
            with open(path, "rb") as f:
                loaded = hyperscan.loadb(f.read(), hyperscan.HS_MODE_BLOCK)
            loaded.scratch = hyperscan.Scratch(loaded)  # a loaded database comes without one
            return loaded
        except (OSError, hyperscan.error):
            pass
        expressions, flags = self._expressions()
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        database.compile(
            expressions=expressions,
            ids=list(range(len(expressions))),  # with one id for all it compiles far slower
            elements=len(expressions),
            flags=flags,
        )
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_file(path, "wb") as f:
                f.write(hyperscan.dumpb(database))
        except OSError:  # a read-only home: compile again next time
            pass
        return database

    def _build(self) -> Any:
        try:
            import hyperscan
        except ImportError:
            return self._re2()
        scan, terminated = self._database().scan, hyperscan.ScanTerminated

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
        for literal in self.literals:
            compiled.Add("(?i)" + _bytes(literal))
        for pattern in self.patterns:
            compiled.Add(pattern)
        compiled.Compile()
        match = compiled._set.Match
        return lambda data: bool(match(data))


def read_cached(key: str, version: str) -> dict[str, Any] | None:
    """The cache entry `key` (a JSON object) if it was written at `version`, else None."""
    try:
        with open(os.path.join(_cache_dir(), key + ".json")) as f:
            cached: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return cached if cached.get("version") == version else None


def write_cached(key: str, entry: dict[str, Any]) -> None:
    """Store `entry` (with its "version") under `key`, atomically; a read-only cache folder
    is no error: the caller builds again next time."""
    try:
        os.makedirs(_cache_dir(), exist_ok=True)
        with atomic_file(os.path.join(_cache_dir(), key + ".json"), "w") as f:
            json.dump(entry, f)
    except OSError:
        pass


class FactorScreen:
    """Built from every skill's factors (see the module doc).

    `cached(key, factors)` builds it once for a key (a digest of the detectors)
    and then loads it: 50,000 keywords cost seconds of Python to turn into patterns.
    """

    @classmethod
    def cached(
        cls,
        key: str,
        factors: Callable[
            [], tuple[Iterable[frozenset[Factor]], Iterable[tuple[Factor, bool, bool]]] | None
        ],
    ) -> FactorScreen | None:
        """The screen for `key`, from the cache or built from `factors()` and cached; None
        (cached too) where `factors()` says there is no screen (a skill without factors)."""
        found = read_cached(key, CACHE_VERSION)
        if found is not None and found.get("none"):
            return None
        if found is not None:
            loaded = cls.__new__(cls)
            loaded._setup(
                [lit.encode("latin-1") for lit in found["literals"]],
                found["patterns"],
                found["escape_patterns"],
            )
            return loaded
        made = factors()
        screen = None if made is None else cls(*made)
        entry: dict[str, Any] = (
            {"version": CACHE_VERSION, "none": True}
            if screen is None
            else {
                "version": CACHE_VERSION,
                "literals": [lit.decode("latin-1") for lit in screen.literals],
                "patterns": screen.patterns,
                "escape_patterns": screen.escape_patterns,
            }
        )
        write_cached(key, entry)
        return screen

    def __init__(
        self,
        factors: Iterable[frozenset[Factor]],
        bounded: Iterable[tuple[Factor, bool, bool]] = (),
    ):
        """`bounded`: factors that must also be at a word boundary on the left and/or
        right (a short keyword with word boundaries: "is" is inside most lines)."""
        literals: set[bytes] = set()
        patterns: set[str] = set()
        positions: set[Position] = set()
        odd: set[str] = set()  # characters whose bytes alone make a line a candidate
        for factor, left, right in bounded:
            positions.update(factor)
            literal = _caseless_literal(factor, odd)
            body = factor_pattern(factor) if literal is None else "(?i:" + _bytes(literal) + ")"
            patterns.add((_LEFT if left else "") + body + ("\\b" if right else ""))
        for skill_factors in factors:
            for factor in skill_factors:
                positions.update(factor)
                literal = _caseless_literal(factor, odd)
                if literal is not None:
                    literals.add(literal)
                else:
                    patterns.add(factor_pattern(factor))
        chars = {c for position in positions for c in position}
        patterns.update(_bytes(c.encode("utf-8")) for c in odd)
        self._setup(sorted(literals), sorted(patterns), unicode_escape_patterns(chars))

    def _setup(self, literals: list[bytes], patterns: list[str], escapes: list[str]) -> None:
        self.literals, self.patterns, self.escape_patterns = literals, patterns, escapes
        # In a text, ASCII `\b` before a factor holds wherever a word boundary does.
        in_text = [p.replace(_LEFT, "\\b") for p in self.patterns]
        in_line = [p.replace(_LEFT, LEFT_BOUNDARY) for p in self.patterns]
        self._text = _Engine(self.literals, in_text)
        self._line = _Engine(self.literals, in_line + self.escape_patterns)

    @property
    def empty(self) -> bool:
        return not (self.literals or self.patterns)

    def may_match_text(self, utf8: bytes) -> bool:
        """False if no skill can match the text whose UTF-8 is `utf8`."""
        return not self.empty and self._text.search(utf8)

    def may_match_line(self, line: bytes) -> bool:
        """False if no skill can match any string value of the JSON line `line`."""
        return not self.empty and self._line.search(line)
