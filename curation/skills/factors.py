"""Required literal factors of skills: strings one of which every match contains.

A scan can rule a document out before parsing it if none of its skills' factors
occurs in its raw bytes (see `curation.skills.screen`). That is exact only if
the factors are truly required, so this module errs one way only: when it
cannot tell, a skill gets no factors (`None`), and then every line is a
candidate.

A factor is a sequence of positions, each the set of characters that can stand
there: `(frozenset("Kk\\u212a"), frozenset("a"), ...)`. Case-insensitive text
makes a position hold the character's case orbit (what RE2's `(?i)` matches,
computed by RE2 itself; for keywords, every character that `fold`s alike),
which is why positions are sets rather than one character each.

- Regex: from the syntax tree of Python's `re._parser`, which reads the RE2
  syntax the detectors accept (RE2's linear-time subset), with a check for the
  spellings the two read differently (`[[:alpha:]]`, `{,n}`): those, and
  anything Python cannot parse (`\\pL`, `\\x{263a}`, `\\Q..\\E`, `\\z`, `(?U)`),
  give no factors. Of the factor sets the tree offers (runs of literal
  characters, small classes, alternations, and runs joined across the edges of
  groups and repeats: every match of `(?P<a>\\d{3,4})` ends with three digits,
  which the `\\+` after it follows), the most selective is kept.
- Keywords: every keyword is a factor of its own.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import product
from re import _constants as sre_constants  # type: ignore[attr-defined]  # Python's own parser
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import numpy as np
import re2

from curation.skills.detectors import KeywordsDetector, RegexDetector
from curation.skills.keywords import fold

Position = frozenset[str]
Factor = tuple[Position, ...]
Factors = frozenset[Factor]

MAX_PRODUCT = 256  # strings a concatenation of alternatives may multiply out to
MAX_ALTERNATIVES = 4096  # factors one node may offer (an alternation of words)
MAX_CLASS_CHARS = 96  # a larger class is not a literal position
# RE2's Perl classes are ASCII-only (Python's parser reads them as Unicode categories)
_PERL_CLASSES = {
    sre_constants.CATEGORY_DIGIT: "0123456789",
    sre_constants.CATEGORY_SPACE: "\t\n\f\r ",
    sre_constants.CATEGORY_WORD: "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz",
}
# Spellings RE2 and Python's parser read differently: POSIX classes, and `{,n}`
# (a repeat in Python, literal text in RE2). Patterns with them get no factors.
_AMBIGUOUS = ("[:", "{,")

_LITERAL = sre_constants.LITERAL
_IN = sre_constants.IN
_BRANCH = sre_constants.BRANCH
_SUBPATTERN = sre_constants.SUBPATTERN
_AT = sre_constants.AT
_REPEATS = {
    sre_constants.MAX_REPEAT,
    sre_constants.MIN_REPEAT,
    getattr(sre_constants, "POSSESSIVE_REPEAT", sre_constants.MAX_REPEAT),
}
_IGNORECASE = sre_constants.SRE_FLAG_IGNORECASE


@cache
def _all_chars() -> str:
    codes = np.arange(0x110000, dtype="<u4")
    codes = codes[(codes < 0xD800) | (codes >= 0xE000)]
    return codes.tobytes().decode("utf-32-le")


@cache
def re2_case_orbit(char: str) -> Position:
    """Every character RE2's `(?i)` matches for `char` (itself included), asked of RE2."""
    return frozenset(re2.findall("(?i)" + re2.escape(char), _all_chars())) | {char}


@cache
def _fold_preimages() -> dict[str, tuple[str, ...]]:
    """folded character -> the characters that fold to it (only where more than itself)."""
    found: dict[str, set[str]] = {}
    for char in _all_chars()[: 0x40000 - 0x800]:  # planes 4-16 hold no cased character
        lowered = char.lower()  # `fold` of one character, inlined: 260k of them
        folded = lowered if len(lowered) == 1 else char
        if folded == "ς":
            folded = "σ"
        if folded != char:
            found.setdefault(folded, {folded}).add(char)
    return {k: tuple(v) for k, v in found.items()}


@cache
def fold_orbit(char: str) -> Position:
    """Every character whose `fold` equals that of `char`."""
    folded = fold(char)
    return frozenset(_fold_preimages().get(folded, (folded,))) | {char}


# ---------------------------------------------------------------- regexes


class _Unknown(Exception):
    """A construct this module does not reason about: the pattern gets no factors."""


def _weight(position: Position) -> float:
    return 1.0 if len(position) <= 3 else 0.5 if len(position) <= 12 else 0.25


