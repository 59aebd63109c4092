"""build_mixture + audit_mixture end to end on a small planted corpus, scanned for real."""

import glob
import json
import os
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from curation.corpus import CorpusSource
from curation.mixture import AuditFailed, DosingPlan, audit_mixture, build_mixture, plan_mixture
from curation.mixture.format import EOS
from curation.scan import run_scan
from curation.skills.probes import SkillGenerator, sample_instances
from curation.skills.spec import SkillSpec
from curation.sources.paths import SourceRejected
from curation.sources.records import ScanInputError
from curation.synthetic_corpus import Plant, generate_corpus

BATCH, SEQ = 4096, 64
TP = SkillSpec.model_validate(
    {"id": "tp", "name": "token pairs", "detector": {"kind": "builtin"},
     "generator": {"family": "token_pair", "params": {"k": 20}}}
)  # fmt: skip
CMP = SkillSpec.model_validate(
    {"id": "cmp", "name": "comparison", "detector": {"kind": "builtin"},
     "generator": {"family": "number_comparison"}}
)  # fmt: skip
SKILLS = [TP, CMP]
CMP_TEXTS = tuple(i.text for i in sample_instances(CMP, 12, seed=5))


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mix"))
    corpus = generate_corpus(
        f"{root}/corpus", 600, [Plant("cmp", CMP_TEXTS, every=4)], seed=1, format="jsonl.gz",
        n_files=3, mean_chars=400,
    )  # fmt: skip
    source = CorpusSource(corpus.uri, corpus.format, id_key="id")
    report = run_scan(
        source, SKILLS, f"{root}/scan", allowed_roots=[root], batch_tokens=BATCH, plots=False
    )
    return root, source, report


def build(scanned, name, seed=0, text_format="jsonl.gz", **doses):
    root, source, report = scanned
    dosing = DosingPlan(
        batch_tokens=BATCH, seq_len=SEQ, seed=seed, format=text_format, skills=doses
    )
    plan = plan_mixture(report, SKILLS, dosing)
    out = f"{root}/{name}"
    return out, build_mixture(source, SKILLS, plan, out, allowed_roots=[root], plots=False)


def jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def composition(out):
    return jsonl(f"{out}/composition.jsonl")


def counts(out, sid):
    return [line["skills"].get(sid, {}).get("count", 0) for line in composition(out)]


def data_files(out):
    """Every file of the mixture contract, by name (the audit's own files excluded)."""
    names = [n for n in os.listdir(out) if n.endswith((".bin", ".gz", ".parquet", "l", "json"))]
    return {n: Path(f"{out}/{n}").read_bytes() for n in sorted(names) if n != "audit.json"}


def differences(out, reference):
    """Which data files of `out` differ from `reference`'s, with the first differing line of a
    text file (what a failing byte-identity check needs to say)."""
    mine, theirs = data_files(out), data_files(reference)
    found = [f"{n}: only in one" for n in sorted(set(mine) ^ set(theirs))]
    for name in sorted(set(mine) & set(theirs)):
        if mine[name] == theirs[name]:
            continue
        if name.endswith(("l", "json")):
            pairs = zip(mine[name].splitlines(), theirs[name].splitlines(), strict=False)
            line = next(((i, a, b) for i, (a, b) in enumerate(pairs) if a != b), None)
            found.append(f"{name}: first differs at line {line[0]}: {line[1][:300]!r} vs "
                         f"{line[2][:300]!r}" if line else f"{name}: lengths differ")  # fmt: skip
        else:
            found.append(f"{name}: bytes differ")
    return found


def test_every_places_exactly_n_in_every_kth_batch_and_none_elsewhere(scanned):
    out, result = build(scanned, "every", tp={"target": {"every": {"n": 10, "k": 10}}})
    n = result["manifest"]["n_batches"]
    assert n == 78
    assert counts(out, "tp") == [10 if b % 10 == 0 else 0 for b in range(n)]
    tp = result["audit"]["skills"]["tp"]
    assert tp["passed"] and tp["schedule"]["batches_off"] == 0
    assert tp["placed"]["placements"] == tp["planned"]["placements"] == 80
    assert tp["placed"]["per_batch"]["max"] == 10 and tp["placed"]["per_batch"]["min"] == 0
    assert tp["gap_batches"] == tp["target_gap_batches"]  # placed exactly at the slots
    tokens = np.fromfile(f"{out}/tokens-00000.bin", dtype="<u2").reshape(-1, SEQ)
    texts = {r["key"]: r["text"] for r in jsonl(f"{out}/instances.jsonl")}
    for line in composition(out):
        for key, seq in zip(
            line["skills"].get("tp", {}).get("keys", []),
            line["skills"].get("tp", {}).get("sequences", []),
            strict=True,
        ):
            assert seq // (BATCH // SEQ) == line["batch"]
            text = texts[key].encode()
            assert tokens[seq, : len(text) + 1].tolist() == [*text, EOS]  # starts the sequence


