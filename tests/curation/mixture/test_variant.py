"""A built mixture drawn again with another seed (curation.mixture.variant): its own stored
seed rebuilds it byte for byte; another seed changes the placed instances and their slots
and nothing else; the draw is keyed by the skills' definitions, not their ids."""

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from curation.corpus import CorpusSource
from curation.mixture import DosingPlan, PlanError, build_mixture, plan_mixture
from curation.mixture.variant import (
    VARIANT_RECORD,
    build_variant,
    plan_from_manifest,
    variant_seed,
)
from curation.scan import run_scan
from curation.skills.spec import SkillSpec
from curation.synthetic_corpus import generate_corpus

BATCH, SEQ = 1024, 64
TP = {"detector": {"kind": "builtin"}, "generator": {"family": "token_pair", "params": {"k": 20}}}
CMP = {"detector": {"kind": "builtin"}, "generator": {"family": "number_comparison"}}


def specs(prefix: str) -> list[SkillSpec]:
    return [
        SkillSpec.model_validate({"id": f"{prefix}tp", "name": f"{prefix}pairs", **TP}),
        SkillSpec.model_validate({"id": f"{prefix}cmp", "name": f"{prefix}cmp", **CMP}),
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("variant"))
    made = generate_corpus(f"{root}/corpus", 150, [], seed=4, n_files=2, mean_chars=400)
    return root, CorpusSource(made.uri, made.format, id_key="id")


def build(corpus, skills: list[SkillSpec], name: str, seed: int = 3) -> Path:
    root, source = corpus
    report = run_scan(
        source, skills, f"{root}/{name}-scan", allowed_roots=[root], batch_tokens=BATCH,
        plots=False,
    )  # fmt: skip
    tp, cmp = skills
    doses = {
        tp.id: {"target": {"per_batch": 2}, "spacing": "random", "max_repeats": 8},
        cmp.id: {"target": {"per_batch": 3}, "source": "synthesize"},
    }
    dosing = DosingPlan(batch_tokens=BATCH, seq_len=SEQ, seed=seed, skills=doses)
    plan = plan_mixture(report, skills, dosing)
    build_mixture(source, skills, plan, f"{root}/{name}", allowed_roots=[root], plots=False)
    return Path(root) / name


@pytest.fixture(scope="module")
def stored(corpus) -> Path:
    return build(corpus, specs("first-"), "stored")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tokens(mixture: Path) -> list[str]:
    return [sha(p) for p in sorted(mixture.glob("tokens-*.bin"))]


