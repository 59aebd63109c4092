"""JSONL records parse as json.loads would parse them, however fast the parser."""

import json

import pytest

from curation.sources.records import BadRecord, Record, RecordFile, progress_total

LINES = [
    b'{"id": 1, "text": "plain"}\n',
    b'{"id": "x", "text": "caf\\u00e9 \\ud800 lone surrogate"}\n',  # orjson refuses it
    b'\xef\xbb\xbf{"text": "after a BOM"}\n',  # so does this
    b'{"id": NaN, "text": "NaN id"}\n',
    b'{"id": 123456789012345678901234567890, "text": "id beyond 64 bits"}\n',  # orjson: a float
    b'{"id": 1.5, "text": "float id"}\n',
    b'{"text": 123456789012345678901234567890}\n',
    b'{"text": null}\n',
    b'{"body": "no text"}\n',
    b"[1, 2]\n",
    b'{"text": "cut\n',
    b"{'text': 'single quotes'}\n",
    b'{"text": "bad utf-8 \xff"}\n',
    b"   \n",
    b'{"id": 7, "text": "no newline at the end"}',
]


def reference(path, text_key="text", id_key="id"):
    """What the reader gave before orjson: json.loads, then the same checks."""
    out = []
    with open(path, "rb") as f:
        for index, line in enumerate(f):
            if not line.strip():
                continue
            where = f"line {index + 1}"
            try:
                data = json.loads(line)
            except ValueError as e:
                out.append(BadRecord(index, where, f"invalid JSON ({e})"))
                continue
            if not isinstance(data, dict):
                out.append(BadRecord(index, where, "expected a JSON object, got list"))
            elif text_key not in data:
                out.append(BadRecord(index, where, "no text field 'text' (fields: body)"))
            elif not isinstance(data[text_key], str):
                kind = type(data[text_key]).__name__
                out.append(BadRecord(index, where, f"text field 'text' is {kind}, not a string"))
            else:
                doc_id = data.get(id_key)
                out.append(
                    Record(index, data[text_key], str(doc_id) if doc_id is not None else None)
                )
    return out


def test_every_line_reads_as_json_loads_reads_it(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"".join(LINES))
    got = list(RecordFile(str(path), "jsonl", id_key="id"))
    want = reference(path)
    assert len(got) == len(want) == len(LINES) - 1  # the blank line is not a record
    for g, w in zip(got, want, strict=True):
        if isinstance(w, Record) and w.doc_id is None:
            w = Record(w.index, w.text, f"{path}/{w.index}")
        assert g == w
    assert got[1].text == "café \ud800 lone surrogate"
    assert got[4].doc_id == "123456789012345678901234567890"
    assert got[3].doc_id == "nan"


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz"])
def test_progress_ends_at_the_file_size(tmp_path, fmt):
    import gzip

    data = b"".join(json.dumps({"text": "x" * i}).encode() + b"\n" for i in range(2000))
    path = tmp_path / f"a.{fmt}"
    path.write_bytes(gzip.compress(data) if fmt == "jsonl.gz" else data)
    records = RecordFile(str(path), fmt)
    assert sum(1 for _ in records) == 2000
    assert (records.done, "bytes") == progress_total([str(path)], fmt)