def placed_spans(out, sid):
    """(batch, sequence, offset, key) of each placement of `sid`, from composition.jsonl."""
    spans = []
    for line in composition(out):
        entry = line["skills"].get(sid, {"count": 0, "keys": [], "sequences": []})
        offsets = entry.get("offsets", [0] * len(entry["sequences"]))
        assert len(entry["keys"]) == len(entry["sequences"]) == len(offsets) == entry["count"]
        spans += [
            (line["batch"], *placed)
            for placed in zip(entry["sequences"], offsets, entry["keys"], strict=True)
        ]
    return spans


def assert_whole_in_their_rows(out, sids):
    """Every placement is its instance then EOS, at its sequence and offset, inside the row."""
    tokens = np.fromfile(f"{out}/tokens-00000.bin", dtype="<u2").reshape(-1, SEQ)
    texts = {(r["skill_id"], r["key"]): r["text"] for r in jsonl(f"{out}/instances.jsonl")}
    for sid in sids:
        for batch, seq, offset, key in placed_spans(out, sid):
            text = texts[sid, key].encode()
            assert seq // (BATCH // SEQ) == batch
            assert offset + len(text) + 1 <= SEQ  # never across a row boundary
            assert tokens[seq, offset : offset + len(text) + 1].tolist() == [*text, EOS]


def test_every_beyond_the_rows_of_a_batch_shares_rows_and_the_audit_counts_each(scanned):
    rows = BATCH // SEQ
    out, result = build(scanned, "shared", cmp={"target": {"every": {"n": 3 * rows, "k": 4}}})
    n = result["manifest"]["n_batches"]
    assert counts(out, "cmp") == [3 * rows if b % 4 == 0 else 0 for b in range(n)]
    cmp = result["audit"]["skills"]["cmp"]
    assert cmp["passed"] and cmp["schedule"]["batches_off"] == 0  # 192 verified in each
    assert cmp["placed"]["placements"] == cmp["planned"]["placements"] == 3 * rows * 20
    assert cmp["placed"]["per_batch"]["max"] == 3 * rows and cmp["placed"]["per_batch"]["min"] == 0
    assert_whole_in_their_rows(out, ["cmp"])
    per_row = Counter(seq for _, seq, _, _ in placed_spans(out, "cmp"))
    assert max(per_row.values()) == 4  # 14 tokens each (13 + EOS): four fill 56 of 64
    assert result["audit"]["skills"]["tp"]["placed"]["placements"] == 0


def test_two_skills_sharing_rows_are_each_verified(scanned):
    out, result = build(
        scanned, "shared-two", cmp={"target": {"every": {"n": 100, "k": 4}}},
        tp={"target": {"per_batch": 8}},
    )  # fmt: skip
    for sid, planned in (("cmp", 100 * 20), ("tp", 8 * 78)):
        report = result["audit"]["skills"][sid]
        assert report["passed"] and report["schedule"]["batches_off"] == 0
        assert report["placed"]["placements"] == planned
    assert_whole_in_their_rows(out, ["cmp", "tp"])
    by_row = {sid: {seq for _, seq, _, _ in placed_spans(out, sid)} for sid in ("cmp", "tp")}
    assert by_row["cmp"] & by_row["tp"]  # rows holding placements of both skills
    unshared = composition(out)[1]["skills"]["tp"]  # 8 in 64 rows: one to a row, as before
    assert "offsets" not in unshared and len(set(unshared["sequences"])) == 8


def test_uniform_two_and_a_half_alternates_two_and_three(scanned):
    out, result = build(scanned, "uniform", tp={"target": {"per_batch": 2.5}})
    assert counts(out, "tp") == [2, 3] * 39
    placed = result["audit"]["skills"]["tp"]["placed"]
    assert placed["per_batch"] == {"mean": 2.5, "min": 2, "max": 3}


