"""The reader against the real mixture builder (curation.mixture): the contract both sides share."""

from __future__ import annotations

import json

import pytest

from curation.corpus import CorpusSource
from curation.mixture import DosingPlan, build_mixture, plan_mixture
from curation.mixture.format import EOS
from curation.mixture.variant import variant_seed
from curation.scan import run_scan
from curation.synthetic_corpus import generate_corpus
from training.data import open_mixture
from training.evaluate import EvalSpec
from training.trainer import TrainConfig, train_run
from training.verify import (
    DATA_SCOPE_INIT_SEED,
    arm_audit,
    check_arms,
    init_seed,
    run_verification,
    seed_mixtures,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory, skill):
    root = tmp_path_factory.mktemp("curated")
    corpus = generate_corpus(str(root / "corpus"), 200, [], seed=1, n_files=1, mean_chars=400)
    source = CorpusSource(corpus.uri, corpus.format, id_key="id")
    report = run_scan(
        source, [skill], str(root / "scan"), allowed_roots=[str(root)], batch_tokens=256,
        plots=False,
    )  # fmt: skip
    arms = {"upweighted": {"cmp": {"target": {"per_batch": 2}}}, "baseline": {}}
    for name, doses in arms.items():
        dosing = DosingPlan(batch_tokens=256, seq_len=32, seed=0, skills=doses)
        plan = plan_mixture(report, [skill], dosing)
        build_mixture(
            source, [skill], plan, str(root / name), allowed_roots=[str(root)], plots=False
        )
    return root


def test_placed_instances_are_where_the_composition_says(built):
    mixture = open_mixture(built / "upweighted")
    assert (mixture.seq_len, mixture.seqs_per_batch) == (32, 8)
    texts = {r["key"]: r["text"] for r in mixture.instances("cmp")}
    assert mixture.exposure_batches("cmp") == list(range(mixture.n_batches))
    for row in mixture.composition()[:20]:
        placed = row["skills"]["cmp"]
        for seq, key in zip(placed["sequences"], placed["keys"], strict=True):
            assert seq // mixture.seqs_per_batch == row["batch"]
            tokens = mixture.batch(row["batch"])[seq % mixture.seqs_per_batch].tolist()
            text = texts[key].encode()
            assert bytes(tokens[: len(text)]) == text and tokens[len(text)] == EOS


def test_a_built_mixture_trains_and_its_arms_compare(built, skill, config, tmp_path):
    check_arms({arm: open_mixture(built / arm) for arm in ("upweighted", "baseline")})
    spec = EvalSpec(skills=[skill], n_probe=16, n_seen=8)
    short = TrainConfig(**{**vars(config), "token_budget": 30 * 256})
    result = train_run(short, built / "upweighted", spec, tmp_path / "run")
    assert result.steps == 30 and result.final["skills"]["cmp"]["seen_acc"] is not None


def test_seed_scope_data_trains_each_seed_on_its_own_draw(built, skill, config, tmp_path):
    arms = {"upweighted": built / "upweighted", "baseline": built / "baseline"}
    report = run_verification(
        arms, [skill], ["nano"], [0, 1], 10 * 256, 5, None, "cpu", tmp_path, config=config,
        eval_options={"n_probe": 16, "n_seen": 8}, seed_scope="data",
    )  # fmt: skip
    assert report["settings"]["seed_scope"] == "data"
    draws = {(r["arm"], r["seed"]): r["data_draw"] for r in report["runs"]}
    up = [draws["upweighted", seed] for seed in (0, 1)]
    assert up[0]["tokens_sha256"] != up[1]["tokens_sha256"]
    assert {d["variant_of"] for d in up} == {str((built / "upweighted").resolve())}
    assert [d["mixture_dir"] for d in up] == [
        str(tmp_path / "mixtures" / "upweighted" / f"seed-{seed}") for seed in (0, 1)
    ]
    assert [d["mixture_seed"] for d in up] == [variant_seed(0, 0), variant_seed(0, 1)]
    assert {d["init_seed"] for d in draws.values()} == {DATA_SCOPE_INIT_SEED}
    base = [draws["baseline", seed] for seed in (0, 1)]  # places nothing: nothing to draw
    assert base[0] == base[1] and base[0]["mixture_dir"] == str(built / "baseline")
    assert base[0]["variant_of"] is None
    # The seed's instances are what its run saw (the seen set comes from its own mixture).
    seen = [r["final"]["skills"]["cmp"]["seen_acc"] for r in report["runs"]]
    assert all(v is not None for v in seen[::2])
    # seed_mixtures: the built variants are reused; `init` keeps the arm's mixture.
    again = seed_mixtures(built / "upweighted", [0, 1], tmp_path / "mixtures" / "upweighted")
    assert again == {s: tmp_path / "mixtures" / "upweighted" / f"seed-{s}" for s in (0, 1)}
    assert seed_mixtures(built / "upweighted", [0, 1], tmp_path / "x", seed_scope="init") == {
        0: built / "upweighted",
        1: built / "upweighted",
    }
    assert init_seed("both", 5) == init_seed("init", 5) == 5 and init_seed("data", 5) == 0
    with pytest.raises(ValueError, match="seed_scope"):
        seed_mixtures(built / "upweighted", [0], tmp_path / "x", seed_scope="weights")


def test_the_baseline_arm_is_audited_and_reported_like_the_upweighted_one(
    built, skill, config, tmp_path
):
    arms = {"upweighted": built / "upweighted", "baseline": built / "baseline"}
    report = run_verification(
        arms, [skill], ["nano"], [0], 10 * 256, 5, None, "cpu", tmp_path, config=config,
        eval_options={"n_probe": 16, "n_seen": 8}, seed_scope="init",
    )  # fmt: skip
    up, base = (report["arms"][arm]["audit"] for arm in ("upweighted", "baseline"))
    assert up["passed"] and base["passed"]
    assert set(up["skills"]) == set(base["skills"]) == {"cmp"}
    assert up["skills"]["cmp"]["dosed"] is True and up["skills"]["cmp"]["placed"]["placements"] > 0
    row = base["skills"]["cmp"]
    assert row["dosed"] is False and row["source"] == "natural"
    assert row["planned"]["placements"] == row["placed"]["placements"] == 0
    assert set(row) == set(up["skills"]["cmp"])  # the same audit row, field for field
    # The report counts the natural exposure batches; their list stays in audit.json.
    assert "batches" not in row["natural"] and row["natural"]["exposure_batches"] >= 0
    runs = {r["arm"]: r for r in report["runs"]}
    assert runs["baseline"]["final"]["exposure"]["cmp"]["natural_located"] is True
    assert runs["baseline"]["forgetting"]["cmp"]["exposures"] == "placed+natural"
    # A skill the stored audit lacks is audited on demand (the audit.json rewritten).
    other = skill.model_copy(update={"id": "cmp2"})
    again = arm_audit(built / "baseline", [skill, other])
    assert again is not None and set(again["skills"]) == {"cmp", "cmp2"}
    assert again["skills"]["cmp2"]["natural"] == again["skills"]["cmp"]["natural"]
    # Another verification's skill: audited too, and the rows of cmp2 stay (its runs read them).
    third = skill.model_copy(update={"id": "cmp3"})
    last = arm_audit(built / "baseline", [skill, third])
    assert last is not None and list(last["skills"]) == ["cmp", "cmp3", "cmp2"]
    stored = json.loads((built / "baseline" / "audit.json").read_text())
    assert stored["skills"]["cmp2"] == again["skills"]["cmp2"] and set(stored["skills"]) == {
        "cmp",
        "cmp2",
        "cmp3",
    }
