"""End-to-end scans on planted corpora: every number must equal what was planted."""

import os

import pytest

from curation import stats
from curation.corpus import CorpusSource
from curation.scan import run_scan
from curation.synthetic_corpus import generate_corpus
from tests.curation.scan_support import CMP, PATTERNS, PLANTS, SKILL_IDS, MarkerTagger, match_key

FORMATS = ["jsonl", "jsonl.gz", "parquet", "hf_disk"]
BATCH = 16384
PROBES = {"cmp": {match_key(CMP[0]), match_key(CMP[1])}, "modadd": {"not-a-key"}}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    made = {
        f: generate_corpus(str(root / f), 300, PLANTS, seed=1, format=f, n_files=5, mean_chars=800)
        for f in FORMATS
    }
    return str(root), made


def scan(root, corpus, workdir, **kwargs):
    kwargs = {
        "skill_ids": SKILL_IDS,
        "tagger": MarkerTagger(PATTERNS),
        "batch_tokens": BATCH,
        "plots": False,
    } | kwargs
    source = CorpusSource(corpus.uri, corpus.format, id_key="id")
    return run_scan(source, [], str(workdir), allowed_roots=[root], **kwargs)


def assert_matches_truth(report, truth):
    corpus = report["corpus"]
    assert (corpus["docs_scanned"], corpus["tokens_scanned"]) == (truth["docs"], truth["bytes"])
    assert corpus["bad_records"] == 0
    for sid in SKILL_IDS:
        got = report["skills"][sid]
        want = truth["skills"].get(sid) or {
            "instances": 0,
            "matched_docs": 0,
            "unique_instances": 0,
            "max_repeats": 0,
            "instance_bytes": 0,
            "positions": [],
        }
        n = want["instances"]
        assert got["docs_scanned"] == truth["docs"] and got["tokens_scanned"] == truth["bytes"]
        for key in ("instances", "matched_docs", "unique_instances", "max_repeats"):
            assert got[key] == want[key], (sid, key)
        assert got["doc_fraction"] == want["matched_docs"] / truth["docs"]
        assert got["token_fraction"] == want["instance_bytes"] / truth["bytes"]
        rate, ci = stats.rate_per_million(n, truth["bytes"])
        assert (got["per_million_tokens"], got["per_million_tokens_poisson_ci95"]) == (rate, ci)
        phi = got["rate_interval"]["dispersion"]
        assert (
            got["per_million_tokens_ci95"]
            == stats.clustered_rate_per_million(n, truth["bytes"], phi)[1]
        )
        assert got["per_batch"] == n * BATCH / truth["bytes"]
        assert (got["gap_tokens"], got["gap_batches"]) == stats.gap_stats(want["positions"], BATCH)
        by_file = got["by_file"]
        assert sum(f["instances"] for f in by_file) == n
        assert sum(f["tokens_scanned"] for f in by_file) == truth["bytes"]
        per_file = [
            sum(1 for i in truth["instances"] if i["skill_id"] == sid and i["file"] == k)
            for k in range(5)
        ]
        assert [f["instances"] for f in by_file] == per_file
    cmp_probes = sum(
        1 for i in truth["instances"] if i["skill_id"] == "cmp" and i["text"] in CMP[:2]
    )
    assert report["skills"]["cmp"]["probe_collisions"] == cmp_probes > 0
    assert report["skills"]["modadd"]["probe_collisions"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tasks", [1, 4])
def test_scan_counts_exactly_what_was_planted(corpora, tmp_path, fmt, tasks):
    root, made = corpora
    report = scan(root, made[fmt], tmp_path, tasks=tasks, probe_keys=PROBES)
    assert_matches_truth(report, made[fmt].truth)
    assert report["corpus"]["tasks"] == tasks


def test_parallel_workers_give_the_same_report(corpora, tmp_path):
    root, made = corpora
    one = scan(root, made["jsonl.gz"], tmp_path / "one", tasks=1, probe_keys=PROBES)
    pool = scan(root, made["jsonl.gz"], tmp_path / "pool", tasks=3, workers=3, probe_keys=PROBES)
    assert one["skills"] == pool["skills"]


def test_progress_plots_and_report_file(corpora, tmp_path):
    root, made = corpora
    calls = []
    report = scan(
        root,
        made["jsonl"],
        tmp_path,
        tasks=2,
        plots=True,
        progress=lambda f, m: calls.append((f, m)),
    )
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    mb = f"{sum(os.path.getsize(f) for f in made['jsonl'].files) / 1e6:,.1f}"
    assert any(m == f"scanned {mb} / {mb} MB, 300 documents" for _, m in calls)
    for name in ("rates.png", "gaps.png"):
        path = report["artifacts"][name]
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.exists(tmp_path / "report.json")


def test_resume_reruns_only_the_missing_rank(corpora, tmp_path):
    root, made = corpora
    first = scan(root, made["parquet"], tmp_path, tasks=4, probe_keys=PROBES)
    kept = {r: os.stat(tmp_path / "partials" / f"0000{r}.json").st_mtime_ns for r in (0, 1, 3)}
    os.remove(tmp_path / "logs" / "completions" / "00002")
    os.remove(tmp_path / "partials" / "00002.json")
    second = scan(root, made["parquet"], tmp_path, tasks=4, probe_keys=PROBES)
    assert second == first
    assert os.path.exists(tmp_path / "partials" / "00002.json")
    assert kept == {
        r: os.stat(tmp_path / "partials" / f"0000{r}.json").st_mtime_ns for r in (0, 1, 3)
    }


def test_resume_refuses_a_changed_corpus_or_setup(tmp_path):
    root = tmp_path / "data"
    corpus = generate_corpus(
        str(root), 20, PLANTS, seed=2, format="jsonl", n_files=2, mean_chars=300
    )
    scan(str(root), corpus, tmp_path / "work", tasks=2)
    with pytest.raises(ValueError, match="tasks=2, not 3"):
        scan(str(root), corpus, tmp_path / "work", tasks=3)
    with pytest.raises(ValueError, match="probe_keys_sha256"):
        scan(str(root), corpus, tmp_path / "work", tasks=2, probe_keys=PROBES)
    with open(corpus.files[1], "a") as f:
        f.write('{"text": "one more"}\n')
    with pytest.raises(
        Exception, match=r"corpus changed since this scan started \(1 file modified"
    ):
        scan(str(root), corpus, tmp_path / "work", tasks=2)


def test_cancel_from_the_progress_callback_then_resume(corpora, tmp_path):
    root, made = corpora

    class Cancelled(Exception):
        pass

    def cancel(fraction, message):
        if message.startswith("scanned"):
            raise Cancelled

    with pytest.raises(Cancelled):
        scan(
            root,
            made["jsonl"],
            tmp_path,
            tasks=2,
            progress=cancel,
            poll_seconds=0.001,
            probe_keys=PROBES,
        )
    assert_matches_truth(
        scan(root, made["jsonl"], tmp_path, tasks=2, probe_keys=PROBES), made["jsonl"].truth
    )


def test_executor_is_chosen_by_the_factory(corpora, tmp_path):
    from datatrove.executor import LocalPipelineExecutor

    root, made = corpora
    calls = []

    def factory(**kwargs):
        calls.append(kwargs)
        return LocalPipelineExecutor(**kwargs)

    scan(root, made["jsonl"], tmp_path, tasks=2, workers=1, executor_factory=factory)
    assert len(calls) == 1
    assert (calls[0]["tasks"], calls[0]["workers"]) == (2, 1)
    assert calls[0]["logging_dir"] == str(tmp_path / "logs")
    assert [type(s).__name__ for s in calls[0]["pipeline"]] == [
        "CorpusReader",
        "MarkerTagger",
        "SkillFrequencyStats",
    ]


def test_calibrated_tokenizer_ratio(corpora, tmp_path):
    root, made = corpora
    truth = made["jsonl"].truth

    def words(text):
        return len(text.split())

    report = scan(root, made["jsonl"], tmp_path, tokens=words)
    unit = report["corpus"]["token_unit"]
    assert (
        unit["mode"] == "tokenizer" and unit["tokenizer"] == "words" and unit["sample_docs"] == 200
    )
    ratio = unit["bytes_per_token"]
    assert 4 < ratio < 9 and 0 < unit["stderr"] < 0.5
    cmp = report["skills"]["cmp"]
    assert cmp["tokens_scanned"] == round(truth["bytes"] / ratio)
    assert cmp["instances"] == truth["skills"]["cmp"]["instances"]
    positions = [p / ratio for p in truth["skills"]["cmp"]["positions"]]
    assert cmp["gap_tokens"] == pytest.approx(stats.gap_stats(positions, BATCH)[0])


def test_tokenizer_is_only_loaded_from_a_local_path(corpora, tmp_path):
    root, made = corpora
    with pytest.raises(ValueError, match="local files only"):
        scan(root, made["jsonl"], tmp_path, tokens=str(tmp_path / "no-such-tokenizer"))


def test_more_tasks_than_files(corpora, tmp_path):
    root, made = corpora
    report = scan(root, made["parquet"], tmp_path, tasks=7, probe_keys=PROBES)
    assert_matches_truth(report, made["parquet"].truth)
    assert report["corpus"]["tasks"] == 7
