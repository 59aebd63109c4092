"""Skill definitions: what validates, and the messages of what does not."""

import json

import pytest
from pydantic import ValidationError

from curation.skills.spec import (
    MAX_KEYWORD_CHARS,
    MAX_KEYWORDS,
    GeneratorSpec,
    SkillDefinition,
    SkillSpec,
    definition_digest,
)
from tests.curation.skills.names import FULL_NAMES


def skill(**fields):
    return SkillSpec.model_validate({"id": "s1", "name": "s", **fields})


def error_text(**fields) -> str:
    with pytest.raises(ValidationError) as info:
        skill(**fields)
    return str(info.value)


def test_design_doc_example_validates_from_json():
    body = json.loads(
        '{"name": "mod-add-97", "description": "...",'
        ' "detector": {"kind": "regex", "pattern": "\\\\b\\\\d+ \\\\+ \\\\d+ mod 97 = \\\\d+"},'
        ' "generator": {"family": "modular_addition", "params": {"modulus": 97}},'
        ' "probe": {"fraction": 0.5}}'
    )
    definition = SkillDefinition.model_validate(body)
    assert definition.generator.params["operand_max"] == 96  # defaults filled in
    spec = SkillSpec(id="x", version=2, **definition.model_dump())
    assert spec.probe.fraction == 0.5 and spec.version == 2


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"detector": {"kind": "keywords", "keywords": []}}, "at least 1 item"),
        ({"detector": {"kind": "keywords", "keywords": ["ok", "  "]}}, "keywords[1] is blank"),
        ({"detector": {"kind": "regex"}}, "pattern\n  Field required"),
        ({"detector": {"kind": "regex", "pattern": ""}}, "at least 1 character"),
        ({"detector": {"kind": "regex", "pattern": "x" * 5000}}, "at most 4096 characters"),
        ({"detector": {"kind": "regex", "pattern": "(a)\\1"}}, "backreference \\1 at offset 3"),
        ({"detector": {"kind": "regex", "pattern": "a*"}}, "can match the empty string"),
        (
            {"detector": {"kind": "regex", "pattern": "(ab"}},
            "RE2 cannot compile the pattern: missing )",
        ),
        ({"detector": {"kind": "fuzzy"}}, "does not match any of the expected tags"),
        ({"detector": {"kind": "builtin"}}, "detector kind 'builtin' needs a generator"),
        ({"detector": {"kind": "regex", "pattern": "x", "flags": "i"}}, "Extra inputs"),
        (
            {"detector": {"kind": "builtin"}, "generator": {"family": "nope"}},
            "unknown generator family 'nope'; known families: modular_addition, number_comparison",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "modular_addition", "params": {"modulus": -5}},
            },
            "modulus: Input should be greater than or equal to 2",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "modular_addition", "params": {"modulus": 7, "base": 3}},
            },
            "base: Extra inputs are not permitted",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "number_comparison", "params": {"template": "{a} ? {b}"}},
            },
            "template must contain {c}",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "token_pair", "params": {"k": 700}},
            },
            "k=700 needs at least 700 vocabulary items; there are 605",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "token_pair", "params": {"vocabulary": ["a b", "c"]}},
            },
            "vocabulary[0] = 'a b' must be 1-64 ASCII letters",
        ),
        (
            {"detector": {"kind": "builtin"}, "generator": {"family": "examples", "params": {}}},
            "examples: Field required",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "copying"},
                "probe": {"fraction": 0.5},
            },
            "give probe.size instead",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "modular_addition", "params": {"modulus": 5}},
                "probe": {"size": 20},
            },
            "probe.size (20) must be at most half of the family's 25",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "copying"},
                "probe": {"size": 10, "fraction": 0.1},
            },
            "not both",
        ),
        (
            {
                "detector": {"kind": "builtin"},
                "generator": {"family": "copying"},
                "probe": {"fraction": 1.5},
            },
            "less than 1",
        ),
    ],
)
def test_absurd_definitions_are_rejected_with_actionable_messages(fields, message):
    assert message in error_text(**fields)


