"""SkillMatcher: planted instances come back exactly; one pass equals the slow reference."""

import json
import random
from types import SimpleNamespace

import ahocorasick
import pytest

from curation.skills import keywords as keywords_module
from curation.skills import matcher as matcher_module
from curation.skills.instance import match_key
from curation.skills.matcher import SkillMatcher
from curation.skills.spec import SkillSpec
from tests.curation.skills.names import FULL_NAMES
from tests.curation.skills.reference import random_text, reference_find


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


def test_find_after_may_match_equals_the_reference_on_the_same_text_or_another():
    """A scan asks may_match, then find on the text it let through: find reuses that Set pass
    only for the very same bytes; any other text gets its own."""
    rng = random.Random(7)
    matcher = SkillMatcher(SPECS)
    texts = [random_text(rng, risky=rng.random() < 0.5) for _ in range(200)]
    for text, other in zip(texts, texts[1:] + texts[:1], strict=True):
        asked = text if rng.random() < 0.5 else other
        matcher.may_match(asked.encode("utf-8", "surrogatepass"))
        got = {sid: [(m.start, m.end) for m in ms] for sid, ms in matcher.find(text).items()}
        assert got == reference_find(SPECS, text), (text, asked == text)
    assert any(reference_find(SPECS, t) for t in texts)  # hits were among them


def test_may_match_rules_out_texts_without_hits():
    matcher = SkillMatcher([SPECS[0], SPECS[6]])  # a date regex, keywords
    assert not matcher.may_match(b"nothing to see here")
    assert not matcher.may_match("Ünïcödé alone is no hit".encode())  # risky characters only
    assert matcher.may_match(b"met in New York")
    assert not SkillMatcher([]).may_match(b"anything")


@pytest.mark.parametrize("pays", [True, False], ids=["screen kept", "screen dropped"])
def test_may_match_never_rules_out_a_hit_before_during_or_after_its_screen_probe(pays, monkeypatch):
    """may_match times its factor screen against its Set on the first texts and keeps the
    screen only if it pays; either way, and while it probes, a text with a hit passes."""
    monkeypatch.setattr(matcher_module, "SCREEN_WARMUP_TEXTS", 5)
    monkeypatch.setattr(matcher_module, "SCREEN_PROBE_TEXTS", 40)
    monkeypatch.setattr(matcher_module, "screen_pays", lambda *probe: pays)
    rng = random.Random(3)
    # Regexes and keyword sets with factors (`caf\pL+` has none: no screen at all).
    matcher = SkillMatcher([s for s in SPECS[:8] if s.id != "cafe"])
    assert matcher.screen is not None
    modes = set()
    for _ in range(150):
        text = random_text(rng, risky=rng.random() < 0.3)
        if matcher.find(text):
            assert matcher.may_match(text.encode("utf-8", "surrogatepass")), text
        else:
            matcher.may_match(text.encode("utf-8", "surrogatepass"))
        modes.add(matcher._screening)
    assert modes == {"probe", "on" if pays else "off"}
    assert matcher._probe.texts == 40


@pytest.mark.parametrize("pays", [True, False], ids=["line screen kept", "line screen dropped"])
def test_the_line_screen_is_kept_only_if_it_pays_and_never_rules_out_a_hit(pays, monkeypatch):
    monkeypatch.setattr(matcher_module, "SCREEN_WARMUP_TEXTS", 5)
    monkeypatch.setattr(matcher_module, "SCREEN_PROBE_TEXTS", 40)
    monkeypatch.setattr(matcher_module, "screen_pays", lambda *probe: pays)
    rng = random.Random(4)
    matcher = SkillMatcher([s for s in SPECS[:8] if s.id != "cafe"])
    ruled_out = []
    for i in range(150):
        text = random_text(rng, risky=rng.random() < 0.3) if i % 2 else "plain words only"
        # (the screen reads keys too: "text" would hold `x+`'s factor)
        line = json.dumps({"body": text}, ensure_ascii=False).encode("utf-8", "surrogatepass")
        passed = matcher.may_match_line(line)
        if i >= 45:  # settled: a kept screen answers, a dropped one says it is off (None)
            assert (passed is None) == (not pays)
        if matcher.find(text):
            assert passed is not False, text
        elif passed is False:
            ruled_out.append(i)
    assert matcher._line_probe.texts == 40 and matcher._line_screening == ("on" if pays else "off")
    # Dropped, every line after the probe passes; kept, the screen goes on ruling lines out.
    assert any(i >= 45 for i in ruled_out) == pays and ruled_out


