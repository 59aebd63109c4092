"""plan_mixture: numbers, errors a person can act on, and danger-zone warnings. No files."""

import re

import pytest
from pydantic import ValidationError

from curation.mixture import DosingPlan, PlanError, plan_mixture
from curation.mixture.danger import DANGER_EXPOSURES, DANGER_REPEATED_SHARE, skill_label

BATCH = 8192


def spec(sid, family=None, params=None, detector=None, name=None):
    body = {"id": sid, "name": name or sid, "detector": detector or {"kind": "builtin"}}
    if family:
        body["generator"] = {"family": family, "params": params or {}}
    return body


TOKEN_PAIR = spec("tp", "token_pair", {"k": 20}, name="token pairs")
DATES = spec(
    "date", detector={"kind": "regex", "pattern": r"\b\d{4}-\d{2}-\d{2}\b"}, name="ISO dates"
)
SKILLS = [TOKEN_PAIR, DATES]


def scan(instances=None, docs=1000, nbytes=999_000, extra=None):
    """A scan report: per skill (instances, unique_instances); 10 bytes per instance."""
    skills = {}
    for sid, (n, unique) in (instances or {"tp": (0, 0), "date": (3, 3)}).items():
        skills[sid] = {
            "instances": n,
            "unique_instances": unique,
            "max_repeats": 1,
            "instance_tokens": 10.0 * n,
            "token_fraction": 10.0 * n / nbytes,
            "probe_collisions": 0,
            "gap_tokens": None,
            **(extra or {}).get(sid, {}),
        }
    return {"skills": skills, "corpus": {"docs_scanned": docs, "bytes_scanned": nbytes}}


def dosing(**skills):
    return DosingPlan(batch_tokens=BATCH, seq_len=64, skills=skills)


def test_numbers_of_a_synthesized_uniform_plan():
    plan = plan_mixture(scan(), SKILLS, dosing(tp={"target": {"per_batch": 2.5}}))
    assert plan.n_batches == 1_000_000 // BATCH == 122
    tp = plan.to_dict()["skills"]["tp"]
    assert (tp["source"], tp["source_requested"], tp["spacing"]) == (
        "synthesize",
        "auto",
        "uniform",
    )
    assert tp["placements"] == 305 and tp["max_per_batch"] == 3
    assert tp["unique_available"] == 175 and tp["unique_available_exact"]  # train half of 380
    assert tp["new_instances"] == 175 and tp["copies_per_unique"]["max"] == 2
    assert plan.counts["tp"].tolist()[:4] == [2, 3, 2, 3]
    estimates = plan.to_dict()["estimates"]
    assert estimates["inserted_tokens"] == round(305 * tp["placement_tokens"])
    assert estimates["corpus_tokens_dropped"] == 1_000_000 - 122 * BATCH + round(
        305 * tp["placement_tokens"]
    )
    assert plan.warnings == []


def test_fraction_converts_through_the_mean_instance_length():
    plan = plan_mixture(scan(), SKILLS, dosing(tp={"target": {"fraction": 0.01}}))
    tp = plan.skills["tp"]
    assert tp.per_batch == pytest.approx(0.01 * BATCH / tp.mean_instance_tokens)
    assert tp.token_share == pytest.approx(0.01, rel=0.02)


def test_every_and_the_batch_geometry():
    plan = plan_mixture(scan(), SKILLS, dosing(tp={"target": {"every": {"n": 10, "k": 10}}}))
    assert plan.counts["tp"].nonzero()[0].tolist() == list(range(0, 122, 10))
    assert plan.to_dict()["seqs_per_batch"] == 128


def test_repeat_beyond_the_cap_names_the_numbers_and_the_fixes():
    plan = dosing(date={"target": {"per_batch": 2}, "max_repeats": 4})
    with pytest.raises(PlanError) as caught:
        plan_mixture(scan(), SKILLS, plan)
    message = str(caught.value)
    assert message.startswith(  # by name: the person reading it knows the skill by its name
        "skill 'ISO dates': the corpus has 3 unique instances; 244 placements at max_repeats=4 "
    )
    assert "can place at most 12; raise max_repeats, or lower the target" in message


def test_synthesize_beyond_the_train_split_is_refused():
    small = spec("small", "token_pair", {"k": 4})
    with pytest.raises(PlanError, match=r"train split has \d instances; .* at most"):
        plan_mixture(scan({"small": (0, 0)}), [small], dosing(small={"target": {"per_batch": 1}}))


