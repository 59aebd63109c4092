"""Corpora and scans over HTTP: registration refuses what it must before opening anything,
and a scan job's report equals what was planted in the corpus."""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.cli.embedded import refresh_settings
from service.db import session_scope
from service.models import Corpus
from service.worker import runner
from tests.service.conftest import auth


def register(client: TestClient, key: str, uri: str, fmt: str = "jsonl.gz") -> dict:
    r = client.post(
        "/v1/corpora", json={"name": "web", "uri": uri, "format": fmt}, headers=auth(key)
    )
    assert r.status_code == 201, r.text
    return r.json()


def cmp_skill(client: TestClient, key: str) -> dict:
    r = client.post(
        "/v1/skills",
        headers=auth(key),
        json={"name": "cmp", "detector": {"kind": "regex", "pattern": r"cmp \d+ \d+ : [<>]"}},
    )
    assert r.status_code == 201, r.text
    return r.json()


def post_cmp_scan(client: TestClient, key: str, planted: dict) -> tuple[dict, dict]:
    """A scan of the planted corpus for the `cmp` skill, queued: (scan, skill)."""
    corpus = register(client, key, planted["uri"])
    skill = cmp_skill(client, key)
    r = client.post(
        "/v1/scans",
        headers=auth(key),
        json={"corpus_id": corpus["id"], "skill_ids": [skill["id"]], "batch_tokens": 8192},
    )
    assert r.status_code == 202, r.text
    return r.json(), skill


def test_scan_report_equals_what_was_planted(client: TestClient, key_a: str, planted: dict) -> None:
    scan, skill = post_cmp_scan(client, key_a, planted)
    corpus = client.get(f"/v1/corpora/{scan['corpus_id']}", headers=auth(key_a)).json()
    assert corpus["files"] == 3 and corpus["total_bytes"] > 0
    assert scan["job"]["state"] == "queued" and scan["report"] is None
    assert scan["skills"] == [{"id": skill["id"], "version": 1, "name": "cmp"}]

    assert runner.execute(scan["job"]["id"]) == "succeeded"
    done = client.get(f"/v1/scans/{scan['id']}", headers=auth(key_a)).json()
    assert done["job"]["state"] == "succeeded"
    report = done["report"]["skills"][skill["id"]]
    truth = [i for i in planted["truth"]["instances"] if i["skill_id"] == "cmp"]
    positions = sorted(i["position"] for i in truth)
    assert report["instances"] == len(truth)
    assert report["matched_docs"] == len({i["doc"] for i in truth})
    assert report["unique_instances"] == len({i["text"] for i in truth})
    assert report["max_repeats"] == max(Counter(i["text"] for i in truth).values())
    assert report["docs_scanned"] == 240
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
    assert report["gap_tokens"]["max"] == max(gaps)
    assert report["gap_tokens"]["mean"] == pytest.approx(sum(gaps) / len(gaps))
    assert report["per_batch"] == pytest.approx(len(truth) * 8192 / report["tokens_scanned"])
    lo, hi = report["per_million_tokens_ci95"]
    assert lo < report["per_million_tokens"] < hi
    names = {a["name"] for a in done["job"]["artifacts"]}
    assert {"report.json", "rates.png", "gaps.png"} <= names
    png = client.get(f"/v1/jobs/{scan['job']['id']}/artifacts/rates.png", headers=auth(key_a))
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_paths_outside_the_allowed_roots_are_refused(
    client: TestClient, key_a: str, corpora_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "a.jsonl").write_text('{"text": "x"}\n')
    os.symlink(outside, corpora_root / "link")
    for uri in [
        str(corpora_root / ".." / "secret" / "a.jsonl"),
        str(outside / "a.jsonl"),
        str(corpora_root / "link" / "a.jsonl"),
        f"file://{outside}/a.jsonl",
        "file://evil.example/etc/passwd",
        "http://169.254.169.254/latest/meta-data",
        "memory://x/a.jsonl",
        "/etc/passwd",
    ]:
        r = client.post(
            "/v1/corpora", json={"name": "x", "uri": uri, "format": "jsonl"}, headers=auth(key_a)
        )
        assert r.status_code == 422, (uri, r.text)
        assert r.json()["type"].endswith("source-rejected"), (uri, r.json())
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Corpus)) == 0


def test_unreadable_or_fieldless_corpora_are_refused(
    client: TestClient, key_a: str, corpora_root: Path
) -> None:
    (corpora_root / "notext.jsonl").write_text('{"body": "no text field"}\n')
    r = client.post(
        "/v1/corpora",
        headers=auth(key_a),
        json={"name": "x", "uri": str(corpora_root / "notext.jsonl"), "format": "jsonl"},
    )
    assert r.status_code == 422, r.text
    assert "'text'" in r.json()["detail"] or '"text"' in r.json()["detail"], r.json()
    r = client.post(
        "/v1/corpora",
        headers=auth(key_a),
        json={"name": "x", "uri": str(corpora_root / "none*.jsonl"), "format": "jsonl"},
    )
    assert r.status_code == 422


