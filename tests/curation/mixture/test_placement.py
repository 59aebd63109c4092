"""The placement stream is keyed by the mixture seed and each skill's definition, not its id:
two registrations of one definition give the same mixture."""

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from curation.corpus import CorpusSource
from curation.mixture import DosingPlan, build_mixture, plan_mixture
from curation.scan import run_scan
from curation.skills.probes import sample_instances
from curation.skills.spec import SkillSpec, definition_digest
from curation.synthetic_corpus import Plant, generate_corpus

BATCH, SEQ = 4096, 64
TP = {"detector": {"kind": "builtin"}, "generator": {"family": "token_pair", "params": {"k": 20}}}
CMP = {"detector": {"kind": "builtin"}, "generator": {"family": "number_comparison"}}


def specs(prefix: str, names: tuple[str, str]) -> list[SkillSpec]:
    return [
        SkillSpec.model_validate({"id": f"{prefix}tp", "name": names[0], **TP}),
        SkillSpec.model_validate({"id": f"{prefix}cmp", "name": names[1], **CMP}),
    ]


FIRST = specs("first-", ("token pairs", "comparison"))
SECOND = specs("second-", ("pairs again", "comparison, renamed"))  # fmt: skip
CMP_TEXTS = tuple(i.text for i in sample_instances(FIRST[1], 12, seed=5))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("placement"))
    made = generate_corpus(
        f"{root}/corpus", 400, [Plant("cmp", CMP_TEXTS, every=4)], seed=2, format="jsonl.gz",
        n_files=2, mean_chars=400,
    )  # fmt: skip
    return root, CorpusSource(made.uri, made.format, id_key="id")


def build(corpus, skills: list[SkillSpec], name: str, order=(0, 1), seed: int = 3) -> Path:
    root, source = corpus
    report = run_scan(
        source, skills, f"{root}/{name}-scan", allowed_roots=[root], batch_tokens=BATCH,
        plots=False,
    )  # fmt: skip
    tp, cmp = skills
    doses = {
        tp.id: {"target": {"per_batch": 3}, "spacing": "random", "max_repeats": 8},
        cmp.id: {"target": {"per_batch": 1}, "spacing": "clustered", "source": "repeat",
                 "max_repeats": 20},
    }  # fmt: skip
    ordered = dict([list(doses.items())[i] for i in order])
    dosing = DosingPlan(batch_tokens=BATCH, seq_len=SEQ, seed=seed, skills=ordered)
    out = f"{root}/{name}"
    plan = plan_mixture(report, skills, dosing)
    build_mixture(source, skills, plan, out, allowed_roots=[root], plots=False, audit=False)
    return Path(out)


def renamed(data: bytes) -> bytes:
    """The ids of FIRST written as SECOND's: what differs only because the id is recorded."""
    return data.replace(b'"first-', b'"second-')


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_registrations_of_one_definition_give_the_same_mixture(corpus):
    assert [definition_digest(s) for s in FIRST] == [definition_digest(s) for s in SECOND]
    a, b = build(corpus, FIRST, "first"), build(corpus, SECOND, "second")
    tokens = sorted(p.name for p in a.glob("tokens-*.bin"))
    assert tokens and tokens == sorted(p.name for p in b.glob("tokens-*.bin"))
    for name in tokens:  # the training data itself: byte-identical
        assert sha(a / name) == sha(b / name)
    # The files that record which skill placed what hold the id (text records' `skill_id`
    # and `id`, composition's and instances' skill keys): identical once the id is renamed.
    texts = sorted(p.name for p in a.glob("shard-*.jsonl.gz"))
    assert texts == sorted(p.name for p in b.glob("shard-*.jsonl.gz"))
    for name in texts:
        first, second = (gzip.decompress((m / name).read_bytes()) for m in (a, b))
        assert b'"skill_id":"first-tp"' in first.replace(b" ", b"")
        assert renamed(first) == second
    for name in ("composition.jsonl", "instances.jsonl"):
        assert renamed((a / name).read_bytes()) == (b / name).read_bytes()
    placed = [json.loads(line) for line in (a / "composition.jsonl").read_text().splitlines()]
    assert sum(line["skills"].get("first-tp", {}).get("count", 0) for line in placed) > 100
    assert sum(line["skills"].get("first-cmp", {}).get("count", 0) for line in placed) > 30
    # The manifest: the same plan (ids renamed) and token shards. What differs is the id
    # and name in each skill's recorded spec, the text shards' hashes (their records hold
    # the id) and the warnings' messages, which name the skill for people.
    ma, mb = (json.loads((m / "manifest.json").read_text()) for m in (a, b))
    definitions = []
    for manifest in (ma, mb):
        recorded = [s["spec"] for s in manifest.pop("skills").values()]
        definitions.append([{**s, "id": None, "name": None} for s in recorded])
        manifest["shards"] = [s for s in manifest["shards"] if s["kind"] == "tokens"]
        for warning in manifest["plan"]["warnings"]:
            warning.pop("message")
    assert definitions[0] == definitions[1]
    assert json.loads(renamed(json.dumps(ma).encode())) == mb
    streams = {sid: s["placement_stream"] for sid, s in mb["plan"]["skills"].items()}
    assert streams == {s.id: definition_digest(s) for s in SECOND}


def test_the_plans_key_order_moves_no_placement(corpus):
    a, b = build(corpus, FIRST, "forward"), build(corpus, FIRST, "backward", order=(1, 0))
    for name in sorted(p.name for p in a.glob("tokens-*.bin")):
        assert sha(a / name) == sha(b / name)


def test_a_definition_repeated_in_one_plan_draws_its_own_stream(corpus):
    twin = SkillSpec.model_validate({"id": "twin", "name": "twin", **TP})
    root, source = corpus
    skills = [FIRST[0], twin]
    report = run_scan(
        source, skills, f"{root}/twin-scan", allowed_roots=[root], batch_tokens=BATCH,
        plots=False,
    )  # fmt: skip
    dose = {"target": {"per_batch": 2}, "spacing": "random"}
    dosing = DosingPlan(batch_tokens=BATCH, seq_len=SEQ, skills={"first-tp": dose, "twin": dose})
    plan = plan_mixture(report, skills, dosing)
    digest = definition_digest(twin)
    assert plan.skills["first-tp"].placement_stream == digest
    assert plan.skills["twin"].placement_stream == f"{digest}/2"
    assert plan.counts["first-tp"].tolist() != plan.counts["twin"].tolist()
