"""Keyword detectors: leftmost-longest, word boundaries, case folding; same as the reference.

Every case runs through both exact engines (the Aho-Corasick automaton, and the
matcher, which takes RE2's path on safe texts) and must agree with the slow
reference in `skills_reference.py`.
"""

import random

import pytest
import re2

from curation.skills.detectors import KeywordsDetector
from curation.skills.keywords import (
    MAX_TREE_DEPTH,
    KeywordAutomaton,
    TooManyHits,
    _prefix_tree,
    fold,
    prefilter_pattern,
    risky_chars,
)
from curation.skills.matcher import SkillMatcher
from curation.skills.spec import SkillSpec
from tests.curation.skills.names import FULL_NAMES
from tests.curation.skills.reference import leftmost_longest, random_text, reference_keywords


def find(text, keywords, **options):
    detector = KeywordsDetector(keywords=keywords, **options)
    spans = KeywordAutomaton(detector).find(text)
    spec = SkillSpec(id="k", name="k", detector=detector)
    assert [(m.start, m.end) for m in SkillMatcher([spec]).find(text).get("k", [])] == spans
    assert spans == reference_keywords(text, detector)
    return spans


def test_leftmost_longest_non_overlapping():
    keywords = ["new", "new york", "york city", "york"]
    assert find("new york city", keywords) == [(0, 8)]  # "york city" overlaps "new york"
    assert find("the newyork york", keywords, word_boundaries=False) == [(4, 7), (7, 11), (12, 16)]
    assert leftmost_longest([(3, 5), (0, 2), (0, 4), (4, 9), (9, 10)]) == [(0, 4), (4, 9), (9, 10)]


def test_word_boundaries_only_guard_word_characters():
    assert find("concatenate cat cats", ["cat"]) == [(12, 15)]
    assert find("C++17 and C++", ["C++"]) == [(0, 3), (10, 13)]
    assert find("x_cat cat_ 2cat", ["cat"]) == []
    assert find("concatenate", ["cat"], word_boundaries=False) == [(3, 6)]
    assert find("café cafés", ["café"]) == [(0, 4)]  # Unicode letters are word characters
    assert find("écat cat—cat’s", ["cat"]) == [(5, 8), (9, 12)]


def test_case_folding_keeps_offsets():
    text = "İstanbul ΟΔΟΣ Straße NEW York"
    assert len(fold(text)) == len(text)
    assert find(text, ["new york"]) == [(21, 29)]
    assert find(text, ["οδος"]) == [(9, 13)]  # final sigma folds like sigma
    assert find(text, ["new york"], case_sensitive=True) == []
    assert find(text, ["NEW York"], case_sensitive=True) == [(21, 29)]
    assert find(text, ["istanbul"]) == []  # "İ" lowercases to two characters: kept as is
    assert find(text, ["İstanbul"], case_sensitive=True) == [(0, 8)]
    assert find("Kelvin: 5 K, 6 k", ["k"]) == [(10, 11), (15, 16)]  # Kelvin sign folds to k
    assert find("ſ and s", ["s"]) == [(6, 7)]  # long s does not


def test_risky_characters():
    risky = re2.compile(risky_chars())
    assert [c for c in "aé’—🙂Ⓐ²µ x" if risky.search(c)] == ["é", "Ⓐ", "²", "µ"]


@pytest.mark.parametrize("case_sensitive", [False, True])
@pytest.mark.parametrize("word_boundaries", [True, False])
@pytest.mark.parametrize("risky", [True, False])
def test_engines_match_the_reference_on_random_texts(case_sensitive, word_boundaries, risky):
    rng = random.Random(7)
    keywords = ["new", "New York", "york", "w y", "cat", "C++", "café", "ΟΔΟΣ", "x", "xx", "_x",
                "2024", "mod 13", "—", "🙂", "naïve", "İstanbul", "foo_bar", "e", "K", "ſ", "ⓐ",
                "s", "x²", "’s"]  # fmt: skip
    detector = KeywordsDetector(
        keywords=keywords, case_sensitive=case_sensitive, word_boundaries=word_boundaries
    )
    automaton = KeywordAutomaton(detector)
    matcher = SkillMatcher([SkillSpec(id="k", name="k", detector=detector)])
    prefilter = re2.compile(prefilter_pattern(detector))
    for _ in range(300):
        text = random_text(rng, risky=risky)
        expected = reference_keywords(text, detector)
        assert automaton.find(text) == expected, text
        assert [(m.start, m.end) for m in matcher.find(text).get("k", [])] == expected, text
        assert prefilter.search(text) is not None or not expected, text


