import json
from array import array

import numpy as np
import pytest
from datatrove.data import Document

from curation import stats
from curation.scan_report import merge_partials
from curation.steps.frequency import (
    SkillFrequencyStats,
    decode_positions,
    encode_positions,
)
from tests.curation.scan_support import MarkerTagger, match_key


def docs(path, texts):
    return [
        Document(text=t, id=f"{path}/{i}", metadata={"file_path": path, "row": i})
        for i, t in enumerate(texts)
    ]


def run_rank(folder, documents, rank, world_size, **kwargs):
    step = SkillFrequencyStats(str(folder), skill_ids=["x", "none"], **kwargs)
    tagged = MarkerTagger({"x": ["XX"]})(documents)
    out = list(step(tagged, rank=rank, world_size=world_size))
    assert len(out) == len(documents)  # the step passes documents through


def test_positions_roundtrip():
    values = array("q", [0, 5, 2**40, 7])
    assert decode_positions(encode_positions(values)).tolist() == [0, 5, 2**40, 7]


def test_partials_merge_back_into_corpus_order(tmp_path):
    a = ["XX start", "plain", "é then XX and XX"]  # file a: 3 docs
    b = ["no skill here", "XX"]
    c = ["ü" * 10 + "XX"]
    # rank 0 reads files a and c, rank 1 reads file b, as CorpusReader shards them
    run_rank(
        tmp_path,
        docs("a", a) + docs("c", c),
        rank=0,
        world_size=2,
        probe_keys={"x": {match_key("XX")}},
    )
    run_rank(tmp_path, docs("b", b), rank=1, world_size=2)
    partial = json.loads((tmp_path / "00000.json").read_text())
    assert partial["files"] == {
        "a": {"docs": 3, "bytes": 8 + 5 + 17, "bytes_sq": 8**2 + 5**2 + 17**2},
        "c": {"docs": 1, "bytes": 22, "bytes_sq": 22**2},
    }
    a_counts = partial["skills"]["x"]["files"]["a"]
    assert (a_counts["instances_sq"], a_counts["instances_x_bytes"]) == (1 + 4, 8 + 2 * 17)

    report = merge_partials(str(tmp_path), ["a", "b", "c"], batch_tokens=10).to_dict()
    x = report["skills"]["x"]
    size_a, size_b = 30, 13 + 2
    expected = [0, 8 + 5 + 8, 8 + 5 + 15, size_a + 13, size_a + size_b + 20]
    total = size_a + size_b + 22
    assert x["instances"] == 5 and x["matched_docs"] == 4 and x["docs_scanned"] == 6
    assert x["unique_instances"] == 1 and x["max_repeats"] == 5
    assert x["tokens_scanned"] == total and x["token_fraction"] == 10 / total
    assert x["probe_collisions"] == 4  # rank 1 was given no probe keys
    gap_tokens, gap_batches = stats.gap_stats(expected, 10)
    assert x["gap_tokens"] == gap_tokens and x["gap_batches"] == gap_batches
    assert [f["instances"] for f in x["by_file"]] == [3, 1, 1]
    assert [f["file"] for f in x["by_file"]] == ["a", "b", "c"]
    none = report["skills"]["none"]
    assert (
        none["instances"] == 0
        and none["gap_tokens"] is None
        and none["per_million_tokens_ci95"][1] > 0
        and none["per_million_tokens_ci95"] == none["per_million_tokens_poisson_ci95"]
        and none["rate_interval"]["dispersion"] is None
    )
    assert report["corpus"] == {
        "files": 3,
        "docs_scanned": 6,
        "bytes_scanned": total,
        "tokens_scanned": total,
        "batch_tokens": 10,
        "tasks": 2,
    }


def test_merge_refuses_incomplete_or_mixed_partials(tmp_path):
    run_rank(tmp_path, docs("a", ["XX"]), rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"missing ranks \[1\]"):
        merge_partials(str(tmp_path), ["a"], 10)
    run_rank(tmp_path, docs("b", ["XX"]), rank=1, world_size=3)
    with pytest.raises(ValueError, match="different task counts"):
        merge_partials(str(tmp_path), ["a", "b"], 10)
    with pytest.raises(ValueError, match="no frequency partials"):
        merge_partials(str(tmp_path / "empty"), ["a"], 10)


