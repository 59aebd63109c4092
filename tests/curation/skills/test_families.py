"""Generator families: determinism, sizes, enumeration, and detectors that parse back."""

import random

import pytest

from curation.skills.families import FAMILIES, build_family, family_catalog
from curation.skills.instance import canonical_key, match_key, normalise
from curation.skills.matcher import SkillMatcher
from curation.skills.spec import SkillSpec

EXAMPLES = {
    "examples": [
        {"prompt": "Capital of France?", "answer": "Paris"},
        {"prompt": "Capital of Peru?", "answer": "Lima"},
        {"prompt": "capital of  FRANCE?", "answer": "paris"},  # same instance, reformatted
    ]
}
PARAMS = {
    "modular_addition": {"modulus": 13},
    "number_comparison": {"min_digits": 1, "max_digits": 2},
    "token_pair": {"k": 20, "rule": "mod_add"},
    "copying": {"vocab_size": 5, "min_len": 2, "max_len": 3},
    "multi_digit_addition": {"min_digits": 1, "max_digits": 2},
    "examples": EXAMPLES,
}
SIZES = {
    "modular_addition": 169,
    "number_comparison": 100 * 100,
    "token_pair": 400,
    "copying": 25 + 125,
    "multi_digit_addition": 100 * 100,
    "examples": 2,
}


def test_every_family_is_covered():
    assert set(PARAMS) == set(FAMILIES)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_sampling_is_deterministic_for_a_seed(name):
    family = build_family(name, PARAMS[name])
    first = family.sample(random.Random(3), 50)
    assert first == build_family(name, PARAMS[name]).sample(random.Random(3), 50)
    assert first != family.sample(random.Random(4), 50) or family.size < 5


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_enumeration_is_complete_and_distinct(name):
    family = build_family(name, PARAMS[name])
    instances = list(family.enumerate())
    assert family.finite and family.size == SIZES[name] == len({i.key for i in instances})
    for instance in instances[:50]:
        assert instance.key == canonical_key(instance.prompt, instance.answer)
        assert instance.text.startswith(instance.prompt)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_builtin_detector_finds_and_parses_planted_instances(name):
    family = build_family(name, PARAMS[name])
    spec = SkillSpec(
        id=name,
        name=name,
        detector={"kind": "builtin"},
        generator={"family": name, "params": PARAMS[name]},
    )
    planted = family.sample(random.Random(5), 5)
    text, spans = "Intro words here.", []
    for instance in planted:
        text += " Then "
        spans.append((len(text), len(text) + len(instance.text)))
        text += instance.text
    text += ". Done."
    found = SkillMatcher([spec]).find(text)[name]
    assert [(m.start, m.end) for m in found] == spans
    for match, instance in zip(found, planted, strict=True):
        assert match.key == match_key(instance.text)
        prompt, answer = family.parse(text[match.start : match.end])
        assert canonical_key(prompt, answer) == instance.key


def test_rendered_examples():
    assert [i.text for i in build_family("modular_addition", {"modulus": 13}).enumerate()][:2] == [
        "0 + 0 mod 13 = 0",
        "0 + 1 mod 13 = 1",
    ]
    order = build_family("token_pair", {"k": 4, "seed": 1})
    texts = [i.text for i in order.enumerate()]
    assert len(texts) == 12 and all(t.split()[2] in "<>" for t in texts)
    items = order.items
    assert f"{items[0]} {items[3]} <" in texts and f"{items[3]} {items[0]} >" in texts
    mod_add = build_family("token_pair", {"k": 4, "seed": 1, "rule": "mod_add"})
    assert mod_add.items == items
    assert f"{items[2]} {items[3]} {items[1]}" in [i.text for i in mod_add.enumerate()]
    assert all(w.isalpha() and w.islower() for w in items)  # words, not digit strings
    cmp = build_family("number_comparison", {})
    assert cmp.draw(random.Random(0)).text.startswith("cmp ")


def test_detector_does_not_fire_on_near_misses():
    spec = SkillSpec(
        id="m",
        name="m",
        detector={"kind": "builtin"},
        generator={"family": "modular_addition", "params": {"modulus": 13}},
    )
    text = "3 + 4 mod 17 = 7; x3 + 4 mod 13 = 7; 3 + 4 mod 13 = 7x; 3  +  4 mod 13 =\t7"
    found = SkillMatcher([spec]).find(text)["m"]
    assert [text[m.start : m.end] for m in found] == ["3  +  4 mod 13 =\t7"]
    assert found[0].key == match_key("3 + 4 mod 13 = 7")


def test_large_families_are_not_enumerated():
    family = build_family("copying", {})
    assert not family.finite and family.size > 10**15
    with pytest.raises(ValueError, match="only families of at most 1,000,000"):
        family.enumerate()


def test_examples_dedupe_and_parse():
    family = build_family("examples", EXAMPLES)
    assert family.size == 2
    assert family.parse("CAPITAL of France?   Paris") == ("Capital of France?", "Paris")
    assert normalise(family.instances[0].text) == "capital of france? paris"


def test_catalog_lists_every_family_with_schema_and_example():
    catalog = {entry["family"]: entry for entry in family_catalog()}
    assert set(catalog) == set(FAMILIES)
    schema = catalog["modular_addition"]["params_schema"]
    assert schema["properties"]["modulus"]["minimum"] == 2
    assert catalog["number_comparison"]["example"]["text"].startswith("cmp ")
    assert catalog["examples"]["example"] is None
    assert all(entry["description"] for entry in catalog.values())