def records(mixture: Path) -> list[dict]:
    out = []
    for path in sorted(mixture.glob("shard-*.jsonl.gz")):
        out += [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    return out


def composition(mixture: Path) -> list[dict]:
    return [json.loads(line) for line in (mixture / "composition.jsonl").read_text().splitlines()]


def manifest(mixture: Path) -> dict:
    return json.loads((mixture / "manifest.json").read_text())


def test_the_stored_seed_rebuilds_the_mixture_byte_for_byte(corpus, stored):
    root, _ = corpus
    recorded = manifest(stored)
    assert json.loads(json.dumps(plan_from_manifest(recorded).to_dict())) == recorded["plan"]
    record = build_variant(stored, recorded["seed"], f"{root}/again", allowed_roots=[root])
    again = Path(root) / "again"
    assert record["tokens_sha256"] == tokens(stored) == tokens(again)
    assert (again / "composition.jsonl").read_bytes() == (stored / "composition.jsonl").read_bytes()
    assert record["audit_passed"] is True and (again / VARIANT_RECORD).exists()
    assert not [p for p in Path(root).iterdir() if p.name.endswith(".tmp")]


def test_another_seed_changes_the_placements_and_nothing_else(corpus, stored):
    root, _ = corpus
    a, b = (Path(root) / f"seed-{s}" for s in (0, 1))
    for out, run_seed in ((a, 0), (b, 1)):
        seed = variant_seed(3, run_seed)
        assert build_variant(stored, seed, out, allowed_roots=[root])["seed"] == seed
    assert variant_seed(3, 0) != variant_seed(3, 1) != variant_seed(4, 1)
    ma, mb = manifest(a), manifest(b)
    assert tokens(a) != tokens(b)
    # The plan is the stored one but for its seed (rates, caps, length, estimates).
    for m in (ma, mb):
        assert {k: v for k, v in m["plan"].items() if k != "seed"} == {
            k: v for k, v in manifest(stored)["plan"].items() if k != "seed"
        }
    ca, cb = composition(a), composition(b)
    assert len(ca) == len(cb) == ma["n_batches"]
    uniform = "first-cmp"  # 3 a batch, uniform: the same batches every seed, other instances
    assert [r["skills"][uniform]["count"] for r in ca] == [3] * len(ca)
    assert [r["skills"][uniform]["count"] for r in cb] == [3] * len(cb)
    assert [r["skills"][uniform]["keys"] for r in ca] != [r["skills"][uniform]["keys"] for r in cb]
    drawn = "first-tp"  # random spacing: its batches are drawn, the total is the plan's
    per_batch = [[r["skills"].get(drawn, {}).get("count", 0) for r in c] for c in (ca, cb)]
    assert per_batch[0] != per_batch[1] and sum(per_batch[0]) == sum(per_batch[1])
    slots = [[r["skills"].get(drawn, {}).get("sequences", []) for r in c] for c in (ca, cb)]
    assert slots[0] != slots[1]
    # The natural documents: the same ones in the same order (the longer stream of corpus
    # text starts with the shorter one: placed text of other lengths moves the tail out).
    texts, ids = [], []
    for mixture in (a, b, stored):
        corpus_records = [r for r in records(mixture) if r["source"] == "corpus"]
        texts.append("".join(r["text"] for r in corpus_records))
        ids.append(list(dict.fromkeys(r["id"] for r in corpus_records)))
    fewest = min(len(i) for i in ids)
    assert fewest > 100 and ids[0][:fewest] == ids[1][:fewest] == ids[2][:fewest]
    shortest = min(len(t) for t in texts)
    assert shortest > 0.9 * max(len(t) for t in texts)
    assert texts[0][:shortest] == texts[1][:shortest] == texts[2][:shortest]
    placed = [[r for r in records(m) if r["source"] != "corpus"] for m in (a, b)]
    assert [r["text"] for r in placed[0]] != [r["text"] for r in placed[1]]


def test_two_registrations_of_one_definition_draw_the_same_variant(corpus, stored):
    root, _ = corpus
    second = build(corpus, specs("second-"), "second")
    assert tokens(second) == tokens(stored)  # the stored mixtures (also test_placement.py)
    seed = variant_seed(3, 7)
    one = build_variant(stored, seed, f"{root}/one", allowed_roots=[root])
    two = build_variant(second, seed, f"{root}/two", allowed_roots=[root])
    assert one["tokens_sha256"] == two["tokens_sha256"]
    renamed = (Path(root) / "one" / "composition.jsonl").read_bytes().replace(b"first-", b"second-")
    assert renamed == (Path(root) / "two" / "composition.jsonl").read_bytes()


def test_a_finished_variant_is_reused_and_a_foreign_manifest_refused(corpus, stored, tmp_path):
    root, _ = corpus
    out = Path(root) / "reused"
    first = build_variant(stored, 11, out, allowed_roots=[root])
    (out / "tokens-00000.bin").unlink()  # reused from its record, not rebuilt
    assert build_variant(stored, 11, out, allowed_roots=[root]) == first
    (tmp_path / "manifest.json").write_text(json.dumps({"plan": {"x": {}}, "skills": {"x": {}}}))
    with pytest.raises(ValueError, match="no plan of curation.mixture's builder"):
        plan_from_manifest(json.loads((tmp_path / "manifest.json").read_text()))


def test_the_builds_a_killed_writer_left_are_removed_once_the_variant_exists(corpus, stored):
    root, _ = corpus
    out = Path(root) / "variants" / "seed-3"
    out.parent.mkdir()
    stale = out.parent / ".seed-3.k1ll3d.tmp"  # a build whose process was SIGKILLed
    (stale / "tokens").mkdir(parents=True)
    other = out.parent / ".seed-30.x.tmp"  # another variant's build: not ours to remove
    other.mkdir()
    build_variant(stored, 3, out, allowed_roots=[root])
    assert not stale.exists() and other.exists()
    stale.mkdir()
    build_variant(stored, 3, out, allowed_roots=[root])  # reused: cleared all the same
    assert not stale.exists() and other.exists()


def test_a_seed_that_overfills_a_batch_is_a_plan_error(stored):
    recorded = manifest(stored)
    recorded["plan"]["skills"]["first-tp"]["per_batch"] = 14.0  # random: some batch > 16
    assert plan_from_manifest(recorded, 5).per_row == 2  # two to a row: they still fit
    # 60 a batch on average in 16 rows of 64 tokens: at least 4 to a row leave at most 16
    # tokens each, shorter than a token pair's mean instance and EOS (18; the mean is all a
    # manifest whose plan shared no row records) and a comparison's (14) at 6 to a row.
    recorded["plan"]["skills"]["first-tp"]["per_batch"] = 60.0
    expected = (
        r"^seed 5: batch \d+ would get \d+ placements but has only 16 sequences of 64 tokens: "
        r"sharing rows, \d to a row, leaves \d+ tokens a placement, and the placements of skill "
        r"first-\w+ take 1[48] \(its mean instance and EOS\), so a row holds [34] of them"
    )
    with pytest.raises(PlanError, match=expected):
        plan_from_manifest(recorded, 5)


def test_a_pooled_plan_keeps_its_pool_size_in_every_variant(stored):
    recorded = manifest(stored)
    recorded["plan"]["skills"]["first-cmp"]["pool_size"] = 40
    again = plan_from_manifest(recorded, 5)
    assert again.dosing.skills["first-cmp"].pool_size == 40  # what the build draws with
    assert again.skills["first-cmp"].pool_size == 40
    assert again.to_dict()["skills"]["first-cmp"]["pool_size"] == 40
    assert "pool_size" not in again.to_dict()["skills"]["first-tp"]