def test_merge_refuses_files_outside_the_corpus(tmp_path):
    run_rank(tmp_path, docs("zzz", ["XX"]), rank=0, world_size=1)
    with pytest.raises(ValueError, match="zzz, which is not in the corpus"):
        merge_partials(str(tmp_path), ["a"], 10)


def test_tagger_contract_violations_fail_loudly(tmp_path):
    doc = Document(
        text="XX",
        id="d",
        metadata={
            "file_path": "a",
            "skills": {"x": {"count": 2, "spans": [[0, 2]], "keys": ["k"]}},
        },
    )
    step = SkillFrequencyStats(str(tmp_path))
    with pytest.raises(ValueError, match="count=2, 1 spans and 1 keys"):
        list(step([doc]))


def test_bytes_per_token_scales_tokens_and_gaps(tmp_path):
    run_rank(tmp_path, docs("a", ["XX" + " " * 98, "XX" + " " * 98]), rank=0, world_size=1)
    x = merge_partials(str(tmp_path), ["a"], batch_tokens=10, bytes_per_token=4.0).skills["x"]
    assert x["tokens_scanned"] == 50
    assert x["gap_tokens"]["mean"] == 25.0 and x["gap_batches"]["mean"] == 2.5
    assert x["per_million_tokens"] == pytest.approx(2 / 50 * 1e6)


def test_positions_stay_compact(tmp_path):
    # 200k instances in one document: the partial holds 8 bytes (base64) per position.
    text = "XX " * 200_000
    run_rank(tmp_path, docs("a", [text]), rank=0, world_size=1)
    size = (tmp_path / "00000.json").stat().st_size
    assert size < 200_000 * 8 * 4 / 3 + 10_000  # keys: one counter entry, not one per instance
    x = merge_partials(str(tmp_path), ["a"], batch_tokens=3).skills["x"]
    assert x["instances"] == 200_000 and x["gap_tokens"]["max"] == 3 and x["unique_instances"] == 1
    assert np.isclose(x["gap_batches"]["mean"], 1.0)


def test_dispersion_merges_exactly_whatever_the_ranks(tmp_path):
    rng = np.random.default_rng(5)
    names = [f"f{i}" for i in range(6)]
    texts = {
        n: ["XX " * int(k) + "y" * int(rng.integers(1, 400)) for k in rng.poisson(0.4, 30) * 3]
        for n in names
    }
    reports = []
    for case, ranks in enumerate([[0] * 6, [0, 1, 2, 0, 1, 2], [2, 2, 1, 0, 0, 1]]):
        folder = tmp_path / str(case)
        world = max(ranks) + 1
        for rank in range(world):
            mine = [
                d for n, r in zip(names, ranks, strict=True) if r == rank for d in docs(n, texts[n])
            ]
            run_rank(folder, mine, rank=rank, world_size=world)
        reports.append(merge_partials(str(folder), names, batch_tokens=100).skills["x"])
    first = reports[0]
    assert all(r == first for r in reports[1:])  # identical, not only close
    # The same as computed document by document.
    lengths = np.array([len(t.encode()) for n in names for t in texts[n]])
    counts = np.array([t.count("XX") for n in names for t in texts[n]])
    Y, n = counts.sum(), counts.size
    mu = Y * lengths / lengths.sum()
    direct = ((counts - mu) ** 2).sum() / Y * n / (n - 1)
    interval = first["rate_interval"]
    assert interval["dispersion"] == pytest.approx(direct, rel=1e-12) and direct > 1.5
    assert interval["unit"] == "document" and interval["files"] == 6
    lo, hi = first["per_million_tokens_ci95"]
    p_lo, p_hi = first["per_million_tokens_poisson_ci95"]
    assert lo < p_lo < first["per_million_tokens"] < p_hi < hi
    assert first["per_batch_ci95"] == [x * 100 / 1e6 for x in (lo, hi)]
