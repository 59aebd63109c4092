"""SkillMatcher: planted instances come back exactly; one pass equals the slow reference."""

import random

import pytest

from curation.skills import matcher as matcher_module
from curation.skills.instance import match_key
from curation.skills.matcher import SkillMatcher
from curation.skills.spec import SkillSpec
from tests.curation.skills_names import FULL_NAMES
from tests.curation.skills_reference import random_text, reference_find


def spec(skill_id, detector, generator=None):
    return SkillSpec(id=skill_id, name=skill_id, detector=detector, generator=generator)


SPECS = [
    spec("date", {"kind": "regex", "pattern": r"\b\d{4}-\d{2}-\d{2}\b"}),
    spec("mod", {"kind": "regex", "pattern": r"\b\d+ \+ \d+ mod 13 = \d+"}),
    spec("cafe", {"kind": "regex", "pattern": r"caf\pL+", "case_sensitive": False}),
    spec("york", {"kind": "regex", "pattern": r"York|New York"}),
    spec("xs", {"kind": "regex", "pattern": r"x+"}),
    spec("email", {"kind": "regex", "pattern": r"[\w.]+@\w+\.org"}),
    spec("places", {"kind": "keywords", "keywords": ["New York", "york", "İstanbul", "ΟΔΟΣ"]}),
    spec(
        "code", {"kind": "keywords", "keywords": ["C++", "foo_bar", "Cat"], "case_sensitive": True}
    ),
    spec("sub", {"kind": "keywords", "keywords": ["ew", "e", "at"], "word_boundaries": False}),
    spec("names", {"kind": "keywords", "keywords": FULL_NAMES[:5000] + ["Zebra Tiger"]}),
    spec("cmp", {"kind": "builtin"}, {"family": "number_comparison", "params": {"min_digits": 1}}),
    spec("tok", {"kind": "builtin"}, {"family": "token_pair", "params": {"k": 600}}),
    spec(
        "ex",
        {"kind": "builtin"},
        {
            "family": "examples",
            "params": {"examples": [{"prompt": "12 + 1 mod 13", "answer": "="}]},
        },
    ),
]


def test_each_detector_kind_finds_exactly_the_planted_instances():
    text = (
        "On 2024-01-02, 3 + 4 mod 13 = 7 in New York (not Yorkshire); CAFÉ au lait; "
        "C++ and c++; cmp 47 52 : < ; aaron smith was there."
    )
    found = SkillMatcher(SPECS).find(text)

    def spans(skill_id):
        return [text[m.start : m.end] for m in found.get(skill_id, [])]

    assert spans("date") == ["2024-01-02"]
    assert spans("mod") == ["3 + 4 mod 13 = 7"]
    assert spans("cafe") == ["CAFÉ"]
    assert spans("york") == ["New York", "York"]  # leftmost, then first alternative
    assert spans("places") == ["New York"]
    assert spans("code") == ["C++"]
    assert spans("cmp") == ["cmp 47 52 : <"]
    assert spans("names") == ["aaron smith"]
    assert "xs" not in found and "ex" not in found
    assert found["cmp"][0].key == match_key("CMP 47 52 : <")
    assert list(found) == [s.id for s in SPECS if s.id in found]  # spec order


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rent", [0.0, 1.0, None], ids=["re2", "automaton", "switching"])
def test_one_pass_equals_the_slow_reference(seed, rent, monkeypatch):
    if rent is not None:  # keyword sets on safe texts: always RE2, or always the automaton
        monkeypatch.setattr(matcher_module, "RE2_SECONDS_PER_CHAR", rent)
    rng = random.Random(seed)
    matcher = SkillMatcher(SPECS)
    for _ in range(300):
        text = random_text(rng, risky=rng.random() < 0.5)
        got = {sid: [(m.start, m.end) for m in ms] for sid, ms in matcher.find(text).items()}
        assert got == reference_find(SPECS, text), text
        if got:  # may_match is the reader's prefilter: it must never rule out a hit
            assert matcher.may_match(text.encode("utf-8", "surrogatepass")), text


def test_may_match_rules_out_texts_without_hits():
    matcher = SkillMatcher([SPECS[0], SPECS[6]])  # a date regex, keywords
    assert not matcher.may_match(b"nothing to see here")
    assert not matcher.may_match("Ünïcödé alone is no hit".encode())  # risky characters only
    assert matcher.may_match(b"met in New York")
    assert not SkillMatcher([]).may_match(b"anything")


def test_keys_are_of_the_normalised_matched_text():
    matcher = SkillMatcher([SPECS[1]])
    a, b = matcher.find("3 + 4 mod 13 = 7")["mod"], matcher.find("x 3 + 4 MOD 13 = 7")
    assert b == {}
    assert a[0].key == match_key(" 3 + 4 mod 13 = 7 ")


def test_duplicate_skill_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate skill ids: date"):
        SkillMatcher([SPECS[0], SPECS[0]])


def test_a_lone_surrogate_from_json_is_matched_as_a_replacement_character():
    matcher = SkillMatcher(SPECS)
    text = "cmp 3 4 : < \ud800 New York\ud800 2024-01-02"  # json.loads accepts "\ud800"
    assert matcher.find_spans(text) == matcher.find_spans(text.replace("\ud800", "\ufffd"))
    found = matcher.find(text)
    assert {m.start for m in found["date"]} == {text.index("2024")}
    assert [text[m.start : m.end] for m in found["places"]] == ["New York"]
