"""Probe split: decided by the key, disjoint from train, complete, stable."""

import random

import pytest

from curation.skills.matcher import SkillMatcher
from curation.skills.probes import (
    SkillGenerator,
    probe_instances,
    probe_match_keys,
    probe_score,
    sample_instances,
)
from curation.skills.spec import SkillSpec


def builtin(family, params=None, probe=None, skill_id="s"):
    fields = {
        "id": skill_id,
        "name": skill_id,
        "detector": {"kind": "builtin"},
        "generator": {"family": family, "params": params or {}},
    }
    return SkillSpec.model_validate(fields | ({"probe": probe} if probe else {}))


@pytest.mark.parametrize(
    "spec",
    [
        builtin("token_pair", {"k": 20}),
        builtin("token_pair", {"k": 20, "rule": "mod_add"}),
        builtin("modular_addition", {"modulus": 13}),
        builtin("modular_addition", {"modulus": 13}, probe={"size": 30}),
    ],
    ids=["token_pair-order", "token_pair-mod_add", "modular_addition", "modular_addition-size"],
)
def test_split_is_disjoint_complete_and_train_sampling_never_returns_a_probe(spec):
    generator = SkillGenerator(spec)
    everything = {i.key for i in spec.family.enumerate()}
    probe = {i.key for i in generator.instances("probe")}
    train = {i.key for i in generator.instances("train")}
    assert probe | train == everything and not probe & train
    assert 0 < len(probe) < len(everything)
    if spec.probe.size:
        assert len(probe) == spec.probe.size
    samples = generator.sample(random.Random(0), 10_000)
    assert len(samples) == 10_000 and not {i.key for i in samples} & probe
    assert {i.key for i in generator.sample(random.Random(1), 2_000, split="probe")} <= probe


def test_split_is_a_property_of_the_instance():
    # A constant salt: the same instance is held out for every skill id and version.
    a = builtin("modular_addition", {"modulus": 13}, skill_id="a")
    b = builtin("modular_addition", {"modulus": 13, "operand_max": 5}, skill_id="b")
    probe_a = {i.key for i in probe_instances(a)}
    probe_b = {i.key for i in probe_instances(b)}
    assert probe_b <= probe_a and probe_b
    assert probe_score("0" * 32) == probe_score("0" * 32) and 0 <= probe_score("x") < 1


def test_fraction_nests():
    small = builtin("token_pair", {"k": 20}, probe={"fraction": 0.2})
    large = builtin("token_pair", {"k": 20}, probe={"fraction": 0.6})
    assert {i.key for i in probe_instances(small)} < {i.key for i in probe_instances(large)}


def test_sampling_is_deterministic():
    spec = builtin("copying")
    assert sample_instances(spec, 20, seed=3) == sample_instances(spec, 20, seed=3)
    assert sample_instances(spec, 20, seed=3) != sample_instances(spec, 20, seed=4)


def test_size_mode_for_large_families():
    spec = builtin("copying", probe={"size": 200})
    probes = probe_instances(spec)
    assert len({i.key for i in probes}) == 200
    assert probe_instances(spec) == probes  # a fixed stream: same set every time
    assert probe_instances(spec, n=5) == probes[:5]
    probe_keys = {i.key for i in probes}
    assert not {i.key for i in sample_instances(spec, 5_000)} & probe_keys


def test_probe_match_keys_flag_probe_copies_in_text():
    spec = builtin("number_comparison")
    keys = probe_match_keys(spec)
    probes = probe_instances(spec)
    assert len(keys) == len(probes) == len({i.key for i in probes})
    train = sample_instances(spec, 1, seed=0)[0]
    text = f"noise {probes[0].text.replace(' ', '   ')}  and {train.text}."
    found = SkillMatcher([spec]).find(text)[spec.id]
    assert [m.key in keys for m in found] == [True, False]


def test_skill_without_generator_has_no_probes():
    spec = SkillSpec(id="k", name="k", detector={"kind": "keywords", "keywords": ["x"]})
    assert probe_instances(spec) == [] and probe_match_keys(spec) == frozenset()
    with pytest.raises(ValueError, match="has no generator"):
        SkillGenerator(spec)


def test_an_empty_split_is_an_error_not_a_hang():
    spec = builtin(
        "examples", {"examples": [{"prompt": "p", "answer": "a"}]}, probe={"fraction": 0.01}
    )
    generator = SkillGenerator(spec)
    split = generator.split_of(spec.family.instances[0].key)
    other = "probe" if split == "train" else "train"
    with pytest.raises(ValueError, match=f"the {other} split looks empty"):
        generator.sample(random.Random(0), 1, split=other)