def test_the_screen_pays_when_it_saves_a_tenth_of_the_set_pass():
    # Set alone: 1.0 s; screen 0.2 s then the Set on half the texts: 0.7 s.
    assert matcher_module.screen_pays(0.2, 1.0, 2000, 1000)
    # A screen passing 95% of the texts costs more than it saves.
    assert not matcher_module.screen_pays(0.2, 1.0, 2000, 1900)
    # Saving less than a tenth is noise: not worth keeping.
    assert not matcher_module.screen_pays(0.05, 1.0, 2000, 1900)
    assert matcher_module.screen_pays(0.0, 0.0, 0, 0)


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


@pytest.mark.parametrize("seed", range(2))
def test_first_matches_are_the_start_of_find(seed):
    rng = random.Random(seed)
    matcher = SkillMatcher(SPECS)
    for _ in range(200):
        risky = rng.random() < 0.5
        text = random_text(rng, risky=risky)
        if rng.random() < 0.2:
            text += "\ud800 x xx"  # a lone surrogate, as JSON can carry
        found = matcher.find(text)
        for skill in SPECS:
            everything = found.get(skill.id, [])
            for limit in (0, 1, 3):
                first, complete = matcher.first_matches(text, skill.id, limit)
                assert first == everything[:limit], (skill.id, text)
                assert complete == (len(everything) <= limit), (skill.id, text)
            if not risky:  # the automaton's hit budget runs out at once: RE2 finds the rest
                first, complete = matcher.first_matches(text, skill.id, 3, max_hits=1)
                assert (first, complete) == (everything[:3], len(everything) <= 3), text


class CountingAutomaton:
    """pyahocorasick's Automaton, counting the hits its searches yield."""

    hits = 0

    def __init__(self):
        self._automaton = ahocorasick.Automaton()

    def add_word(self, key, value):
        return self._automaton.add_word(key, value)

    def make_automaton(self):
        self._automaton.make_automaton()

    def iter(self, text):
        for hit in self._automaton.iter(text):
            CountingAutomaton.hits += 1
            yield hit


def nested(skill_id, keyword, **detector):
    """200 keywords, each in the next ("é", "éé", ...): 200 hits at every character."""
    keywords = [keyword * n for n in range(1, 201)]
    return spec(skill_id, {"kind": "keywords", "keywords": keywords} | detector)


PATHOLOGICAL = [  # (spec, text): every character starts or ends a hit or a match
    (nested("é-words", "é"), "é" * 400_000),  # no match at all (word boundaries), 80M hits
    (nested("é", "é", word_boundaries=False), "é" * 400_000),
    (nested("é-exact", "é", case_sensitive=True, word_boundaries=False), "é" * 400_000),
    (nested("a", "a", word_boundaries=False), "a" * 400_000),  # ASCII: RE2's path
    (
        spec("a-a-a", {"kind": "keywords", "keywords": [" ".join("a" * n) for n in range(1, 129)]}),
        "a " * 200_000,
    ),
    (spec("regex-a", {"kind": "regex", "pattern": "a"}), "a" * 400_000),
    (spec("regex-é", {"kind": "regex", "pattern": "é"}), "é" * 400_000),
    (spec("scan-ahead", {"kind": "regex", "pattern": "a.*b|a"}), "a" * 400_000),  # O(n) a match
    (SPECS[10], "cmp 1 2 : < " * 30_000),  # builtin, a regex
    (
        spec(
            "examples",
            {"kind": "builtin"},
            {
                "family": "examples",
                "params": {
                    "template": "{prompt}{answer}",
                    "examples": [{"prompt": "é" * n, "answer": "é"} for n in range(1, 201)],
                },
            },
        ),
        "é" * 400_000,
    ),  # builtin, keywords
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("skill", "text"), PATHOLOGICAL, ids=[s.id for s, _ in PATHOLOGICAL])
def test_first_matches_work_is_bounded_by_what_they_return(skill, text, monkeypatch):
    """Counted, not timed: RE2 searches (one per span) and automaton hits, on texts where
    `find` would make 400,000 matches or 80 million hits."""
    monkeypatch.setattr(
        keywords_module, "ahocorasick", SimpleNamespace(Automaton=CountingAutomaton)
    )
    monkeypatch.setattr(CountingAutomaton, "hits", 0)
    searches = 0
    byte_spans = matcher_module._byte_spans

    def counted(regexp, data):
        nonlocal searches
        for span in byte_spans(regexp, data):
            searches += 1
            yield span

    monkeypatch.setattr(matcher_module, "_byte_spans", counted)
    matcher = SkillMatcher([skill])
    first, complete = matcher.first_matches(text, skill.id, 100, max_hits=100_000)
    assert not complete
    assert searches <= 101 and CountingAutomaton.hits <= 100_001
    if first:  # the start of what a scan finds (in a head of the text, to find it all quickly)
        head = text[: first[-1].end + 1000]
        assert first == matcher.find(head)[skill.id][: len(first)]