def test_a_corrupt_file_fails_the_scan_naming_file_and_line(
    client: TestClient, key_a: str, corpora_root: Path
) -> None:
    path = corpora_root / "c.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write('{"text": "cmp 1 2 : <"}\n')
    corpus = register(client, key_a, str(path))
    with gzip.open(path, "wt") as f:  # the file changes after registration
        f.write('{"text": "cmp 1 2 : <"}\n{"text": broken\n')
    skill = cmp_skill(client, key_a)
    scan = client.post(
        "/v1/scans",
        headers=auth(key_a),
        json={"corpus_id": corpus["id"], "skill_ids": [skill["id"]]},
    ).json()
    assert runner.execute(scan["job"]["id"]) == "failed"
    job = client.get(f"/v1/jobs/{scan['job']['id']}", headers=auth(key_a)).json()
    assert "c.jsonl.gz" in job["error"] and "2" in job["error"], job["error"]


def test_scans_and_corpora_are_project_scoped(
    client: TestClient, key_a: str, key_b: str, planted: dict
) -> None:
    corpus = register(client, key_a, planted["uri"])
    skill = cmp_skill(client, key_a)
    scan = client.post(
        "/v1/scans",
        headers=auth(key_a),
        json={"corpus_id": corpus["id"], "skill_ids": [skill["id"]]},
    ).json()
    assert client.get(f"/v1/corpora/{corpus['id']}", headers=auth(key_b)).status_code == 404
    assert client.get(f"/v1/scans/{scan['id']}", headers=auth(key_b)).status_code == 404
    assert client.delete(f"/v1/corpora/{corpus['id']}", headers=auth(key_b)).status_code == 404
    # B cannot scan A's corpus with B's skill, nor A's skill on B's corpus.
    other = cmp_skill(client, key_b)
    r = client.post(
        "/v1/scans",
        headers=auth(key_b),
        json={"corpus_id": corpus["id"], "skill_ids": [other["id"]]},
    )
    assert r.status_code == 404
    assert client.get("/v1/scans", headers=auth(key_b)).json()["data"] == []


def test_the_scan_executor_is_chosen_by_settings(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The factory builds datatrove's Slurm executor with the configured options (it
    submits nothing until run(); tests/curation/test_executors.py runs scans on real Slurm
    and Ray clusters)."""
    from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

    from service.settings import get_settings
    from service.worker.handlers.scan import executor_factory

    assert isinstance(
        executor_factory(get_settings())(
            pipeline=[], tasks=1, workers=1, logging_dir=str(tmp_path / "l")
        ),
        LocalPipelineExecutor,
    )
    env.setenv("SKILLMIX_SCAN_EXECUTOR", "slurm")
    env.setenv("SKILLMIX_SCAN_EXECUTOR_OPTIONS", '{"partition": "cpu", "time": "01:00:00"}')
    refresh_settings()
    executor = executor_factory(get_settings())(
        pipeline=[], tasks=4, workers=2, logging_dir=str(tmp_path / "s")
    )
    assert isinstance(executor, SlurmPipelineExecutor)
    assert (executor.partition, executor.time, executor.tasks) == ("cpu", "01:00:00", 4)


def test_plots_are_drawn_after_the_report_is_stored(
    client: TestClient, key_a: str, planted: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan's result waits only for the scan: when the follow-up starts, the job has
    succeeded with its report and lists its plots undrawn (size null); a download that
    comes before the follow-up draws the plot itself."""
    seen: dict = {}

    def follow_up(job_id: str, report: dict) -> None:  # stands in for drawing: records only
        scan = client.get(f"/v1/scans/{scan_id}", headers=auth(key_a)).json()
        seen.update(job=scan["job"], report=scan["report"])

    monkeypatch.setitem(
        runner.KINDS, "scan", dataclasses.replace(runner.KINDS["scan"], follow_up=follow_up)
    )
    scan, skill = post_cmp_scan(client, key_a, planted)
    scan_id, job_id = scan["id"], scan["job"]["id"]
    assert runner.execute(job_id) == "succeeded"
    assert seen["job"]["state"] == "succeeded" and seen["report"]["skills"][skill["id"]]
    sizes = {a["name"]: a["size"] for a in seen["job"]["artifacts"]}
    assert sizes["rates.png"] is None and sizes["gaps.png"] is None and sizes["report.json"] > 0

    png = client.get(f"/v1/jobs/{job_id}/artifacts/gaps.png", headers=auth(key_a))
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    listed = client.get(f"/v1/jobs/{job_id}/artifacts", headers=auth(key_a)).json()["data"]
    sizes = {a["name"]: a["size"] for a in listed}
    # Every undrawn plot is drawn at the first download (the report is read once).
    assert sizes["gaps.png"] == len(png.content) and sizes["rates.png"] > 0


def test_a_failed_follow_up_leaves_the_scan_succeeded(
    client: TestClient, key_a: str, planted: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def follow_up(job_id: str, report: dict) -> None:
        raise RuntimeError("the plotting worker fell over")

    monkeypatch.setitem(
        runner.KINDS, "scan", dataclasses.replace(runner.KINDS["scan"], follow_up=follow_up)
    )
    scan, _ = post_cmp_scan(client, key_a, planted)
    job_id = scan["job"]["id"]
    assert runner.execute(job_id) == "succeeded"
    png = client.get(f"/v1/jobs/{job_id}/artifacts/rates.png", headers=auth(key_a))
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