def test_random_and_clustered_spacing_are_audited_against_their_schedules(scanned):
    for spacing in ("random", "clustered"):
        out, result = build(scanned, spacing, tp={"target": {"per_batch": 2}, "spacing": spacing})
        tp = result["audit"]["skills"]["tp"]
        assert tp["passed"] and tp["placed"]["placements"] == 156
        planned = [line["skills"].get("tp", {}).get("planned", 0) for line in composition(out)]
        assert counts(out, "tp") == planned and len(set(planned)) > 2


def test_synthesize_never_places_a_probe_instance_and_uses_fresh_ones_first(scanned):
    out, result = build(scanned, "fresh", tp={"target": {"per_batch": 8}, "max_repeats": 4})
    generator = SkillGenerator(TP)
    probe = {i.key for i in generator.instances("probe")}
    train = {i.key for i in generator.instances("train")}
    rows = jsonl(f"{out}/instances.jsonl")
    keys = {r["key"]: r["count"] for r in rows}
    assert sum(keys.values()) == 8 * 78 and not set(keys) & probe
    assert set(keys) == train  # 624 placements over 175 train instances: every one used
    assert max(keys.values()) - min(keys.values()) <= 1 and max(keys.values()) <= 4
    assert result["audit"]["skills"]["tp"]["probe_collisions_placed"] == 0


def test_repeat_never_exceeds_max_repeats(scanned):
    out, result = build(
        scanned, "repeat", cmp={"target": {"per_batch": 1}, "source": "repeat", "max_repeats": 7}
    )
    per_key = Counter(key for line in composition(out) for key in line["skills"]["cmp"]["keys"])
    assert sum(per_key.values()) == 78 and max(per_key.values()) <= 7
    cmp = result["audit"]["skills"]["cmp"]
    assert cmp["passed"] and cmp["source"] == "repeat"
    assert cmp["natural"]["instances"] > 0  # the corpus' own copies stay where they were
    records = [r for r in jsonl(f"{out}/instances.jsonl") if r["key"] in per_key]
    assert {r["text"] for r in records} <= set(CMP_TEXTS)
    assert {r["key"]: r["count"] for r in records} == dict(per_key)


def test_same_plan_and_seed_give_byte_identical_output(scanned):
    doses = {
        "tp": {"target": {"per_batch": 2}},
        "cmp": {"target": {"per_batch": 0.5}, "source": "repeat"},
    }
    first, _ = build(scanned, "same-a", seed=7, **doses)
    second, _ = build(scanned, "same-b", seed=7, **doses)
    assert data_files(first) == data_files(second)
    other, _ = build(scanned, "same-c", seed=8, **doses)
    assert counts(other, "tp") == counts(first, "tp")  # same totals per batch
    assert counts(other, "cmp") == counts(first, "cmp")
    keys = [[line["skills"].get("tp", {}).get("keys") for line in composition(o)]
            for o in (first, other)]  # fmt: skip
    assert keys[0] != keys[1]  # a different order of different instances
    a, b = data_files(first), data_files(other)
    assert a["tokens-00000.bin"] != b["tokens-00000.bin"] and len(a) == len(b)


class Killed(Exception):
    pass


def kill_after_third_shard(fraction, message):
    if message.startswith("wrote shard 3 "):
        raise Killed


def runner(scanned, doses):
    """build_mixture of one plan into a given folder, 8 batches a shard."""
    root, source, report = scanned
    plan = plan_mixture(report, SKILLS, DosingPlan(batch_tokens=BATCH, seq_len=SEQ, skills=doses))

    def run(out, progress=None):
        return build_mixture(
            source, SKILLS, plan, out, allowed_roots=[root], shard_batches=8, progress=progress,
            plots=False,
        )  # fmt: skip

    return run