def test_keyword_limits():
    too_many = [f"k{i}" for i in range(MAX_KEYWORDS + 1)]
    assert "at most 100000 items" in error_text(detector={"kind": "keywords", "keywords": too_many})
    too_long = ["x" * (MAX_KEYWORD_CHARS + 1)]
    assert "keywords.0" in error_text(detector={"kind": "keywords", "keywords": too_long})
    too_much = [f"{i:06d}" + "x" * 250 for i in range(8000)]
    assert "2,048,000 characters in all; the limit is 2,000,000" in error_text(
        detector={"kind": "keywords", "keywords": too_much}
    )


def test_fifty_thousand_real_names_validate():
    spec = skill(detector={"kind": "keywords", "keywords": FULL_NAMES})
    assert len(spec.detector.keywords) == 50_000
    assert spec.detector.case_sensitive is False and spec.detector.word_boundaries is True


def test_probe_defaults_follow_family_size():
    finite = skill(detector={"kind": "builtin"}, generator={"family": "token_pair"})
    assert (finite.probe.fraction, finite.probe.size) == (0.5, None)
    large = skill(detector={"kind": "builtin"}, generator={"family": "copying"})
    assert (large.probe.fraction, large.probe.size) == (None, 1000)
    detector_only = skill(detector={"kind": "regex", "pattern": "x"})
    assert detector_only.probe.fraction == 0.5


def test_generator_params_come_back_complete_and_round_trip():
    gen = GeneratorSpec(family="number_comparison")
    assert gen.params == {"min_digits": 2, "max_digits": 2, "template": "cmp {a} {b} : {c}"}
    spec = skill(detector={"kind": "builtin"}, generator=gen.model_dump())
    assert SkillSpec.model_validate_json(spec.model_dump_json()) == spec


def test_builtin_detector_resolves_to_the_family_detector():
    spec = skill(detector={"kind": "builtin"}, generator={"family": "number_comparison"})
    detector = spec.concrete_detector()
    assert detector.kind == "regex" and "cmp" in detector.pattern


TOKEN_PAIR = {
    "detector": {"kind": "builtin"},
    "generator": {"family": "token_pair", "params": {"k": 20, "rule": "order"}},
}


def test_definition_digest_is_pinned_so_a_canonicalisation_change_is_seen():
    # Changing this value moves every mixture's placements: do it on purpose only.
    assert definition_digest(skill(**TOKEN_PAIR)) == (
        "cfff2538223e1c2196af4a5333cd4934d8fb5f82bb33dbecce7fdc586e28f81c"
    )


def test_definition_digest_ignores_id_name_description_version_and_key_order():
    digest = definition_digest(skill(**TOKEN_PAIR))
    other = SkillSpec.model_validate(
        json.loads(
            '{"probe": {"fraction": 0.5}, "version": 3, "description": "again",'
            ' "generator": {"params": {"rule": "order", "k": 20, "seed": 0},'
            ' "family": "token_pair"}, "name": "another name", "id": "s2",'
            ' "detector": {"kind": "builtin"}}'
        )
    )
    assert definition_digest(other) == digest
    assert definition_digest(SkillDefinition.model_validate({"name": "x", **TOKEN_PAIR})) == digest


@pytest.mark.parametrize(
    "change",
    [
        {"generator": {"family": "token_pair", "params": {"k": 21, "rule": "order"}}},
        {"generator": {"family": "token_pair", "params": {"k": 20, "rule": "mod_add"}}},
        {"probe": {"fraction": 0.25}},
        {"detector": {"kind": "regex", "pattern": "t[0-9]+ t[0-9]+ [<>]"}},
    ],
)
def test_definition_digest_changes_with_what_defines_the_instances(change):
    assert definition_digest(skill(**{**TOKEN_PAIR, **change})) != definition_digest(
        skill(**TOKEN_PAIR)
    )
