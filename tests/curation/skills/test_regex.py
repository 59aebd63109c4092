"""RE2 patterns: unsupported constructs named with their offset; linear time."""

import pytest

from curation.skills.matcher import SkillMatcher
from curation.skills.regex import PatternError, compile_pattern, find_unsupported
from curation.skills.spec import SkillSpec


@pytest.mark.parametrize(
    "pattern, construct, snippet, offset",
    [
        (r"(a+) = \1", "backreference", r"\1", 7),
        (r"(?P<n>a)(?P=n)", "backreference", "(?P=", 8),
        (r"(?<n>a)\k<n>", "backreference", r"\k<n>", 7),
        (r"a\g{1}", "backreference", r"\g{1}", 1),
        (r"x(?=y)", "look-ahead", "(?=", 1),
        (r"x(?!y)", "negative look-ahead", "(?!", 1),
        (r"(?<=y)x", "look-behind", "(?<=", 0),
        (r"(?<!y)x", "negative look-behind", "(?<!", 0),
        (r"(?>ab)c", "atomic group", "(?>", 0),
        (r"a*+b", "possessive quantifier", "*+", 1),
        (r"ba{2,3}+", "possessive quantifier", "}+", 6),
        (r"(a)(?1)", "recursion", "(?1)", 3),
        (r"end\Z", "end-of-text anchor (write \\z)", r"\Z", 3),
    ],
)
def test_unsupported_constructs_are_named_with_offset(pattern, construct, snippet, offset):
    assert find_unsupported(pattern) == (construct, snippet, offset)
    with pytest.raises(PatternError, match="not supported \\(RE2 syntax, linear time\\)"):
        compile_pattern(pattern)


def test_backreference_message_reads_well():
    with pytest.raises(PatternError) as info:
        compile_pattern(r"(a+) = \1")
    assert (
        str(info.value)
        == r"backreference \1 at offset 7 is not supported (RE2 syntax, linear time)"
    )


@pytest.mark.parametrize(
    "pattern",
    [
        r"[(?=]x",
        r"\x{41}+",
        r"\p{Greek}+",
        r"\++",
        r"[+]+",
        r"\Qa++(?=\E",
        r"(?-i:a)b",
        r"(?i)x",
        r"(?P<year>\d{4})-\d\d",
        r"a{2}?b",
        r"[[:alpha:]]+",
        r"\bx{3,}",
    ],
)
def test_supported_syntax_is_not_flagged(pattern):
    assert find_unsupported(pattern) is None
    compile_pattern(pattern)


@pytest.mark.parametrize("pattern", [r"a*", r"x|", r"\b", r"^", r"(?m)^\s*", r"$|a", r"(?:)"])
def test_patterns_matching_the_empty_string_are_rejected(pattern):
    with pytest.raises(PatternError, match="empty string"):
        compile_pattern(pattern)


@pytest.mark.timeout(60)  # backtracking engines take years here; RE2 milliseconds
@pytest.mark.parametrize(
    "pattern, text",
    [(r"(a+)+$", "a" * 100_000 + "!"), (r"(x+x+)+y", "x" * 100_000)],
)
def test_catastrophic_patterns_run_in_linear_time(pattern, text):
    spec = SkillSpec(id="redos", name="r", detector={"kind": "regex", "pattern": pattern})
    matcher = SkillMatcher([spec])
    assert compile_pattern(pattern).search(text) is None
    assert matcher.find(text) == {}