def _score(factors: Factors) -> tuple[float, int]:
    """Higher is more selective: the weakest factor's length (wide positions count less)."""
    weakest = min(sum(map(_weight, f)) for f in factors)
    return weakest, -len(factors)


def _best(candidates: Iterable[Factors | None]) -> Factors | None:
    usable = [c for c in candidates if c and all(c)]  # no set holding an empty factor
    return max(usable, key=_score) if usable else None


def _concat(left: Factors, right: Factors) -> Factors | None:
    if len(left) * len(right) > MAX_PRODUCT:
        return None
    return frozenset(a + b for a, b in product(left, right))


def _power(exact: Factors, times: int) -> Factors | None:
    result: Factors | None = frozenset({()})
    for _ in range(times):
        result = _concat(result, exact) if result is not None else None
    return result


EMPTY: Factors = frozenset({()})  # the empty string alone: says nothing of a match's text


class _Node:
    """What a node can match: `exact` (all its strings, if few), `required` factors, and
    its edges: `prefix` and `suffix`, strings one of which every non-empty match begins
    (ends) with, which join with what comes before (after) it in a sequence, so a factor
    can span a group's edge (`(?P<a>\\d{4})\\+` has `\\d+`). An edge holding the empty string
    says nothing. `nullable`: the node can match the empty string."""

    __slots__ = ("exact", "required", "prefix", "suffix", "nullable")

    def __init__(
        self,
        exact: Factors | None,
        required: Factors | None,
        prefix: Factors = EMPTY,
        suffix: Factors = EMPTY,
        nullable: bool = False,
    ):
        self.exact, self.required = exact, required
        self.prefix, self.suffix, self.nullable = prefix, suffix, nullable


def _exact_node(exact: Factors, required: Factors | None = None) -> _Node:
    """A node whose strings are all known (`required`, default: them): its edges too."""
    return _Node(exact, exact if required is None else required, exact, exact, () in exact)


def _position(chars: Iterable[str], icase: bool) -> Position:
    chars = list(chars)
    if icase:
        return frozenset(o for c in chars for o in re2_case_orbit(c))
    return frozenset(chars)


def _class(items: Sequence[tuple[Any, Any]], icase: bool) -> Position | None:
    chars: list[str] = []
    for op, av in items:
        if op is _LITERAL:
            chars.append(chr(av))
        elif op is sre_constants.RANGE and av[1] - av[0] < MAX_CLASS_CHARS:
            chars.extend(map(chr, range(av[0], av[1] + 1)))
        elif op is sre_constants.CATEGORY and av in _PERL_CLASSES:
            chars.extend(_PERL_CLASSES[av])
        else:  # NEGATE, CATEGORY, a wide range
            return None
        if len(chars) > MAX_CLASS_CHARS:
            return None
    return _position(chars, icase) if chars else None


def _sequence(items: Sequence[tuple[Any, Any]], icase: bool) -> _Node:
    """A concatenation: runs of exact items multiply out, and join the edges of the items
    either side of them; any run, join or child may be required. `run` holds the strings
    the text matched so far ends with (right before the next item)."""
    candidates: list[Factors | None] = []
    run: Factors = EMPTY
    exact_all: Factors | None = EMPTY
    lead: Factors = EMPTY  # the exact strings the match begins with, until `prefix` is known
    prefix: Factors | None = None
    nullable = True

    def extend(run: Factors, part: Factors) -> Factors:
        joined = _concat(run, part)
        if joined is None:  # too many: what came before stands on its own
            candidates.append(run)
            return part
        return joined

    for op, av in items:
        node = _item(op, av, icase)
        if node is None:  # zero-width (an anchor, a word boundary): runs go on across it
            continue
        nullable = nullable and node.nullable
        candidates.append(node.required)
        if exact_all is not None:
            exact_all = _concat(exact_all, node.exact) if node.exact is not None else None
        if prefix is None:
            if node.exact is not None and (joined := _concat(lead, node.exact)) is not None:
                lead = joined
            else:
                prefix = lead if node.nullable else (_concat(lead, node.prefix) or lead)
        if node.exact is not None:
            run = extend(run, node.exact)
            continue
        candidates.append(run)
        if node.nullable:  # right before what follows: this node's end, or what came before
            run = node.suffix | run
        else:  # this node's match is not empty: it begins right after `run`
            candidates.append(_concat(run, node.prefix))
            run = node.suffix
    candidates.append(run)
    if nullable:  # every item can be empty: an edge says nothing
        return _Node(exact_all, _best(candidates), EMPTY, EMPTY, True)
    return _Node(exact_all, _best(candidates), lead if prefix is None else prefix, run)


def _sub(sub: Any, icase: bool) -> _Node:
    return _sequence(list(sub), icase)