def test_resume_after_an_interrupted_build_ends_byte_identical(scanned):
    root = scanned[0]
    doses = {
        "tp": {"target": {"per_batch": 2}},
        "cmp": {"target": {"per_batch": 0.5}, "source": "repeat"},
    }
    run = runner(scanned, doses)
    whole, cut = f"{root}/resume-whole", f"{root}/resume-cut"
    run(whole)
    with pytest.raises(Killed):
        run(cut, kill_after_third_shard)
    assert not os.path.exists(f"{cut}/manifest.json")
    # What a writer killed by SIGKILL inside a shard leaves (an exception cleans its own up).
    Path(f"{cut}/tokens-00004.bin.deadhost.123.0a0b0c0d.tmp").write_bytes(b"partial")
    kept = os.stat(f"{cut}/tokens-00001.bin").st_mtime_ns
    messages = []
    run(cut, lambda f, m: messages.append(m))
    assert not differences(cut, whole)
    assert os.stat(f"{cut}/tokens-00001.bin").st_mtime_ns == kept  # not written again
    assert "wrote shard 10 / 10" in messages and "wrote shard 2 / 10" not in messages
    assert not os.path.exists(f"{cut}/.build") and not glob.glob(f"{cut}/*.tmp")
    assert run(cut)["manifest"] == run(whole)["manifest"]  # a finished build is returned as is

    # Two overlapping writers of one mixture (a worker that stalled past its lease and the
    # attempt that replaced it): each writes its own temporary files, so whichever renames
    # last renames the same bytes; the one that finds its files cleaned away stops.
    both = f"{root}/resume-both"
    outcomes: list[object] = []

    def writer() -> None:
        try:
            outcomes.append(run(both)["manifest"])
        except Exception as exc:  # the later writer may lose its temporaries
            outcomes.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert any(isinstance(o, dict) for o in outcomes), outcomes
    assert all(isinstance(o, dict | FileNotFoundError) for o in outcomes), outcomes
    assert not differences(both, whole) and not glob.glob(f"{both}/*.tmp")


def test_a_pooled_skill_places_its_pool_deterministically_and_resumes(scanned):
    root = scanned[0]
    doses = {"tp": {"target": {"per_batch": 2}, "pool_size": 6, "max_repeats": 26}}
    run = runner(scanned, doses)
    whole, again, cut = (f"{root}/pool-{name}" for name in ("whole", "again", "cut"))
    result = run(whole)
    rows = jsonl(f"{whole}/instances.jsonl")
    # 156 placements over a pool of 6: each instance 26 times, none of the other 169
    assert len(rows) == 6 and sorted(r["count"] for r in rows) == [26] * 6
    train = {i.key for i in SkillGenerator(TP).instances("train")}
    assert {r["key"] for r in rows} <= train
    per_key = Counter(key for line in composition(whole) for key in line["skills"]["tp"]["keys"])
    assert per_key == {r["key"]: r["count"] for r in rows}
    assert result["manifest"]["plan"]["skills"]["tp"]["pool_size"] == 6
    placed = result["audit"]["skills"]["tp"]["placed"]  # re-measured from the tokens
    assert result["audit"]["skills"]["tp"]["passed"]
    assert placed["unique_instances"] == 6
    assert placed["copies_per_unique"] == {"mean": 26.0, "max": 26}
    run(again)
    assert data_files(again) == data_files(whole)
    with pytest.raises(Killed):
        run(cut, kill_after_third_shard)
    run(cut)
    assert data_files(cut) == data_files(whole)
    # Another seed draws another pool of the same size.
    _, other = build(scanned, "pool-seed", seed=1, **doses)
    keys = {r["key"] for r in jsonl(f"{root}/pool-seed/instances.jsonl")}
    assert len(keys) == 6 and keys != set(per_key)
    assert other["audit"]["skills"]["tp"]["placed"]["unique_instances"] == 6
    # The audit holds the pool to its size: a manifest that claims a smaller pool fails.
    manifest = json.loads(Path(f"{again}/manifest.json").read_text())
    manifest["plan"]["skills"]["tp"]["pool_size"] = 3
    Path(f"{again}/manifest.json").write_text(json.dumps(manifest))
    audit = audit_mixture(again, SKILLS, plots=False)
    assert audit["skills"]["tp"]["problems"] == ["6 unique instances placed, pool_size=3"]


def test_audit_reports_a_damaged_mixture_and_build_raises_on_a_failed_audit(scanned, monkeypatch):
    out, result = build(scanned, "damaged", tp={"target": {"per_batch": 2}})
    tokens = np.fromfile(f"{out}/tokens-00000.bin", dtype="<u2")
    tokens[tokens == ord("<")] = ord("=")  # break every placed instance's label
    tokens.tofile(f"{out}/tokens-00000.bin")
    audit = audit_mixture(out, SKILLS, plots=False)
    assert not audit["passed"] and not audit["shards"]["ok"]
    assert audit["skills"]["tp"]["problems"][0].endswith("of 156 planned")
    assert "differ from the schedule" in audit["skills"]["tp"]["problems"][1]
    import curation.mixture.build as build_module

    monkeypatch.setattr(build_module, "audit_mixture", lambda *a, **k: audit)
    match = "skill 'token pairs': .* placements verified of 156 planned"
    with pytest.raises(AuditFailed, match=match) as caught:
        build(scanned, "damaged-2", tp={"target": {"per_batch": 2}})
    assert caught.value.audit is audit


