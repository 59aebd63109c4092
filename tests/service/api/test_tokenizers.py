"""A tokenizer over HTTP: scan and build a mixture in a data team's BPE (trained here, read
by path under an allowed root); a tokenizer that cannot be used is a 422 with nothing stored."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from fastapi.testclient import TestClient

from curation.synthetic_tokenizer import train_bpe
from service.api.schemas import MixtureManifest, PlannedMixture, ScanReport
from service.worker import runner
from tests.service.api.test_report_schemas import check
from tests.service.conftest import auth


def texts(root: Path) -> list[str]:
    out = []
    for path in sorted((root / "web").glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            out += [json.loads(line)["text"] for line in f]
    return out


def test_scan_and_build_in_a_bpe_and_refuse_what_cannot_be_used(
    client: TestClient, key_a: str, planted: dict, corpora_root: Path, tmp_path: Path
) -> None:
    h = auth(key_a)
    bpe = train_bpe(texts(corpora_root), 500, str(corpora_root / "tok"))
    hf = {"kind": "hf", "path": str(corpora_root / "tok")}  # the folder holding tokenizer.json
    corpus = client.post(
        "/v1/corpora", headers=h, json={"name": "web", "uri": planted["uri"], "format": "jsonl.gz"}
    ).json()
    skill = client.post(
        "/v1/skills", headers=h,
        json={"name": "cmp", "detector": {"kind": "builtin"},
              "generator": {"family": "number_comparison", "params": {}}},
    ).json()  # fmt: skip
    scan_body = {"corpus_id": corpus["id"], "skill_ids": [skill["id"]], "batch_tokens": 2048}
    outside = tmp_path / "elsewhere"
    train_bpe(["abc"] * 5, 280, str(outside))
    for tokenizer, kind, words in [
        ({"kind": "hf", "path": str(corpora_root / "nope.json")}, "tokenizer-invalid", "exist"),
        ({"kind": "hf", "path": str(outside)}, "source-rejected", "allowed roots"),
        ({"kind": "hf"}, "validation", "needs a path"),
    ]:
        r = client.post("/v1/scans", headers=h, json={**scan_body, "tokenizer": tokenizer})
        assert r.status_code == 422 and words in r.text, r.text
        assert kind == "validation" or r.json()["type"].endswith(kind)
    assert client.get("/v1/scans", headers=h).json()["data"] == []
    bytes_scan = client.post("/v1/scans", headers=h, json=scan_body).json()
    scan = client.post("/v1/scans", headers=h, json={**scan_body, "tokenizer": hf}).json()
    assert scan["tokenizer"] == hf
    for job in (bytes_scan, scan):
        assert runner.execute(job["job"]["id"]) == "succeeded"
    report = client.get(f"/v1/scans/{scan['id']}", headers=h).json()["report"]
    check(ScanReport, report, set())  # every key it writes is a declared field
    unit = report["corpus"]
    assert unit["token_unit"]["mode"] == "tokenizer" and len(unit["token_unit"]["sha256"]) == 64

    plan = {skill["id"]: {"target": {"per_batch": 2}}}
    mix = {"corpus_id": corpus["id"], "batch_tokens": 2048, "seq_len": 64, "plan": plan}
    no_eos = train_bpe(["abc def"] * 5, 280, str(corpora_root / "noeos"), eos_token=None)
    for body, kind, words in [
        ({"scan_id": bytes_scan["id"], "tokenizer": hf}, "plan-infeasible", "same tokenizer"),
        ({"scan_id": scan["id"], "tokenizer": {"kind": "hf", "path": no_eos}},
         "tokenizer-invalid", "eos_token"),
    ]:  # fmt: skip
        r = client.post("/v1/mixtures", headers=h, json={**mix, **body})
        assert r.status_code == 422 and r.json()["type"].endswith(kind) and words in r.text, r.text
    assert client.get("/v1/mixtures", headers=h).json()["data"] == []

    r = client.post("/v1/mixtures", headers=h, json={**mix, "scan_id": scan["id"], "tokenizer": hf})
    assert r.status_code == 202, r.text
    assert r.json()["plan"]["tokenizer"] == hf and r.json()["plan"]["corpus"]["tokens_estimated"]
    assert runner.execute(r.json()["job"]["id"]) == "succeeded"
    done = client.get(f"/v1/mixtures/{r.json()['id']}", headers=h).json()
    manifest = done["manifest"]
    check(MixtureManifest, manifest, set())
    check(PlannedMixture, r.json()["plan"], set())
    assert manifest["tokenizer"]["kind"] == "hf" and manifest["token_dtype"] == "uint16"
    assert manifest["tokenizer"]["sha256"] == unit["token_unit"]["sha256"]
    assert done["audit"]["passed"] is True
    assert Path(done["output"]["uri"], "tokenizer.json").read_bytes() == Path(bpe).read_bytes()