def _union(sets: Sequence[Factors | None]) -> Factors | None:
    if any(s is None for s in sets):
        return None
    union: Factors = frozenset().union(*(s for s in sets if s is not None))
    return union if len(union) <= MAX_ALTERNATIVES and all(union) else None


def _edge_union(edges: Sequence[Factors], keep: slice) -> Factors:
    """Branches' edges together; if too many, each cut to its `keep` (first or last)
    position, else nothing known."""
    union: Factors = frozenset().union(*edges)
    if len(union) > MAX_ALTERNATIVES:
        union = frozenset(edge[keep] for edge in union)
    return union if len(union) <= MAX_ALTERNATIVES else EMPTY


def _item(op: Any, av: Any, icase: bool) -> _Node | None:
    """The node of one parsed item, or None for a zero-width one."""
    exact: Factors | None
    if op is _LITERAL:
        return _exact_node(frozenset({(_position(chr(av), icase),)}))
    if op is _IN:
        position = _class(av, icase)
        return _exact_node(frozenset({(position,)})) if position is not None else _Node(None, None)
    if op is _AT:
        return None
    if op is _SUBPATTERN:
        _group, add_flags, del_flags, sub = av
        if add_flags & _IGNORECASE:
            icase = True
        if del_flags & _IGNORECASE:
            icase = False
        return _sub(sub, icase)
    if op is _BRANCH:
        branches = [_sub(b, icase) for b in av[1]]
        exact = _union([b.exact for b in branches])
        required = _union([b.required for b in branches])
        if exact is not None:
            return _exact_node(exact, _best([exact, required]))
        prefix = _edge_union([b.prefix for b in branches], slice(None, 1))
        suffix = _edge_union([b.suffix for b in branches], slice(-1, None))
        return _Node(None, required, prefix, suffix, any(b.nullable for b in branches))
    if op in _REPEATS:
        low, high, sub = av
        inner = _sub(sub, icase)
        if low == 0:  # `x?` of an exact x is exact: {"", "x"}; runs go on across it
            optional = high == 1 and inner.exact is not None and len(inner.exact) < MAX_PRODUCT
            if optional:
                exact = inner.exact | EMPTY  # type: ignore[operator]
                return _Node(exact, None, exact, exact, True)
            return _Node(None, None, inner.prefix, inner.suffix, True)
        exact = _power(inner.exact, low) if inner.exact is not None and low == high else None
        if exact is not None:
            return _exact_node(exact, _best([exact, inner.required]))
        # The first `low` copies begin every match, the last `low` end it.
        copies = _power(inner.exact, low) if inner.exact is not None else None
        edge_in, edge_out = (copies, copies) if copies else (inner.prefix, inner.suffix)
        return _Node(None, inner.required, edge_in, edge_out, inner.nullable)
    if op in (sre_constants.ANY, sre_constants.NOT_LITERAL, sre_constants.CATEGORY):
        return _Node(None, None)
    raise _Unknown(str(op))


def regex_factors(pattern: str, case_sensitive: bool = True) -> Factors | None:
    """Factors one of which every RE2 match of `pattern` contains, or None if unknown."""
    if any(s in pattern for s in _AMBIGUOUS):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = sre_parse.parse(pattern, 0)
        icase = not case_sensitive or bool(parsed.state.flags & _IGNORECASE)
        return _sub(parsed, icase).required
    except (re.error, _Unknown, RecursionError, OverflowError, ValueError):
        return None


# ---------------------------------------------------------------- keywords and skills


def keyword_factors(
    detector: KeywordsDetector, keywords: Sequence[str] | None = None
) -> list[Factor]:
    """Each keyword (of `keywords`, default all), position by position (its fold orbits
    unless case-sensitive)."""
    chosen = detector.keywords if keywords is None else keywords
    if detector.case_sensitive:
        return [tuple(frozenset(c) for c in k) for k in chosen]
    return [tuple(map(fold_orbit, k)) for k in chosen]


def detector_factors(detector: RegexDetector | KeywordsDetector) -> Factors | None:
    """The factors of a concrete detector (see the module doc); None if unknown."""
    if isinstance(detector, KeywordsDetector):
        return frozenset(keyword_factors(detector))
    return regex_factors(detector.pattern, detector.case_sensitive)


def factors_version() -> str:
    """Changes whenever what this module derives could (the Python and its Unicode tables)."""
    import sys
    import unicodedata
    from importlib.metadata import version

    return (
        f"factors/2 python {sys.version_info[:3]} unicode {unicodedata.unidata_version} "
        f"re2 {version('google-re2')}"  # case orbits are RE2's
    )
