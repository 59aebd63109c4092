import gzip
import json
import os

import datasets
import pytest

from curation.corpus import (
    CorpusSource,
    SourceRejected,
    compare_fingerprints,
    fingerprint,
    resolve_source,
    validate_corpus,
)


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_jsonl(root / "web" / "a.jsonl", [{"text": "alpha"}])
    write_jsonl(root / "web" / "b.jsonl", [{"text": "beta"}])
    write_jsonl(outside / "secret.jsonl", [{"text": "secret"}])
    return root, outside


def test_paths_and_globs_inside_a_root_resolve(tree):
    root, _ = tree
    roots = [str(root)]
    expected = [str(root / "web" / "a.jsonl"), str(root / "web" / "b.jsonl")]
    assert resolve_source(f"{root}/web/*.jsonl", roots) == expected
    assert resolve_source(f"{root}/**/*.jsonl", roots) == expected
    assert resolve_source(f"{root}/web/a.jsonl", roots) == expected[:1]
    assert resolve_source(f"file://{root}/web/a.jsonl", roots) == expected[:1]
    assert resolve_source(f"file://localhost{root}/web/a.jsonl", roots) == expected[:1]
    assert resolve_source(f"{root}/web/../web/a.jsonl", roots) == expected[:1]


def test_symlinked_root_is_followed(tree, tmp_path):
    root, _ = tree
    os.symlink(root, tmp_path / "alias")
    assert resolve_source(f"{tmp_path}/alias/web/a.jsonl", [str(tmp_path / "alias")]) == [
        str(root / "web" / "a.jsonl")
    ]


@pytest.mark.parametrize(
    "uri",
    [
        "{root}/../outside/secret.jsonl",
        "{root}/web/../../outside/*.jsonl",
        "{outside}/secret.jsonl",
        "/etc/passwd",
        "/*/secret.jsonl",
        "file://{root}/../outside/secret.jsonl",
        "file:///{root}/%2e%2e/outside/secret.jsonl",
        "file://{root}/web/%2E%2E/%2E%2E/outside/secret.jsonl",
    ],
)
def test_escapes_are_rejected(tree, uri):
    root, outside = tree
    with pytest.raises(SourceRejected, match="outside the allowed roots"):
        resolve_source(uri.format(root=root, outside=outside), [str(root)])


def test_symlinks_pointing_out_are_rejected_even_inside_a_glob(tree):
    root, outside = tree
    os.symlink(outside / "secret.jsonl", root / "web" / "c.jsonl")
    with pytest.raises(SourceRejected, match="c.jsonl resolves to .*secret.jsonl"):
        resolve_source(f"{root}/web/*.jsonl", [str(root)])
    with pytest.raises(SourceRejected, match="outside the allowed roots"):
        resolve_source(f"{root}/web/c.jsonl", [str(root)])
    os.symlink(outside, root / "linked")
    with pytest.raises(SourceRejected, match="outside the allowed roots"):
        resolve_source(f"{root}/linked/*.jsonl", [str(root)])


def test_symlinked_folder_listing_is_checked(tree):
    root, outside = tree
    os.symlink(outside, root / "web" / "more")
    source = CorpusSource(f"{root}/web", "jsonl")
    with pytest.raises(SourceRejected, match="secret.jsonl.*outside the allowed roots"):
        validate_corpus(source, [str(root)])


@pytest.mark.parametrize(
    ("uri", "protocols", "message"),
    [
        ("http://169.254.169.254/latest/meta-data/", None, "protocol 'http' is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", {"file", "http"}, "internal address"),
        ("http://127.0.0.1:8080/x.jsonl", {"http"}, "internal address"),
        ("memory://corpora/a.jsonl", None, "protocol 'memory' is not allowed"),
        ("s3://bucket/web/*.jsonl", None, "protocol 's3' is not allowed"),
        ("file://evil.example.com/etc/passwd", None, "names the host"),
        ("web/a.jsonl", None, "relative path"),
        ("/data/\x00/a.jsonl", None, "NUL"),
    ],
)
def test_bad_protocols_and_forms_are_rejected(tree, uri, protocols, message):
    root, _ = tree
    with pytest.raises(SourceRejected, match=message):
        resolve_source(uri, [str(root)], protocols)


def test_allowed_remote_protocol_must_stay_under_its_root():
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/corpora/a.jsonl", b'{"text": "x"}\n')
    fs.pipe("/private/b.jsonl", b'{"text": "y"}\n')
    roots = ["memory://corpora"]
    assert resolve_source("memory://corpora/*.jsonl", roots, {"memory"}) == [
        "memory:///corpora/a.jsonl"
    ]
    with pytest.raises(SourceRejected, match="'..' segments"):
        resolve_source("memory://corpora/../private/b.jsonl", roots, {"memory"})
    with pytest.raises(SourceRejected, match="outside the allowed roots for memory"):
        resolve_source("memory://private/b.jsonl", roots, {"memory"})
    files = validate_corpus(CorpusSource("memory://corpora/a.jsonl", "jsonl"), roots, {"memory"})
    assert files == ["memory:///corpora/a.jsonl"]


