"""Bad input fails with file and line, or is skipped and counted; never silently wrong."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.corpus import CorpusSource
from curation.scan import run_scan
from curation.sources.reader import CorpusReader, ScanCancelled
from curation.sources.records import ScanInputError
from tests.curation.scan_support import MarkerTagger

GOOD = [{"text": "a XX b"}, {"text": "c"}]


def lines(rows):
    return "".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows).encode()


def scan(root, uri, fmt, workdir, **kwargs):
    return run_scan(
        CorpusSource(uri, fmt),
        [],
        str(workdir),
        allowed_roots=[str(root)],
        skill_ids=["x"],
        tagger=MarkerTagger({"x": ["XX"]}),
        plots=False,
        **kwargs,
    )


@pytest.fixture
def jsonl_corpus(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_bytes(lines(GOOD))
    (data / "b.jsonl").write_bytes(
        lines([{"text": "XX"}, '{"text": "cut\n', {"body": "XX"}, "\n", {"text": "XX"}])
    )
    return data


def test_bad_jsonl_fails_with_file_and_line(jsonl_corpus, tmp_path):
    with pytest.raises(ScanInputError, match=r"b.jsonl line 2: invalid JSON") as err:
        scan(jsonl_corpus, f"{jsonl_corpus}/*.jsonl", "jsonl", tmp_path / "w")
    assert err.value.path.endswith("b.jsonl") and err.value.index == 1


def test_bad_jsonl_fails_from_a_worker_process_too(jsonl_corpus, tmp_path):
    with pytest.raises(ScanInputError, match=r"b.jsonl line 2: invalid JSON"):
        scan(jsonl_corpus, f"{jsonl_corpus}/*.jsonl", "jsonl", tmp_path / "w", tasks=2, workers=2)


def test_bad_jsonl_skipped_and_counted(jsonl_corpus, tmp_path):
    report = scan(
        jsonl_corpus, f"{jsonl_corpus}/*.jsonl", "jsonl", tmp_path / "w", on_bad_record="skip"
    )
    corpus = report["corpus"]
    assert corpus["bad_records"] == 2
    first, second = (e.split("/")[-1] for e in corpus["bad_examples"])
    assert first.startswith("b.jsonl line 2: invalid JSON (")
    assert second == "b.jsonl line 3: no text field 'text' (fields: body)"
    assert corpus["docs_scanned"] == 4  # the blank line 4 is not a record
    assert report["skills"]["x"]["instances"] == 3


def test_truncated_gzip(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl.gz").write_bytes(gzip.compress(lines(GOOD)))
    whole = gzip.compress(lines([{"text": "XX " * 50}] * 2000))
    (data / "b.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        ScanInputError, match=r"b.jsonl.gz line \d+: unreadable from here on: truncated"
    ):
        scan(data, f"{data}/*.jsonl.gz", "jsonl.gz", tmp_path / "w1")
    report = scan(data, f"{data}/*.jsonl.gz", "jsonl.gz", tmp_path / "w2", on_bad_record="skip")
    assert report["corpus"]["bad_records"] >= 1
    assert "truncated or corrupt" in report["corpus"]["bad_examples"][-1]


def test_parquet_null_text_names_the_row(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"text": ["XX", "b"]}), data / "a.parquet")
    pq.write_table(pa.table({"text": ["XX", None, "XX"]}), data / "b.parquet")
    with pytest.raises(ScanInputError, match=r"b.parquet row 1: text column 'text' is null"):
        scan(data, f"{data}/*.parquet", "parquet", tmp_path / "w1")
    report = scan(data, f"{data}/*.parquet", "parquet", tmp_path / "w2", on_bad_record="skip")
    assert report["corpus"]["bad_records"] == 1 and report["skills"]["x"]["instances"] == 3


def test_parquet_file_without_the_text_column_fails_even_when_skipping(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"text": ["XX"]}), data / "a.parquet")
    pq.write_table(pa.table({"body": ["XX"]}), data / "b.parquet")
    with pytest.raises(ScanInputError, match=r"b.parquet: no text column 'text' \(columns: body\)"):
        scan(data, f"{data}/*.parquet", "parquet", tmp_path / "w", on_bad_record="skip")


def test_reader_stops_at_the_cancel_marker(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(lines(GOOD * 10))
    cancel = tmp_path / "CANCEL"
    cancel.touch()
    reader = CorpusReader(
        [str(path)],
        "jsonl",
        state_dir=str(tmp_path / "state"),
        cancel_file=str(cancel),
        flush_interval=0.0,
    )
    with pytest.raises(ScanCancelled):
        list(reader())