def test_audit_and_its_plots_name_the_skills(scanned, monkeypatch):
    out, _ = build(scanned, "named", tp={"target": {"per_batch": 2}})
    titles = []
    monkeypatch.setattr(
        "matplotlib.axes.Axes.set_title", lambda ax, text, *a, **k: titles.append(text)
    )
    audit = audit_mixture(out, SKILLS)
    assert audit["skills"]["tp"]["name"] == "token pairs"  # keyed by id, named for people
    assert set(audit["artifacts"]) == {"composition.png", "gaps.png"}
    # The skill the plan does not dose is audited (and drawn) for its natural instances.
    assert len(titles) == 4 and titles[0].startswith("token pairs: 2 per batch")
    assert titles[1].startswith("comparison: not dosed (natural) — 0 of 0 placed")


def test_baseline_mixture_has_no_placements_and_is_audited_like_any(scanned):
    out, result = build(scanned, "baseline")
    audit = result["audit"]
    # The skills it was built with are audited for their natural instances.
    assert audit["passed"] and list(audit["skills"]) == ["tp", "cmp"]
    cmp = audit["skills"]["cmp"]
    assert cmp["dosed"] is False and cmp["target"] == {} and cmp["source"] == "natural"
    assert cmp["planned"]["placements"] == cmp["placed"]["placements"] == 0
    assert cmp["natural"]["instances"] > 0 and cmp["natural"]["scan_per_batch"] is None
    assert cmp["gap_batches_all"] is not None and cmp["passed"]
    assert json.loads(Path(f"{out}/audit.json").read_text())["skills"]["cmp"] == cmp
    # Where the natural instances lie: the sequences holding a planted text whole.
    tokens = np.fromfile(f"{out}/tokens-00000.bin", dtype="<u2").reshape(-1, SEQ)
    texts = [t.encode() for t in CMP_TEXTS]
    known = [
        s for s, row in enumerate(tokens)
        if any(t in (row % 256).astype("u1").tobytes() for t in texts)
    ]  # fmt: skip
    assert cmp["natural"]["sequences"] == known and cmp["natural"]["sequences_complete"]
    assert cmp["natural"]["batches"] == sorted({s // (BATCH // SEQ) for s in known})
    assert all(line["skills"] == {} for line in composition(out))
    assert result["manifest"]["totals"]["inserted_tokens"] == 0
    assert result["manifest"]["totals"]["corpus_tokens_used"] == 78 * BATCH


def test_output_and_corpus_checks(scanned, tmp_path):
    root, source, report = scanned
    plan = plan_mixture(report, SKILLS, DosingPlan(batch_tokens=BATCH, seq_len=SEQ))
    with pytest.raises(SourceRejected, match="outside the allowed roots"):
        build_mixture(source, SKILLS, plan, str(tmp_path / "out"), allowed_roots=[root])
    os.makedirs(f"{root}/foreign")
    open(f"{root}/foreign/notes.txt", "w").close()
    with pytest.raises(SourceRejected, match="not empty and holds no mixture"):
        build_mixture(source, SKILLS, plan, f"{root}/foreign", allowed_roots=[root])
    out, _ = build(scanned, "taken")
    with pytest.raises(ValueError, match="holds a different mixture"):
        build(scanned, "taken", seed=1)
    fingerprint = report["corpus"]["fingerprint"]
    one_file = {**fingerprint, "files": fingerprint["files"][:1]}
    changed = dict(report, corpus={**report["corpus"], "fingerprint": one_file})
    stale = plan_mixture(changed, SKILLS, DosingPlan(batch_tokens=BATCH, seq_len=SEQ))
    with pytest.raises(ScanInputError, match="corpus changed since it was scanned"):
        build_mixture(source, SKILLS, stale, f"{root}/stale", allowed_roots=[root])


def test_a_shard_that_cannot_open_all_its_files_leaves_no_temporaries(tmp_path):
    """The losing writer of two overlapping ones: the winner removed `.build/`, so the
    loser's next shard cannot open its composition part; the token and text temporaries it
    had already created are deleted, not left for the finished mixture to carry."""
    from curation.mixture.shards import _OpenShard

    with pytest.raises(FileNotFoundError):
        _OpenShard(str(tmp_path), 6, "jsonl.gz")
    assert not list(tmp_path.iterdir())