def test_no_match_and_no_roots(tree):
    root, _ = tree
    with pytest.raises(SourceRejected, match="no files match"):
        resolve_source(f"{root}/web/*.parquet", [str(root)])
    with pytest.raises(SourceRejected, match="none configured"):
        resolve_source(f"{root}/web/a.jsonl", [])


def test_validate_returns_files_and_checks_the_text_field(tree):
    root, _ = tree
    roots = [str(root)]
    files = validate_corpus(CorpusSource(f"{root}/web/*.jsonl", "jsonl"), roots)
    assert [os.path.basename(f) for f in files] == ["a.jsonl", "b.jsonl"]
    assert validate_corpus(CorpusSource(str(root / "web"), "jsonl"), roots) == files
    with pytest.raises(
        SourceRejected, match=r"a.jsonl line 1: no text field 'body' \(fields: text\)"
    ):
        validate_corpus(CorpusSource(f"{root}/web/*.jsonl", "jsonl", text_key="body"), roots)
    write_jsonl(root / "bad" / "x.jsonl", [{"text": "ok"}, {"text": None}])
    with pytest.raises(SourceRejected, match="line 2: text field 'text' is NoneType"):
        validate_corpus(CorpusSource(f"{root}/bad/x.jsonl", "jsonl"), roots)


def test_validate_checks_the_format(tree):
    root, _ = tree
    roots = [str(root)]
    with pytest.raises(
        SourceRejected, match="not gzip-compressed; register it with format 'jsonl'"
    ):
        validate_corpus(CorpusSource(f"{root}/web/a.jsonl", "jsonl.gz"), roots)
    gz = root / "gz" / "a.jsonl.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(b'{"text": "x"}\n'))
    with pytest.raises(SourceRejected, match="is gzip-compressed"):
        validate_corpus(CorpusSource(str(gz), "jsonl"), roots)
    assert validate_corpus(CorpusSource(str(gz), "jsonl.gz"), roots) == [str(gz)]
    with pytest.raises(SourceRejected, match="not a Parquet file"):
        validate_corpus(CorpusSource(f"{root}/web/a.jsonl", "parquet"), roots)
    with pytest.raises(SourceRejected, match="unknown format"):
        CorpusSource(f"{root}/web/a.jsonl", "csv")


def test_validate_parquet_column(tree):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, _ = tree
    path = root / "p" / "a.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"content": ["x"]}), path)
    with pytest.raises(SourceRejected, match=r"no text column 'text' \(columns: content\)"):
        validate_corpus(CorpusSource(str(path), "parquet"), [str(root)])
    assert validate_corpus(CorpusSource(str(path), "parquet", text_key="content"), [str(root)])


def test_validate_hf_disk(tree):
    root, _ = tree
    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(9)]})
    ds.save_to_disk(str(root / "hf"), num_shards=3)
    files = validate_corpus(CorpusSource(str(root / "hf"), "hf_disk"), [str(root)])
    assert [os.path.basename(f) for f in files] == [
        f"data-0000{i}-of-00003.arrow" for i in range(3)
    ]
    datasets.DatasetDict({"train": ds}).save_to_disk(str(root / "dd"))
    with pytest.raises(SourceRejected, match=r"DatasetDict with splits \['train'\].*dd/train"):
        validate_corpus(CorpusSource(str(root / "dd"), "hf_disk"), [str(root)])
    with pytest.raises(SourceRejected, match="no state.json"):
        validate_corpus(CorpusSource(str(root / "web"), "hf_disk"), [str(root)])


def test_fingerprint_detects_changes(tree):
    root, _ = tree
    a, b = str(root / "web" / "a.jsonl"), str(root / "web" / "b.jsonl")
    before = fingerprint([a, b])
    assert [e["path"] for e in before["files"]] == [a, b]
    assert before == fingerprint([a, b])
    assert not compare_fingerprints(before, fingerprint([a, b])).changed

    with open(a, "a") as f:
        f.write('{"text": "more"}\n')
    c = write_jsonl(root / "web" / "c.jsonl", [{"text": "gamma"}])
    after = fingerprint([a, c])
    diff = compare_fingerprints(before, after)
    assert (diff.added, diff.removed, diff.modified) == ([c], [b], [a])
    assert after["digest"] != before["digest"]
    assert diff.describe() == f"1 file added ({c}); 1 file removed ({b}); 1 file modified ({a})"

    same_size = fingerprint([c])
    os.utime(c, ns=(0, 10**9))
    assert compare_fingerprints(same_size, fingerprint([c])).modified == [c]
    assert (
        compare_fingerprints(fingerprint([a, c]), fingerprint([c, a])).describe()
        == "file order changed"
    )