def test_a_pool_is_what_the_plan_counts_with():
    plan = plan_mixture(scan(), SKILLS, dosing(tp={"target": {"per_batch": 2}, "pool_size": 8,
                                                   "max_repeats": 40}))  # fmt: skip
    tp = plan.to_dict()["skills"]["tp"]
    assert tp["pool_size"] == 8 and tp["placements"] == 244
    assert (tp["unique_available"], tp["capacity"], tp["unique_used"]) == (8, 320, 8)
    assert tp["copies_per_unique"] == {"mean": 244 / 8, "max": 31}
    # 30 or 31 copies of each of 8 instances: the danger-zone warning says so, with the numbers
    [exposures] = [w for w in plan.warnings if w["kind"] == "repeated_exposures"]
    assert exposures["unique_instances"] == 8 and exposures["value"] == pytest.approx(30.5)
    # A plan without a pool reads as it always did: no pool_size key.
    fresh = plan_mixture(scan(), SKILLS, dosing(tp={"target": {"per_batch": 2}}))
    assert "pool_size" not in fresh.to_dict()["skills"]["tp"]


def test_a_pool_too_small_for_the_placements_names_the_numbers():
    plan = dosing(tp={"target": {"per_batch": 2}, "pool_size": 8, "max_repeats": 4})
    with pytest.raises(PlanError) as caught:
        plan_mixture(scan(), SKILLS, plan)
    assert str(caught.value) == (
        "skill 'token pairs': a pool of pool_size=8 unique instances; 244 placements at "
        "max_repeats=4 can place at most 32; raise max_repeats to at least 31, raise "
        "pool_size to at least 61, or lower the target"
    )


def test_a_pool_larger_than_the_train_split_is_refused():
    plan = dosing(tp={"target": {"per_batch": 1}, "pool_size": 176})
    with pytest.raises(PlanError, match=r"pool_size=176 is larger than the generator's train "
                       r"split \(175 instances\)"):  # fmt: skip
        plan_mixture(scan(), SKILLS, plan)
    auto = dosing(date={"target": {"per_batch": 0.1}, "pool_size": 2})  # auto -> repeat
    with pytest.raises(PlanError, match="has no generator .* drop pool_size"):
        plan_mixture(scan(), SKILLS, auto)


@pytest.mark.parametrize(
    ("plan", "skills", "report", "message"),
    [
        ({"batch_tokens": 1000, "seq_len": 64}, SKILLS, scan(), "multiple of seq_len"),
        ({"skills": {"date": {"target": {"per_batch": 1}, "source": "synthesize"}}}, SKILLS,
         scan(), "needs a generator"),
        ({"skills": {"tp": {"target": {"per_batch": 1}}}}, [DATES], scan(), "not among the skills"),
        ({"skills": {"x": {"target": {"per_batch": 1}}}}, [spec("x", "copying")], scan(),
         "not part of the scan"),
        ({"skills": {"tp": {"target": {"per_batch": 1}}}}, SKILLS, scan(nbytes=100, docs=1),
         "shorter than one batch"),
        ({"skills": {"tp": {"target": {"per_batch": 0.001}}}}, SKILLS, scan(), "places nothing"),
        ({"skills": {"cp": {"target": {"per_batch": 200}}}}, [spec("cp", "copying")],
         scan({"cp": (0, 0)}), "batch 0 would get 200 placements but has only 128 sequences"),
        ({"skills": {"date": {"target": {"per_batch": 1}}}}, SKILLS,
         scan({"tp": (0, 0), "date": (0, 0)}), "no instance to repeat; add a generator"),
    ],
)  # fmt: skip
def test_plan_errors(plan, skills, report, message):
    body = {"batch_tokens": BATCH, "seq_len": 64} | plan
    with pytest.raises(PlanError, match=message):
        plan_mixture(report, skills, body)


def test_a_detector_that_misses_the_generated_instances_is_refused():
    blind = spec("blind", "modular_addition", detector={"kind": "regex", "pattern": "never"})
    with pytest.raises(PlanError, match="its detector finds 0 of 200 generated"):
        plan_mixture(scan({"blind": (0, 0)}), [blind], dosing(blind={"target": {"per_batch": 1}}))


def test_repeating_a_small_slice_warns_with_the_numbers():
    report = scan({"tp": (0, 0), "date": (3, 3)}, docs=100)  # 10,000-token documents
    plan = plan_mixture(
        report, SKILLS, dosing(date={"target": {"per_batch": 0.5}, "max_repeats": 40})
    )
    kinds = {w["kind"]: w for w in plan.warnings}
    exposures = kinds["repeated_exposures"]
    assert exposures["threshold"] == DANGER_EXPOSURES and exposures["unique_instances"] == 3
    placements = plan.skills["date"].placements
    assert placements == 60 and exposures["value"] == pytest.approx(1 + placements / 3)
    assert "0.1% of the data repeated 100x" in exposures["message"]
    share = kinds["repeated_token_share"]
    assert share["threshold"] == DANGER_REPEATED_SHARE and share["value"] > 0.5
    for w in plan.warnings:  # a person reads the message; programs read the id
        assert w["skill_id"] == "date" and w["message"].startswith("skill 'ISO dates': ")