def test_prefix_tree_is_the_same_language_as_the_flat_alternation():
    """The factored alternation accepts exactly the keywords: checked on every keyword, and on
    every string one edit away from one (prefixes, extensions, changed characters)."""
    rng = random.Random(11)
    alphabet = "ab+.(é?|\\ "
    for _ in range(200):
        keys = sorted({"".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(30)})
        tree = re2.compile(_prefix_tree(keys))
        near = {k[:i] + c + k[j:] for k in keys for i in range(len(k) + 1)
                for j in (i, i + 1) for c in ("", "a", "é")}  # fmt: skip
        for candidate in near | set(keys):
            assert (tree.fullmatch(candidate) is not None) == (candidate in keys), (keys, candidate)
    nested = ["a" * n for n in range(1, 3 * MAX_TREE_DEPTH)]  # deeper than the tree goes
    tree = re2.compile(_prefix_tree(nested))
    assert all(tree.fullmatch(k) for k in nested) and not tree.fullmatch("a" * 3 * MAX_TREE_DEPTH)


def test_fifty_thousand_names():
    spans = find(
        "Yesterday aaron SMITH met William Powell and Mary Smithson at the Bell Hall.", FULL_NAMES
    )
    assert spans == [(10, 21), (26, 40)]


def spans_until_budget(automaton, text, max_hits):
    """What `iter_spans` yields with `max_hits`, and whether it stopped for the budget."""
    yielded = []
    try:
        for span in automaton.iter_spans(text, max_hits=max_hits):
            yielded.append(span)
    except TooManyHits:
        return yielded, True
    return yielded, False


@pytest.mark.parametrize("seed", range(3))
def test_dense_overlapping_hits_settle_exactly_and_a_hit_budget_keeps_a_prefix(seed):
    """Few letters, keywords nesting and overlapping everywhere: the automaton settles each
    span from its stream of hits exactly as the reference; stopped by `max_hits`, what it
    yielded before is the start of the full answer."""
    rng = random.Random(seed)
    letters = "aAéÉ_ -"
    stopped = 0
    for _ in range(400):
        keywords = ["".join(rng.choices(letters, k=rng.randint(1, 7))) for _ in range(8)]
        keywords = [k for k in keywords if k.strip()] or ["a"]
        detector = KeywordsDetector(
            keywords=keywords,
            case_sensitive=rng.random() < 0.3,
            word_boundaries=rng.random() < 0.6,
        )
        automaton = KeywordAutomaton(detector)
        text = "".join(rng.choices(letters, k=rng.randint(0, 80)))
        expected = reference_keywords(text, detector)
        assert automaton.find(text) == expected, (keywords, text)
        yielded, budget_ran_out = spans_until_budget(automaton, text, rng.randint(0, 20))
        assert yielded == (expected[: len(yielded)] if budget_ran_out else expected)
        stopped += budget_ran_out
    assert stopped > 50


def test_nested_keywords_stop_at_the_hit_budget():
    """200 nested keywords make 200 hits a character; the budget stops the search early."""
    nested = [c * n for c in "aé" for n in range(1, 201)]
    automaton = KeywordAutomaton(KeywordsDetector(keywords=nested, word_boundaries=False))
    text = "é" * 10_000
    assert automaton.find(text) == [(i, i + 200) for i in range(0, 10_000, 200)]
    yielded, budget_ran_out = spans_until_budget(automaton, text, 25_000)  # 20,100 reach 200
    assert budget_ran_out and yielded == [(0, 200)]  # settled once hits end 200 past its start
