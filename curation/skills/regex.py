"""RE2 patterns: safety checks before compiling, and compiling.

User patterns run over whole corpora, so they must run in linear time: they are
compiled with RE2 only (never Python's `re`, which backtracks). Constructs RE2
cannot run are reported by name and character offset before RE2 sees the
pattern, since RE2's own message ("invalid perl operator: (?<") does not tell a
person what to change. RE2 stays the final judge: whatever the scan lets
through and RE2 still refuses is reported with RE2's message.
"""

from __future__ import annotations

from itertools import product

import re2

MAX_PATTERN_CHARS = 4096
RE2_MAX_MEM = 64 << 20  # per compiled program; RE2's default of 8 MiB is tight for sets

_LINEAR = "is not supported (RE2 syntax, linear time)"

# Group openers RE2 rejects, longest first so "(?<=" wins over "(?<".
_GROUP_CONSTRUCTS: tuple[tuple[str, str], ...] = (
    ("(?<=", "look-behind"),
    ("(?<!", "negative look-behind"),
    ("(?P=", "backreference"),
    ("(?P>", "subroutine call"),
    ("(?=", "look-ahead"),
    ("(?!", "negative look-ahead"),
    ("(?>", "atomic group"),
    ("(?|", "branch reset group"),
    ("(?(", "conditional group"),
    ("(?#", "comment group"),
    ("(?&", "subroutine call"),
    ("(?R", "recursion"),
    ("(?C", "callout"),
)


_ESCAPE_CONSTRUCTS = {
    "Z": "end-of-text anchor (write \\z)",
    "C": "single-byte escape (it can split a UTF-8 character)",
    "G": "end-of-previous-match anchor",
}


class PatternError(ValueError):
    """A pattern RE2 cannot or should not run; the message says what to change."""


def re2_options(*, capture: bool = True) -> re2.Options:
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    options.never_capture = not capture
    return options


def effective_pattern(pattern: str, case_sensitive: bool) -> str:
    """The pattern with its case flag inlined, so it can share an `re2.Set`."""
    return pattern if case_sensitive else f"(?i:{pattern})"


def _class_end(pattern: str, i: int) -> int:
    """Index just past the character class opening at `i` (or len if unterminated)."""
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):
        j += 1
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
        elif pattern.startswith("[:", j) and (close := pattern.find(":]", j + 2)) != -1:
            j = close + 2
        elif pattern[j] == "]":
            return j + 1
        else:
            j += 1
    return len(pattern)


def _repeat_end(pattern: str, i: int) -> int | None:
    """Index past a counted repetition `{n}`, `{n,}` or `{n,m}` at `i`, else None (a literal)."""
    close = pattern.find("}", i)
    if close == -1:
        return None
    body = pattern[i + 1 : close]
    low, comma, high = body.partition(",")
    if low.isdigit() and (not high or high.isdigit()) and (comma or not high):
        return close + 1
    return None


def _escape_problem(pattern: str, i: int) -> tuple[str, str] | None:
    """(construct, snippet) if the escape at `i` is one RE2 cannot run."""
    nxt = pattern[i + 1 : i + 2]
    if nxt.isdigit() and nxt != "0":
        end = i + 2
        while end < len(pattern) and pattern[end].isdigit():
            end += 1
        return "backreference", pattern[i:end]
    if nxt in ("k", "g"):
        end = i + 2
        if pattern[end : end + 1] in ("<", "{", "'"):
            closer = {"<": ">", "{": "}", "'": "'"}[pattern[end]]
            found = pattern.find(closer, end + 1)
            end = found + 1 if found != -1 else end + 1
        else:
            while end < len(pattern) and (pattern[end].isdigit() or pattern[end] == "-"):
                end += 1
        return "backreference", pattern[i:end]
    if nxt in _ESCAPE_CONSTRUCTS:
        return _ESCAPE_CONSTRUCTS[nxt], "\\" + nxt
    return None


def find_unsupported(pattern: str) -> tuple[str, str, int] | None:
    """First construct RE2 cannot run, as (construct, snippet, offset), else None."""
    i = 0
    after_quantifier = False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if pattern.startswith("\\Q", i):
                end = pattern.find("\\E", i + 2)
                i = len(pattern) if end == -1 else end + 2
                after_quantifier = False
                continue
            problem = _escape_problem(pattern, i)
            if problem:
                return problem[0], problem[1], i
            i += 2
            if pattern[i - 1] in "xpP" and pattern.startswith("{", i):  # \x{263a}, \p{Greek}
                close = pattern.find("}", i)
                i = len(pattern) if close == -1 else close + 1
            after_quantifier = False
            continue
        if c == "[":
            i = _class_end(pattern, i)
            after_quantifier = False
            continue
        if c == "(" and pattern.startswith("(?", i):
            for opener, construct in _GROUP_CONSTRUCTS:
                if pattern.startswith(opener, i):
                    return construct, opener, i
            rest = pattern[i + 2 : i + 4]
            if rest[:1].isdigit() or (rest[:1] in "+-" and rest[1:2].isdigit()):
                return "recursion", pattern[i : pattern.find(")", i) + 1 or len(pattern)], i
        repeat_end = _repeat_end(pattern, i) if c == "{" else (i + 1 if c in "*+?" else None)
        if repeat_end is not None:
            if after_quantifier and c == "+":
                return "possessive quantifier", pattern[i - 1 : i + 1], i - 1
            # `*?` is a lazy quantifier; anything after it is RE2's to judge.
            after_quantifier = not (after_quantifier and c == "?")
            i = repeat_end
            continue
        after_quantifier = False
        i += 1
    return None


# Every context a zero-width match can depend on in RE2: before and after the
# position, either nothing (edge of text), a word character, another
# character, or a newline (for multi-line ^ and $).
_CONTEXTS = ("", "a", " ", "\n")


def _matches_empty(regexp: re2._Regexp) -> bool:
    for before, after in product(_CONTEXTS, repeat=2):
        at = len(before)
        if regexp.fullmatch(before + after, at, at) is not None:
            return True
    return False


def compile_pattern(pattern: str, case_sensitive: bool = True, *, capture: bool = True):
    """Compile a user pattern with RE2, or raise PatternError saying what to change."""
    if not pattern:
        raise PatternError("pattern is empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(
            f"pattern has {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}"
        )
    problem = find_unsupported(pattern)
    if problem:
        construct, snippet, offset = problem
        raise PatternError(f"{construct} {snippet} at offset {offset} {_LINEAR}")
    try:
        regexp = re2.compile(
            effective_pattern(pattern, case_sensitive), re2_options(capture=capture)
        )
    except re2.error as exc:
        message = exc.args[0] if exc.args else "compile failed"
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        raise PatternError(f"RE2 cannot compile the pattern: {message}") from None
    if _matches_empty(regexp):
        raise PatternError(
            "pattern can match the empty string, so it would 'find' an instance at "
            "almost every position; require at least one character"
        )
    return regexp