def test_messages_fall_back_to_the_id_for_a_skill_without_a_name():
    assert skill_label("skill_01", "ISO dates") == "skill 'ISO dates'"
    assert skill_label("skill_01", None) == skill_label("skill_01", "") == "skill skill_01"


def test_thresholds_are_parameters_and_fresh_instances_do_not_warn():
    plan = dosing(tp={"target": {"per_batch": 1}}, date={"target": {"per_batch": 0.02}})
    assert plan_mixture(scan(), SKILLS, plan).warnings == []
    strict = plan_mixture(scan(), SKILLS, plan, danger_exposures=1.5)
    assert [w["skill_id"] for w in strict.warnings] == ["date"]


def test_other_warnings():
    report = scan(extra={"date": {"probe_collisions": 2}})
    plan = plan_mixture(
        report,
        SKILLS,
        DosingPlan(
            batch_tokens=BATCH, seq_len=64, max_batches=500,
            skills={"date": {"target": {"per_batch": 0.05}}},
        ),
    )  # fmt: skip
    assert {w["kind"] for w in plan.warnings} == {"max_batches", "probe_collisions"}
    assert plan.n_batches == 122
    [collisions] = [w for w in plan.warnings if w["kind"] == "probe_collisions"]
    assert collisions["skill_id"] == "date"
    assert collisions["message"].startswith("skill 'ISO dates': the corpus holds 2 instances")


@pytest.mark.parametrize(
    ("dose", "message"),
    [
        ({"target": {"per_batch": 1, "fraction": 0.1}}, "exactly one of per_batch"),
        ({"target": {}}, "got none"),
        ({"target": {"per_batch": 1}, "spacing": "sometimes"}, "spacing"),
        ({"target": {"every": {"n": 2, "k": 5}}, "spacing": "random"}, "fixes the spacing"),
        ({"target": {"per_batch": 1}, "repeats": 3}, "Extra inputs are not permitted"),
        ({"target": {"fraction": 1.5}}, "less than 1"),
        ({"target": {"per_batch": 1}, "pool_size": 0}, "greater than or equal to 1"),
        (
            {"target": {"per_batch": 1}, "source": "repeat", "pool_size": 4},
            "needs source=synthesize",
        ),
    ],
)
def test_model_validation_messages(dose, message):
    with pytest.raises(ValidationError, match=message):
        DosingPlan.model_validate({"skills": {"s": dose}})


CMP = spec("cmp", "number_comparison", name="comparison")  # every instance: 13 bytes


def test_every_beyond_the_rows_of_a_batch_shares_rows():
    report = scan({"tp": (0, 0), "cmp": (0, 0)})
    body = dosing(cmp={"target": {"every": {"n": 3 * 128, "k": 4}}, "max_repeats": 20})
    plan = plan_mixture(report, [TOKEN_PAIR, CMP], body)
    assert plan.busiest_batch == 384 and plan.per_row == 3
    assert plan.slot_tokens == 64 // 3  # a repeated document would have to fit in 21 tokens
    assert plan.to_dict()["skills"]["cmp"]["longest_instance_tokens"] == 13
    # A plan whose batches share no row records no longest instance: it reads as before.
    one_each = plan_mixture(report, [TOKEN_PAIR, CMP], dosing(cmp={"target": {"per_batch": 2}}))
    assert one_each.per_row == 1
    assert "longest_instance_tokens" not in one_each.to_dict()["skills"]["cmp"]


def test_a_batch_too_dense_even_with_shared_rows_is_refused_with_the_numbers():
    body = dosing(tp={"target": {"every": {"n": 3 * 128, "k": 4}}, "max_repeats": 100})
    with pytest.raises(PlanError) as caught:
        plan_mixture(scan(), SKILLS, body)
    found = re.fullmatch(
        r"batch 0 would get 384 placements but has only 128 sequences of 64 tokens: sharing "
        r"rows, 3 to a row, leaves 21 tokens a placement, and the placements of skill 'token "
        r"pairs' take (\d+) \(its longest sampled instance and EOS\), so a row holds (\d+) of "
        r"them and a batch at most (\d+); lower the targets or raise batch_tokens",
        str(caught.value),
    )
    assert found, caught.value
    longest, per_row, most = map(int, found.groups())
    assert longest > 21 and per_row == 64 // longest and most == 128 * per_row < 384
