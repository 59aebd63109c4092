"""Readouts on stub "models" whose answers we know: forced choice, format rate, margin,
exact match with the end, and the hard-stratum check (training.evaluate, training.verdict)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from curation.skills.probes import probe_instances
from curation.skills.spec import SkillSpec
from tests.training.mixtures import cmp_skill, prose, with_natural, write_mixture
from training import verdict as v
from training.data import open_mixture
from training.evaluate import (
    EOS,
    EvalSpec,
    Evaluator,
    _encode,
    instance_keys,
    label_sequences,
    natural_probe_keys,
    score_answers,
    skill_labels,
)
from training.verify import _thresholds, natural_collisions, skill_metric

VOCAB = 257


class Stub(torch.nn.Module):
    """Logits from a rule over each row's text so far: `answer(prefix)` returns
    {token: logit} for the next token (the rest get `floor`), or None for flat logits."""

    def __init__(self, answer, floor: float = 0.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a device to read
        self.answer, self.floor = answer, floor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*x.shape, VOCAB)
        for i, row in enumerate(x.tolist()):
            for t in range(len(row)):
                prefix = bytes(b for b in row[: t + 1] if b < 256).decode()
                got = self.answer(prefix) if EOS not in row[: t + 1] else None
                if got is not None:
                    out[i, t] = self.floor
                    for token, logit in got.items():
                        out[i, t, token] = logit
        return out


def tens_only(prefix: str) -> dict[int, float] | None:
    """Knows the tens digit only: on equal tens it always says `<`; ends every answer."""
    if prefix.endswith((" <", " >", " =")):
        return {EOS: 20.0}
    if not prefix.endswith(" : "):
        return None
    a, b = (int(n) for n in prefix.split()[1:3])
    label = "<" if a // 10 < b // 10 else ">" if a // 10 > b // 10 else "<"
    return {ord(label): 20.0}


@pytest.fixture(scope="module")
def probes():
    skill = cmp_skill()
    held = probe_instances(skill)
    strata = [skill.family.stratum(i) for i in held]
    answers = _encode(skill, [(i.text, i.answer) for i in held], 31, strata=strata)
    return skill, answers


def test_a_tens_digit_model_passes_exact_match_but_the_stratum_check_flags_it(probes):
    skill, answers = probes
    scores = score_answers(Stub(tens_only, floor=-20.0), answers, 512, skill_labels(skill))
    line = _thresholds([skill], None, "exact")["cmp"]
    assert line["chance"] == pytest.approx(0.494, abs=0.01)  # `<` or `>`, `=` is rare
    assert scores["acc"] > 0.93 and scores["acc"] >= line["threshold"]  # passes the verdict
    stratum = scores["strata"]["equal_leading_digit"]
    chance = line["strata"]["equal_leading_digit"]["chance"]
    assert stratum["n"] > 300 and chance == pytest.approx(0.45, abs=0.03)
    assert stratum["acc"] == pytest.approx(chance, abs=0.05)  # guessing on equal tens
    assert stratum["forced_choice"] == pytest.approx(chance, abs=0.05)
    row = v.verdict("cmp", "nano", "up", [scores["acc"]] * 5, line["threshold"], metric="exact")
    assert row["verdict"] == "retained" and "metric: exact" in row["rule"]
    check = v.stratum_check(
        "equal_leading_digit", [0, 1, 2, 3, 4], [scores["acc"]] * 5,
        [stratum["acc"]] * 5, [stratum["n"]] * 5, line["threshold"], line["chance"], chance,
    )  # fmt: skip
    assert check["flagged_seeds"] == [0, 1, 2, 3, 4]
    assert "heuristic, not the rule" in check["warning"]
    assert all(p > v.STRATUM_P for p in check["p_vs_chance"])  # indistinguishable from chance
    # A model that knows the rule is not flagged.
    assert v.stratum_check("s", [0], [0.99], [0.98], [90], 0.75, 0.49, 0.45)["warning"] is None


def test_a_uniform_model_scores_one_over_k_with_full_format_rate(probes):
    skill, answers = probes
    labels = {ord(c) for c in "<>="}
    uniform = Stub(lambda p: {t: 0.0 for t in labels} if p.endswith(" : ") else None, -1e4)
    scores = score_answers(uniform, answers, 512, skill_labels(skill))
    assert scores["forced_choice"] == pytest.approx(1 / 3)  # ties share the credit
    assert scores["format_rate"] == pytest.approx(1.0)
    assert scores["margin"] == pytest.approx(0.0)
    assert scores["acc"] == 0.0  # argmax breaks the tie to `<`, then no end


def test_a_model_with_no_mass_on_labels_has_format_rate_zero_and_chance_choice(probes):
    skill, answers = probes
    elsewhere = Stub(lambda p: {ord("x"): 30.0} if p.endswith(" : ") else None)
    scores = score_answers(elsewhere, answers, 512, skill_labels(skill))
    assert scores["format_rate"] < 1e-10
    assert scores["forced_choice"] == pytest.approx(1 / 3)  # the labels tie
    assert scores["acc"] == 0.0


def test_exact_match_requires_the_end_of_a_variable_length_answer():
    skill = SkillSpec(
        id="mod", name="mod", detector={"kind": "builtin"},
        generator={"family": "modular_addition", "params": {"modulus": 97}},
    )  # fmt: skip
    answers = _encode(skill, [("3 + 54 mod 97 = 57", "57"), ("2 + 3 mod 97 = 5", "5")], 31)

    def says_57_then_end(prefix: str) -> dict[int, float] | None:
        if prefix.endswith("= "):
            return {ord("5"): 10.0}
        if prefix.endswith("= 5"):
            return {ord("7"): 10.0}
        return {EOS: 10.0} if prefix.endswith("= 57") else None

    scores = score_answers(Stub(says_57_then_end, floor=-30.0), answers, 8, skill_labels(skill))
    assert scores["acc"] == 0.5  # `5` is a prefix of `57`: no credit without its end
    assert scores["forced_choice"] == 0.5  # labels are scored with their end (not prefix-free)
    assert 0.99 < scores["format_rate"] <= 1.0
    assert label_sequences(["<", ">"]) == [[60], [62]]
    assert label_sequences(["5", "57"]) == [[53, EOS], [53, 55, EOS]]


def test_the_default_metric_and_a_metric_the_family_cannot_provide():
    cmp = cmp_skill()
    assert skill_metric(cmp, None) == "forced_choice" and skill_metric(cmp, "exact") == "exact"
    adder = SkillSpec(
        id="add", name="add", detector={"kind": "builtin"},
        generator={"family": "multi_digit_addition", "params": {}},
    )  # fmt: skip
    assert skill_metric(adder, None) == "exact"
    with pytest.raises(ValueError, match="no label set"):
        skill_metric(adder, "forced_choice")
    with pytest.raises(ValueError, match="unknown metric"):
        skill_metric(cmp, "bleu")


def test_chance_is_the_most_common_answer_share():
    assert v.chance_level(["<", ">"] * 5) == 0.5
    assert v.chance_level(["<"] * 3 + [">"]) == 0.75
    assert v.chance_level([str(i) for i in range(97)]) == pytest.approx(1 / 97)
    assert v.chance_level([]) == 0.0
    assert v.stratum_threshold(0.75, 0.5, 0.5) == 0.75
    assert v.stratum_threshold(0.75, 0.5, 0.0) == pytest.approx(0.5)
    assert math.isclose(v.stratum_threshold(0.6, 0.2, 0.2), 0.6)


def test_binomial_p_value_known_values():
    # P(X >= 8 | n=10, p=0.5) = (45 + 10 + 1) / 1024; P(X >= 0) = 1
    assert v.binomial_p_greater(8, 10, 0.5) == pytest.approx(56 / 1024)
    assert v.binomial_p_greater(0, 10, 0.3) == 1.0
    assert v.binomial_p_greater(10, 10, 0.5) == pytest.approx(1 / 1024)
    # R: binom.test(60, 100, 0.5, alternative = "greater")$p.value = 0.02844397
    assert v.binomial_p_greater(60, 100, 0.5) == pytest.approx(0.02844397, rel=1e-6)
    assert 0 < v.binomial_p_greater(2300, 4000, 0.55) < 1


@pytest.mark.parametrize(
    ("successes", "n", "p"), [(8, 10, 0.5), (0, 10, 0.3), (37, 80, 0.45), (2300, 4000, 0.55)]
)
def test_binomial_p_value_agrees_with_scipy(successes: int, n: int, p: float) -> None:
    # Hand-written so that the training extra needs no scipy; scipy (dev) checks it.
    from scipy.stats import binomtest

    expected = binomtest(successes, n, p, alternative="greater").pvalue
    assert v.binomial_p_greater(successes, n, p) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def row_start_only(prefix: str) -> dict[int, float] | None:
    """Knows the rule only where the instance starts the row (as a placed one does)."""
    if not prefix.startswith("cmp "):
        return None
    if prefix.endswith((" <", " >", " =")):
        return {EOS: 20.0}
    if not prefix.endswith(" : "):
        return None
    a, b = (int(n) for n in prefix.split()[1:3])
    return {ord("<" if a < b else ">" if a > b else "="): 20.0}


def test_probes_read_mid_row_after_heldout_text(skill, heldout_docs, mixture_dir):
    spec = EvalSpec(skills=[skill], heldout=heldout_docs, n_probe=64, n_seen=4)
    evaluator = Evaluator.build(spec, open_mixture(mixture_dir), 40)
    probes, moved = evaluator.probes["cmp"], evaluator.midrow["cmp"]
    assert len(moved) == len(probes) and moved.inputs.shape[1] <= 31
    first = bytes(t for t in moved.inputs[0].tolist() if t < 256).decode()
    original = bytes(t for t in probes.inputs[0].tolist() if t < 256).decode()
    assert first.endswith(original) and len(first) - len(original) >= 8
    assert not first.startswith("cmp ")
    scores = evaluator.evaluate(Stub(row_start_only, floor=-20.0))["skills"]["cmp"]
    assert scores["heldout_forced_choice"] == 1.0 and scores["heldout_acc"] == 1.0
    assert scores["heldout_midrow_forced_choice"] == pytest.approx(1 / 3)  # flat: labels tie
    assert scores["heldout_midrow_acc"] == 0.0
    without = Evaluator.build(
        dataclasses.replace(spec, midrow=False), open_mixture(mixture_dir), 40
    )
    assert without.midrow == {}


def test_probe_instances_found_in_the_corpus_leave_the_sample(tmp_path, skill):
    planted = probe_instances(skill)[:40]
    docs = with_natural(prose(0), iter(planted * 20), rate=4.0, seed=0)
    path = write_mixture(tmp_path / "m", docs, n_batches=60, seq_len=32, seqs_per_batch=4)
    mixture = open_mixture(path)
    found = natural_probe_keys(mixture, [skill], 60)["cmp"]
    keys = instance_keys(skill, planted)
    assert found["occurrences"] >= len(found["keys"]) > 5
    assert set(found["keys"]) <= set(keys)
    everything = len(probe_instances(skill))
    spec = EvalSpec(skills=[skill], n_probe=10_000, n_seen=4, midrow=False)
    assert len(Evaluator.build(spec, mixture, 60).probes["cmp"]) == everything
    spec = dataclasses.replace(spec, exclude_probes={"cmp": found["keys"]})
    kept = Evaluator.build(spec, mixture, 60).probes["cmp"]
    assert len(kept) == everything - len(found["keys"])
    texts = {bytes(t for t in row.tolist() if t < 256).decode() for row in kept.inputs}
    excluded = {i.text for i, k in zip(planted, keys, strict=True) if k in set(found["keys"])}
    assert not any(t.rstrip(" <>=") in {e.rstrip(" <>=") for e in excluded} for t in texts)
    # The verification counts them, per arm, and leaves them out of the chance level too.
    line = _thresholds([skill], None, None, {"cmp": {**found, "occurrences_by_arm": {"a": 3}}})
    assert line["cmp"]["probe_collisions"]["excluded_instances"] == len(found["keys"])
    assert line["cmp"]["probe_collisions"]["occurrences_by_arm"] == {"a": 3}
    assert natural_collisions({"a": mixture}, [skill], 60)["cmp"]["keys"] == found["keys"]
