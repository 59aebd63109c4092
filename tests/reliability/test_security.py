"""Security matrix against real PostgreSQL: tenant isolation (another project's ids answer
404, never 403, and change nothing), corpus and mixture locations outside
SKILLMIX_ALLOWED_ROOTS, linear-time skill patterns, oversized bodies, page sizes and
malformed credentials.

Single cases of some of these live beside the resources they guard (tests/service/
test_api.py, test_scans_api.py, test_skills_api.py); this file is the consolidated matrix.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from starlette.responses import Response

from curation.synthetic_corpus import Plant, generate_corpus
from service.api.app import create_app
from service.auth import api_key_for, create_key
from service.cli.embedded import refresh_settings, run_api
from service.db import session_scope
from service.models import ApiKey, Corpus, Job, Mixture, Skill, utcnow
from service.settings import get_settings
from service.worker import runner

PROBLEM = "application/problem+json"
CMP = tuple(
    f"cmp {a} {b} : {'<' if a < b else '>'}"
    for a, b in [(12, 57), (80, 31), (45, 46), (99, 10), (23, 71)]
)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_key(project: str, role: str = "member") -> str:
    with session_scope() as session:
        _, key = create_key(session, project, role=role)
    return key


def key_id_of(key: str) -> str:
    with session_scope() as session:
        row = api_key_for(session, key)
        assert row is not None
        return row.id


@pytest.fixture
def roots(pg_db: str, tmp_path: Path, env: pytest.MonkeyPatch) -> dict[str, Path]:
    """An allowed corpus root, a folder outside every root, and the data dir."""
    root = tmp_path / "corpora"
    outside = tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (outside / "a.jsonl").write_text('{"text": "the launch codes"}\n')
    with gzip.open(outside / "a.jsonl.gz", "wt") as f:
        f.write('{"text": "the launch codes"}\n')
    env.setenv("SKILLMIX_ALLOWED_ROOTS", str(root))
    env.setenv("SKILLMIX_RATE_LIMIT_PER_MINUTE", "0")  # not what these tests are about
    refresh_settings()
    return {"root": root, "outside": outside, "data": get_settings().resolved_data_dir}


@pytest.fixture
def client(roots: dict[str, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def _ok(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()


def seed_project(
    client: Any, key: str, root: Path, tag: str, n_docs: int = 60, mean_chars: int = 400
) -> dict[str, Any]:
    """A project with one of everything: skills, a corpus, a succeeded scan (with artifacts),
    a mixture being built, a dry-run mixture, a queued verification and a sleep job.

    `client` is a TestClient or an httpx.Client with a base_url."""
    h = auth(key)
    folder = root / f"web-{tag}"
    generate_corpus(
        str(folder),
        n_docs=n_docs,
        seed=3,
        format="jsonl.gz",
        plants=[Plant("cmp", CMP, every=4, offset=2)],
        n_files=2,
        mean_chars=mean_chars,
    )
    corpus = _ok(
        client.post(
            "/v1/corpora",
            headers=h,
            json={"name": f"web-{tag}", "uri": f"{folder}/*.jsonl.gz", "format": "jsonl.gz"},
        ),
        201,
    )
    regex = _ok(
        client.post(
            "/v1/skills",
            headers=h,
            json={
                "name": f"cmp-regex-{tag}",
                "description": f"secret description of {tag}",
                "detector": {"kind": "regex", "pattern": r"cmp \d+ \d+ : [<>]"},
            },
        ),
        201,
    )
    builtin = _ok(
        client.post(
            "/v1/skills",
            headers=h,
            json={
                "name": f"cmp-{tag}",
                "detector": {"kind": "builtin"},
                "generator": {"family": "number_comparison", "params": {}},
            },
        ),
        201,
    )
    scan = _ok(
        client.post(
            "/v1/scans",
            headers=h,
            json={
                "corpus_id": corpus["id"],
                "skill_ids": [regex["id"], builtin["id"]],
                "batch_tokens": 4096,
            },
        ),
        202,
    )
    assert runner.execute(scan["job"]["id"]) == "succeeded"
    mixture_body = {
        "corpus_id": corpus["id"],
        "scan_id": scan["id"],
        "batch_tokens": 4096,
        "seq_len": 256,
        "plan": {builtin["id"]: {"target": {"per_batch": 2}, "source": "synthesize"}},
    }
    mixture = _ok(client.post("/v1/mixtures", headers=h, json=mixture_body), 202)
    dry = _ok(client.post("/v1/mixtures", headers=h, json={**mixture_body, "dry_run": True}), 201)
    verification = _ok(
        client.post(
            "/v1/verifications",
            headers=h,
            json={
                "arms": {"upweighted": mixture["id"]},
                "skill_ids": [builtin["id"]],
                "sizes": ["nano"],
                "seeds": [0],
            },
        ),
        202,
    )
    job = _ok(client.post("/v1/jobs", headers=h, json={"kind": "sleep"}), 202)
    return {
        "key": key,
        "corpus": corpus,
        "skills": [regex, builtin],
        "scan": scan,
        "mixtures": [mixture, dry],
        "verification": verification,
        "job": job,
        "key_id": key_id_of(key),
        "job_ids": [
            job["id"],
            scan["job"]["id"],
            mixture["job"]["id"],
            verification["job"]["id"],
        ],
    }


def snapshot(client: TestClient, project: dict[str, Any]) -> dict[str, Any]:
    """Everything the owner can read about its resources, to compare before and after."""
    h = auth(project["key"])
    paths = [
        "/v1/jobs",
        "/v1/skills",
        "/v1/corpora",
        "/v1/scans",
        "/v1/mixtures",
        "/v1/verifications",
        f"/v1/corpora/{project['corpus']['id']}",
        f"/v1/scans/{project['scan']['id']}",
        f"/v1/verifications/{project['verification']['id']}",
    ]
    paths += [f"/v1/jobs/{j}" for j in project["job_ids"]]
    paths += [f"/v1/jobs/{j}/artifacts" for j in project["job_ids"]]
    paths += [f"/v1/skills/{s['id']}?version=1" for s in project["skills"]]
    paths += [f"/v1/skills/{s['id']}" for s in project["skills"]]
    paths += [f"/v1/mixtures/{m['id']}" for m in project["mixtures"]]
    paths += ["/v1/keys"]  # the seeded key is an admin key
    out = {}
    for path in paths:
        r = client.get(path, headers=h)
        assert r.status_code == 200, (path, r.text)
        out[path] = r.json()
    for key in out["/v1/keys"]["data"]:
        key.pop("last_used_at")  # written once a minute by the owner's own requests
    return out


def job_files(project: dict[str, Any]) -> list[Path]:
    """Every file in the project's jobs' artifact and work folders."""
    settings = get_settings()
    return sorted(
        path
        for job_id in project["job_ids"]
        for base in (settings.artifacts_dir, settings.work_dir)
        for path in (base / job_id).rglob("*")
    )


def cross_project_requests(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Every way project B can name one of A's resources."""
    reqs: list[tuple[str, str, Any]] = []
    for job_id in a["job_ids"]:
        reqs += [
            ("GET", f"/v1/jobs/{job_id}", None),
            ("POST", f"/v1/jobs/{job_id}/cancel", None),
            ("POST", f"/v1/jobs/{job_id}/retry", None),
            ("GET", f"/v1/jobs/{job_id}/events", None),
            ("GET", f"/v1/jobs/{job_id}/artifacts", None),
            ("GET", f"/v1/jobs/{job_id}/artifacts/report.json", None),
            ("GET", f"/v1/jobs/{job_id}/artifacts/rates.png", None),
        ]
    for skill in a["skills"]:
        sid = skill["id"]
        reqs += [
            ("GET", f"/v1/skills/{sid}", None),
            ("GET", f"/v1/skills/{sid}?version=1", None),
            ("PATCH", f"/v1/skills/{sid}", {"description": "changed by B"}),
            ("DELETE", f"/v1/skills/{sid}", None),
            ("POST", f"/v1/skills/{sid}/preview", {"text": CMP[0], "samples": 3}),
        ]
    corpus_id = a["corpus"]["id"]
    reqs += [
        ("GET", f"/v1/corpora/{corpus_id}", None),
        ("DELETE", f"/v1/corpora/{corpus_id}", None),
    ]
    for path in (
        f"/v1/scans/{a['scan']['id']}",
        *(f"/v1/mixtures/{m['id']}" for m in a["mixtures"]),
        f"/v1/verifications/{a['verification']['id']}",
    ):
        reqs += [("GET", path, None), ("DELETE", path, None)]
    reqs += [
        ("POST", f"/v1/keys/{a['key_id']}/revoke", None),
        ("POST", f"/v1/keys/{a['key_id']}/rotate", {"grace_seconds": 0}),
    ]
    # Creating with A's ids, alone or mixed with B's own.
    a_skill, b_skill = a["skills"][1]["id"], b["skills"][1]["id"]
    reqs += [
        ("POST", "/v1/scans", {"corpus_id": corpus_id, "skill_ids": [b_skill]}),
        ("POST", "/v1/scans", {"corpus_id": b["corpus"]["id"], "skill_ids": [a_skill]}),
        ("POST", "/v1/scans", {"corpus_id": b["corpus"]["id"], "skill_ids": [b_skill, a_skill]}),
        (
            "POST",
            "/v1/mixtures",
            {"corpus_id": corpus_id, "scan_id": a["scan"]["id"], "dry_run": True},
        ),
        (
            "POST",
            "/v1/mixtures",
            {"corpus_id": b["corpus"]["id"], "scan_id": a["scan"]["id"], "dry_run": True},
        ),
        (
            "POST",
            "/v1/verifications",
            {"arms": {"x": a["mixtures"][0]["id"]}, "skill_ids": [a_skill]},
        ),
        (
            "POST",
            "/v1/verifications",
            {
                "arms": {"x": b["mixtures"][0]["id"], "y": a["mixtures"][0]["id"]},
                "skill_ids": [b_skill],
            },
        ),
    ]
    return reqs


def _fake_id(path: str, real: str) -> str:
    """The same request with A's id swapped for one nobody has."""
    return path.replace(real, real[: real.index("_") + 1] + "0" * 20)


def test_another_projects_resources_answer_404_and_stay_unchanged(
    client: TestClient, roots: dict[str, Path]
) -> None:
    # Admin keys, which may manage their project's keys: A's key ids must answer B 404 too.
    a = seed_project(client, new_key("project-a", "admin"), roots["root"], "a")
    b = seed_project(client, new_key("project-b", "admin"), roots["root"], "b")
    before = snapshot(client, a)
    a_files = job_files(a)
    assert a_files, "the seeded scan left artifacts and work files"
    b_before = {k: len(v["data"]) for k, v in snapshot(client, b).items() if "data" in v}
    a_ids = (
        [a["corpus"]["id"], a["scan"]["id"], a["verification"]["id"]]
        + a["job_ids"]
        + [s["id"] for s in a["skills"]]
        + [m["id"] for m in a["mixtures"]]
        + [a["key_id"]]
    )
    for method, path, body in cross_project_requests(a, b):
        r = client.request(method, path, json=body, headers=auth(b["key"]))
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM), (method, path)
        problem = r.json()
        assert problem["type"] == "urn:skillmix:problem:not-found", (method, path, problem)
        # Nothing of A's leaks: no names, descriptions or paths in the answer.
        for secret in ("cmp-regex-a", "secret description of a", "web-a", str(roots["root"])):
            assert secret not in r.text, (method, path, r.text)
        # The 404 is the one an id nobody has gets: existence is not revealed either.
        if method != "POST" or any(p in path for p in ("/v1/jobs/", "/preview", "/v1/keys/")):
            real = next(i for i in a_ids if i in path)
            fake = client.request(method, _fake_id(path, real), json=body, headers=auth(b["key"]))
            assert fake.status_code == 404
            assert {k: v for k, v in problem.items() if k not in ("detail", "instance")} == {
                k: v for k, v in fake.json().items() if k not in ("detail", "instance")
            }, (method, path)
    # B's lists hold only B's resources.
    for path in ("/v1/jobs", "/v1/skills", "/v1/corpora", "/v1/scans", "/v1/mixtures", "/v1/keys"):
        listed = {item["id"] for item in client.get(path, headers=auth(b["key"])).json()["data"]}
        assert not listed & set(a_ids), path
    # A sees exactly what it saw before, its jobs' files are all there; B created nothing.
    assert snapshot(client, a) == before
    assert job_files(a) == a_files
    assert {k: len(v["data"]) for k, v in snapshot(client, b).items() if "data" in v} == b_before


def test_idempotency_keys_are_per_project(client: TestClient, roots: dict[str, Path]) -> None:
    key_a, key_b = new_key("project-a"), new_key("project-b")
    body = {"kind": "sleep", "params": {"seconds": 0.5}}
    first = client.post("/v1/jobs", json=body, headers={**auth(key_a), "Idempotency-Key": "k-1"})
    other = client.post("/v1/jobs", json=body, headers={**auth(key_b), "Idempotency-Key": "k-1"})
    assert first.status_code == other.status_code == 202
    assert first.json()["id"] != other.json()["id"]
    assert "Idempotent-Replayed" not in other.headers
    assert client.get(f"/v1/jobs/{first.json()['id']}", headers=auth(key_b)).status_code == 404


# --- locations outside the allowed roots ---------------------------------------------------


def _corpus_layout(roots: dict[str, Path]) -> None:
    """Symlinks and folders inside the allowed root that lead out of it, and files in the
    data dir's service-managed folders (another project's outputs, logs, the database)."""
    root, outside, data = roots["root"], roots["outside"], roots["data"]
    (root / "ok.jsonl").write_text('{"text": "fine"}\n')
    os.symlink(outside, root / "link-dir")
    os.symlink(outside / "a.jsonl", root / "link-file.jsonl")
    mixed = root / "mixed"
    mixed.mkdir()
    (mixed / "good.jsonl").write_text('{"text": "fine"}\n')
    os.symlink(outside / "a.jsonl", mixed / "evil.jsonl")
    hf_escape = root / "hf-escape"
    hf_escape.mkdir()
    (hf_escape / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "../../secret/a.arrow"}]})
    )
    hf_link = root / "hf-link"
    hf_link.mkdir()
    (hf_link / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
    )
    os.symlink(outside / "a.jsonl", hf_link / "data-00000-of-00001.arrow")
    for sub in ("mixtures/mix_someoneelse", "artifacts/job_someoneelse", "work/job_x"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    with gzip.open(data / "mixtures/mix_someoneelse/shard-00000.jsonl.gz", "wt") as f:
        f.write('{"text": "another project\'s mixture"}\n')
    (data / "mixtures/mix_someoneelse/instances.jsonl").write_text('{"text": "theirs"}\n')
    (data / "artifacts/job_someoneelse/report.jsonl").write_text('{"text": "theirs"}\n')
    (data / "work/job_x/part.jsonl").write_text('{"text": "theirs"}\n')
    (data / "worker-curation.log").write_text('{"text": "log line"}\n')


def bad_corpus_uris(roots: dict[str, Path]) -> list[tuple[str, str]]:
    root, outside, data = str(roots["root"]), str(roots["outside"]), str(roots["data"])
    return [
        (f"{root}/../secret/a.jsonl", "jsonl"),
        (f"{root}/mixed/../../secret/a.jsonl", "jsonl"),
        (f"{outside}/a.jsonl", "jsonl"),
        (f"{outside}/*.jsonl", "jsonl"),
        ("/etc/passwd", "jsonl"),
        ("/proc/self/environ", "jsonl"),
        ("/", "jsonl"),
        ("/**/a.jsonl", "jsonl"),
        (f"{root}/**/../../secret/*.jsonl", "jsonl"),
        (f"{root}/link-dir/a.jsonl", "jsonl"),
        (f"{root}/link-dir", "jsonl"),
        (f"{root}/link-dir/*.jsonl", "jsonl"),
        (f"{root}/*/a.jsonl", "jsonl"),
        (f"{root}/link-file.jsonl", "jsonl"),
        (f"{root}/*.jsonl", "jsonl"),  # ok.jsonl and link-file.jsonl: one bad match refuses
        (f"{root}/mixed", "jsonl"),
        (f"{root}/mixed/*.jsonl", "jsonl"),
        (f"{root}/hf-escape", "hf_disk"),
        (f"{root}/hf-link", "hf_disk"),
        # file:// URLs: other hosts, encoded traversal, encoded NUL, queries
        (f"file://{outside}/a.jsonl", "jsonl"),
        (f"file://{root}/../secret/a.jsonl", "jsonl"),
        (f"file://{root}/%2e%2e/secret/a.jsonl", "jsonl"),
        (f"file://{root}/%2E%2E%2Fsecret%2Fa.jsonl", "jsonl"),
        (f"file://{root}/..%2fsecret/a.jsonl", "jsonl"),
        (f"file://{root}/ok.jsonl%00.txt", "jsonl"),
        (f"file://{root}/ok.jsonl?x=1", "jsonl"),
        (f"file://{root}/ok.jsonl#frag", "jsonl"),
        ("file://evil.example/etc/passwd", "jsonl"),
        ("file://localhost/etc/passwd", "jsonl"),
        ("file:/etc/passwd", "jsonl"),
        ("FILE:///etc/passwd", "jsonl"),
        ("file:///etc/passwd", "jsonl"),
        # NUL bytes, relative paths, home dirs, UNC paths
        (f"{root}/ok.jsonl\x00.txt", "jsonl"),
        ("ok.jsonl", "jsonl"),
        ("corpora/../secret/a.jsonl", "jsonl"),
        ("~/a.jsonl", "jsonl"),
        ("\\\\server\\share\\a.jsonl", "jsonl"),
        # other protocols: none is allowed by default
        ("http://169.254.169.254/latest/meta-data/", "jsonl"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "jsonl"),
        ("https://metadata.google.internal/computeMetadata/v1/", "jsonl"),
        ("memory://x/a.jsonl", "jsonl"),
        ("s3://bucket/a.jsonl", "jsonl"),
        ("gs://bucket/a.jsonl", "jsonl"),
        ("hf://datasets/org/name/a.jsonl", "jsonl"),
        ("ftp://example.com/a.jsonl", "jsonl"),
        ("simplecache::file:///etc/passwd", "jsonl"),
        (f"zip://a.jsonl::file://{root}/x.zip", "jsonl"),
        ("github://org:repo@/a.jsonl", "jsonl"),
        # the data dir is a root, but its service-managed folders are not corpora
        (f"{data}/mixtures/mix_someoneelse/shard-00000.jsonl.gz", "jsonl.gz"),
        (f"{data}/mixtures/*/shard-*.jsonl.gz", "jsonl.gz"),
        (f"{data}/mixtures/mix_someoneelse", "jsonl"),
        (f"{data}/**/*.jsonl", "jsonl"),
        (f"{data}/artifacts/job_someoneelse/report.jsonl", "jsonl"),
        (f"{data}/work/job_x/part.jsonl", "jsonl"),
        (f"{data}/worker-curation.log", "jsonl"),
        (f"{data}", "jsonl"),
    ]


def test_corpus_locations_outside_the_roots_are_refused(
    client: TestClient, roots: dict[str, Path]
) -> None:
    _corpus_layout(roots)
    key = new_key("project-a")
    for uri, fmt in bad_corpus_uris(roots):
        r = client.post(
            "/v1/corpora", headers=auth(key), json={"name": "x", "uri": uri, "format": fmt}
        )
        assert 400 <= r.status_code < 500, (uri, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM), uri
        assert "launch codes" not in r.text and "theirs" not in r.text, (uri, r.text)
    too_long = client.post(
        "/v1/corpora",
        headers=auth(key),
        json={"name": "x", "uri": f"{roots['root']}/{'a' * 5000}", "format": "jsonl"},
    )
    assert too_long.status_code == 422
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Corpus)) == 0
    # The checks are not simply refusing everything: a plain file inside the root, and a
    # corpus inside the data dir's own corpora folder (as `skillmix demo` makes), register.
    (roots["data"] / "corpora").mkdir(exist_ok=True)
    (roots["data"] / "corpora" / "mine.jsonl").write_text('{"text": "mine"}\n')
    for uri in (f"{roots['root']}/ok.jsonl", f"{roots['data']}/corpora/mine.jsonl"):
        r = client.post(
            "/v1/corpora", headers=auth(key), json={"name": "ok", "uri": uri, "format": "jsonl"}
        )
        assert r.status_code == 201, (uri, r.text)


def test_remote_protocols_stay_inside_their_roots(
    client: TestClient, roots: dict[str, Path], env: pytest.MonkeyPatch
) -> None:
    """With extra protocols allowed by the operator, URLs must still sit under a root of
    that protocol, with no traversal, prefix tricks or internal addresses."""
    import fsspec

    env.setenv("SKILLMIX_ALLOWED_PROTOCOLS", "file,memory,http,https")
    env.setenv(
        "SKILLMIX_ALLOWED_ROOTS",
        f"{roots['root']},memory://corpora,http://data.example.com/corpora,"
        "http://169.254.169.254/latest",
    )
    refresh_settings()
    fs = fsspec.filesystem("memory")
    fs.pipe("/corpora/ok.jsonl", b'{"text": "fine"}\n')
    fs.pipe("/secret/a.jsonl", b'{"text": "the launch codes"}\n')
    fs.pipe("/corporaX/a.jsonl", b'{"text": "the launch codes"}\n')
    key = new_key("project-a")
    try:
        for uri in [
            "memory://corpora/../secret/a.jsonl",
            "memory://corpora/%2e%2e/secret/a.jsonl",
            "memory://corpora/./../secret/a.jsonl",
            "memory://secret/a.jsonl",
            "memory://corporaX/a.jsonl",
            "memory://corpora/nothing-here.jsonl",
            # an internal address is refused even under a configured root
            "http://169.254.169.254/latest/meta-data",
            "http://data.example.com@169.254.169.254/corpora/a.jsonl",
            "http://127.0.0.1/corpora/a.jsonl",
            "http://[::1]/corpora/a.jsonl",
            "http://10.0.0.1/corpora/a.jsonl",
            "http://data.example.com.evil.io/corpora/a.jsonl",
            "http://data.example.com/corpora/../admin/a.jsonl",
            "http://data.example.com/corpora/%2e%2e/admin/a.jsonl",
            "https://data.example.com/corpora/a.jsonl",  # the root is http only
        ]:
            r = client.post(
                "/v1/corpora", headers=auth(key), json={"name": "x", "uri": uri, "format": "jsonl"}
            )
            assert 400 <= r.status_code < 500, (uri, r.status_code, r.text)
            assert "launch codes" not in r.text, uri
        ok = client.post(
            "/v1/corpora",
            headers=auth(key),
            json={"name": "ok", "uri": "memory://corpora/ok.jsonl", "format": "jsonl"},
        )
        assert ok.status_code == 201, ok.text
    finally:
        for path in ("/corpora", "/secret", "/corporaX"):
            fs.rm(path, recursive=True)


def test_mixture_outputs_outside_the_roots_are_refused(
    client: TestClient, roots: dict[str, Path]
) -> None:
    _corpus_layout(roots)
    project = seed_project(client, new_key("project-a"), roots["root"], "a")
    root, outside, data = roots["root"], roots["outside"], roots["data"]
    with session_scope() as session:
        mixtures_before = session.scalar(select(func.count()).select_from(Mixture))
    base = {
        "corpus_id": project["corpus"]["id"],
        "scan_id": project["scan"]["id"],
        "batch_tokens": 4096,
        "seq_len": 256,
    }
    for uri in [
        f"{root}/../escape",
        f"{root}/mixed/../../escape",
        str(outside / "out"),
        f"{root}/link-dir/out",
        f"{root}/link-dir",
        "/etc/skillmix-out",
        "/",
        "/proc/self",
        f"file://{root}/out",
        f"file://{outside}/out",
        f"file://{root}/%2e%2e/escape",
        "memory://out",
        "s3://bucket/out",
        "http://169.254.169.254/out",
        "out",
        "../out",
        "~/out",
        f"{root}/out\x00x",
        f"{root}/web-a",  # exists and holds the corpus: 409
        str(data),
        f"{data}/artifacts/{project['scan']['job']['id']}",
        f"{data}/artifacts/new",
        f"{data}/broker/new",
        f"{data}/work/new",
    ]:
        for dry_run in (True, False):
            r = client.post(
                "/v1/mixtures",
                headers=auth(project["key"]),
                json={**base, "dry_run": dry_run, "output": {"uri": uri}},
            )
            assert 400 <= r.status_code < 500, (uri, dry_run, r.status_code, r.text)
            assert r.headers["content-type"].startswith(PROBLEM), uri
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Mixture)) == mixtures_before
    assert sorted(p.name for p in outside.iterdir()) == ["a.jsonl", "a.jsonl.gz"]
    assert not (root.parent / "escape").exists()
    # Inside the root, a new folder is fine.
    r = client.post(
        "/v1/mixtures",
        headers=auth(project["key"]),
        json={**base, "dry_run": True, "output": {"uri": f"{root}/mixes/m1"}},
    )
    assert r.status_code == 201, r.text


# --- skill patterns: linear time, unsupported constructs refused ---------------------------

PATHOLOGICAL = [
    (r"(a+)+$", "a" * 200_000 + "!"),
    (r"(a|aa)*b", "a" * 200_000),
    (r"(a*)*b", "a" * 200_000),
    (r"(a|a)*c", "a" * 200_000),
    (r"(x+x+)+y", "x" * 200_000),
    (r"(.*a){25}", "a" * 200_000),
    (r"(\w+\s?)+$", "ab " * 60_000 + "!"),
    (r"^(([a-z])+.)+[A-Z]([a-z])+$", "a" * 200_000),
    (r"((a{1,10}){1,10}){1,10}b", "a" * 200_000),
    (r"(?i)(\d+\s*)+[a-z]{2,}\d", "1 " * 90_000),
]


@pytest.mark.timeout(120)
def test_pathological_patterns_preview_and_scan_in_linear_time(
    client: TestClient, roots: dict[str, Path]
) -> None:
    key = new_key("project-a")
    skill_ids = []
    for i, (pattern, text) in enumerate(PATHOLOGICAL):
        skill = _ok(
            client.post(
                "/v1/skills",
                headers=auth(key),
                json={"name": f"evil-{i}", "detector": {"kind": "regex", "pattern": pattern}},
            ),
            201,
        )
        skill_ids.append(skill["id"])
        r = client.post(f"/v1/skills/{skill['id']}/preview", json={"text": text}, headers=auth(key))
        assert r.status_code == 200, (pattern, r.text)
    # The same patterns over a corpus of long adversarial documents, in one scan.
    path = roots["root"] / "evil.jsonl"
    with path.open("w") as f:
        for _, text in PATHOLOGICAL:
            f.write(json.dumps({"text": text}) + "\n")
    corpus = _ok(
        client.post(
            "/v1/corpora",
            headers=auth(key),
            json={"name": "evil", "uri": str(path), "format": "jsonl"},
        ),
        201,
    )
    scan = _ok(
        client.post(
            "/v1/scans",
            headers=auth(key),
            json={"corpus_id": corpus["id"], "skill_ids": skill_ids},
        ),
        202,
    )
    assert runner.execute(scan["job"]["id"]) == "succeeded"
    report = client.get(f"/v1/scans/{scan['id']}", headers=auth(key)).json()["report"]
    assert set(report["skills"]) == set(skill_ids)
    assert all(s["docs_scanned"] == len(PATHOLOGICAL) for s in report["skills"].values())


UNSUPPORTED = [
    r"(a+)\1",
    r"(?P<x>a+)(?P=x)",
    r"(?<x>a+)\k<x>",
    r"foo(?=bar)",
    r"foo(?!bar)",
    r"(?<=foo)bar",
    r"(?<!foo)bar",
    r"(?>a+)b",
    r"a++b",
    r"a*+b",
    r"(a)?(?(1)b|c)",
    r"(a|(?R))",
    r"(?#comment)a",
    r"a{1001}",
    r"((((a{100}){100}){100}){100})",
    r"(unclosed",
    r"[z-a]",
    "a" * 5000,
]


def test_unsupported_patterns_are_refused(client: TestClient, roots: dict[str, Path]) -> None:
    key = new_key("project-a")
    for pattern in UNSUPPORTED:
        r = client.post(
            "/v1/skills",
            headers=auth(key),
            json={"name": "bad", "detector": {"kind": "regex", "pattern": pattern}},
        )
        assert r.status_code == 422, (pattern, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    good = _ok(
        client.post(
            "/v1/skills",
            headers=auth(key),
            json={"name": "good", "detector": {"kind": "regex", "pattern": "a+b"}},
        ),
        201,
    )
    for pattern in UNSUPPORTED[:6]:
        r = client.patch(
            f"/v1/skills/{good['id']}",
            headers=auth(key),
            json={"detector": {"kind": "regex", "pattern": pattern}},
        )
        assert r.status_code == 422, (pattern, r.text)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Skill)) == 1
    assert client.get(f"/v1/skills/{good['id']}", headers=auth(key)).json()["version"] == 1


# --- request size, page size, credentials --------------------------------------------------

WRITES = [
    ("POST", "/v1/jobs"),
    ("POST", "/v1/skills"),
    ("PATCH", "/v1/skills/skill_0"),
    ("POST", "/v1/skills/skill_0/preview"),
    ("POST", "/v1/corpora"),
    ("POST", "/v1/scans"),
    ("POST", "/v1/mixtures"),
    ("POST", "/v1/verifications"),
]


@pytest.mark.timeout(120)
def test_oversized_bodies_are_413_on_a_real_server(roots: dict[str, Path]) -> None:
    """Through uvicorn: a declared Content-Length over the limit, and a chunked body with
    no length that grows past it, on every write; the connection stays usable."""
    key = new_key("project-a")
    limit = get_settings().max_body_bytes
    big = b'{"text": "' + b"x" * (limit + 10) + b'"}'

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 4):
            yield b"x" * 65536

    with run_api() as base, httpx.Client(base_url=base, timeout=30) as http:
        h = {**auth(key), "Content-Type": "application/json"}
        for method, path in WRITES:
            r = http.request(method, path, content=big, headers=h)
            assert r.status_code == 413, (method, path, r.status_code, r.text[:200])
            assert r.headers["content-type"].startswith(PROBLEM)
            assert r.json()["type"].endswith("payload-too-large")
            r = http.request(method, path, content=chunks(), headers=h)
            assert r.status_code == 413, ("chunked", method, path, r.status_code, r.text[:200])
            assert "content-length" not in {k.lower() for k in r.request.headers}
        # Without a key, too: the size limit comes first, nothing is read past it.
        r = http.post("/v1/jobs", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        # Just under the limit is fine (a large preview text).
        skill = http.post(
            "/v1/skills",
            headers=h,
            json={"name": "s", "detector": {"kind": "keywords", "keywords": ["needle"]}},
        ).json()
        text = "hay " * ((limit - 200) // 4) + "needle"
        r = http.post(f"/v1/skills/{skill['id']}/preview", headers=h, json={"text": text})
        assert r.status_code == 200, r.text[:300]
        assert [m["text"] for m in r.json()["matches"]] == ["needle"]
        assert http.get("/healthz").status_code == 200
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_page_sizes_are_bounded(client: TestClient, roots: dict[str, Path]) -> None:
    key = new_key("project-a")
    for _ in range(3):
        _ok(client.post("/v1/jobs", headers=auth(key), json={"kind": "sleep"}), 202)
    max_page = get_settings().max_page_size
    lists = ["/v1/jobs", "/v1/skills", "/v1/corpora", "/v1/scans", "/v1/mixtures"]
    lists.append("/v1/verifications")
    for path in lists:
        for limit in (max_page + 1, 10**6, 10**30, 2**63, 0, -1, "1e3", "abc", "", "5.5"):
            r = client.get(path, params={"limit": limit}, headers=auth(key))
            assert r.status_code == 422, (path, limit, r.status_code, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)
        for after in ("x" * 65, "x" * 10_000):
            r = client.get(path, params={"after": after}, headers=auth(key))
            assert r.status_code == 422, (path, r.status_code)
        r = client.get(path, params={"limit": max_page}, headers=auth(key))
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) <= max_page
        for after in ("'; DROP TABLE jobs; --", "%", "\u00e9\u0301", "job_\\"):
            r = client.get(path, params={"after": after, "limit": 1}, headers=auth(key))
            assert r.status_code == 200, (path, after, r.text)
    assert len(client.get("/v1/jobs", headers=auth(key)).json()["data"]) == 3


def test_malformed_credentials_are_401(client: TestClient, roots: dict[str, Path]) -> None:
    key = new_key("project-a")
    revoked = new_key("project-a")
    with session_scope() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == revoked[:10]))
        assert row is not None
        row.revoked_at = utcnow()
    headers_cases: list[dict[str, str | bytes]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer    "},
        {"Authorization": key},
        {"Authorization": f"Basic {key}"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": f"Token {key}"},
        {"Authorization": f"Bearer {key} extra"},
        {"Authorization": f"Bearer {key[:-1]}"},
        {"Authorization": f"Bearer {key}x"},
        {"Authorization": f"Bearer {key.upper()}"},
        {"Authorization": f"Bearer\t{key}"},
        {"Authorization": f"Bearer {revoked}"},
        {"Authorization": "Bearer " + "A" * 8000},
        {"Authorization": "Bearer sk_\u00ff\u00fe".encode("latin-1")},
        {"Authorization": "Bearer ' OR '1'='1"},
        {"X-Api-Key": key},
    ]
    for headers in headers_cases:
        for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/skills/x")):
            r = client.request(method, path, headers=headers, json={"kind": "sleep"})
            assert r.status_code == 401, (headers, method, path, r.status_code, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)
            assert r.json()["type"] == "urn:skillmix:problem:unauthorized"
            assert key not in r.text
    # Cookies and query strings are not credentials.
    r = client.get("/v1/jobs", params={"api_key": key, "access_token": key})
    assert r.status_code == 401
    r = client.get("/v1/jobs", cookies={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    # The well-formed key works; the scheme is case-insensitive (RFC 7235).
    assert client.get("/v1/jobs", headers=auth(key)).status_code == 200
    assert client.get("/v1/jobs", headers={"Authorization": f"bearer {key}"}).status_code == 200


# --- /ui: the web pages -----------------------------------------------------------------------

UI_LISTS = ["/ui", "/ui/skills", "/ui/scans", "/ui/mixtures", "/ui/verifications"]


def ui_sign_in(client: TestClient, key: str) -> str:
    """Sign `client` in at /ui with `key` (its cookie jar keeps the session); the CSRF token
    of the session."""
    client.cookies.clear()
    page = client.get("/ui/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    r = client.post(
        "/ui/sign-in", data={"key": key, "csrf_token": token.group(1)}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    signed_in = client.get("/ui/skills")
    assert signed_in.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', signed_in.text)
    assert csrf and csrf.group(1) != token.group(1), "a new CSRF token once signed in"
    return csrf.group(1)


def ui_cross_project_requests(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Every way a /ui page or form of project B can name one of A's resources."""
    reqs: list[tuple[str, str, Any]] = []
    for skill in a["skills"]:
        reqs += [
            ("GET", f"/ui/skills/{skill['id']}", None),
            ("GET", f"/ui/skills/{skill['id']}?version=1", None),
            ("POST", f"/ui/skills/{skill['id']}/preview", {"text": CMP[0]}),
        ]
    reqs += [("GET", f"/ui/scans/{a['scan']['id']}", None)]
    for m in a["mixtures"]:
        reqs += [
            ("GET", f"/ui/mixtures/{m['id']}", None),
            ("GET", f"/ui/mixtures/{m['id']}/composition.json", None),
        ]
    reqs += [("GET", f"/ui/verifications/{a['verification']['id']}", None)]
    reqs += [("GET", f"/ui/jobs/{job_id}/events", None) for job_id in a["job_ids"]]
    a_skill, b_skill = a["skills"][1]["id"], b["skills"][1]["id"]
    reqs += [
        ("POST", "/ui/scans", {"corpus_id": a["corpus"]["id"], "skill_ids": b_skill}),
        ("POST", "/ui/scans", {"corpus_id": b["corpus"]["id"], "skill_ids": a_skill}),
        (
            "POST",
            "/ui/mixtures",
            {"corpus_id": b["corpus"]["id"], "scan_id": a["scan"]["id"], "action": "plan"},
        ),
        (
            "POST",
            "/ui/mixtures",
            {"corpus_id": a["corpus"]["id"], "scan_id": a["scan"]["id"], "action": "build"},
        ),
        (
            "POST",
            "/ui/verifications",
            {"mixture_id": a["mixtures"][0]["id"], "skill_ids": a_skill, "seeds": "0"},
        ),
    ]
    return reqs


def test_ui_pages_answer_another_projects_ids_404(
    client: TestClient, roots: dict[str, Path]
) -> None:
    a = seed_project(client, new_key("project-a"), roots["root"], "a")
    b = seed_project(client, new_key("project-b"), roots["root"], "b")
    before = snapshot_counts(client, a)
    csrf = ui_sign_in(client, b["key"])
    a_ids = (
        [a["corpus"]["id"], a["scan"]["id"], a["verification"]["id"]]
        + a["job_ids"]
        + [s["id"] for s in a["skills"]]
        + [m["id"] for m in a["mixtures"]]
    )
    for method, path, fields in ui_cross_project_requests(a, b):
        data = {**(fields or {}), "csrf_token": csrf} if method == "POST" else None
        r = client.request(method, path, data=data, follow_redirects=False)
        assert r.status_code == 404, (method, path, r.status_code, r.text[:500])
        for secret in ("cmp-regex-a", "secret description of a", "web-a", str(roots["root"])):
            assert secret not in r.text, (method, path)
        if method == "GET":  # the same answer as for an id nobody has
            real = next(i for i in a_ids if i in path)
            fake_path = _fake_id(path, real)
            fake = client.get(fake_path, follow_redirects=False)
            assert fake.status_code == 404, path
            fake_id = real[: real.index("_") + 1] + "0" * 20
            assert fake.text == r.text.replace(real, fake_id), path
    # B's pages list only B's resources.
    for path in UI_LISTS:
        page = client.get(path)
        assert page.status_code == 200, path
        assert not [i for i in a_ids if i in page.text], path
        assert "cmp-regex-a" not in page.text, path
    assert "cmp-regex-b" in client.get("/ui/skills").text
    assert snapshot_counts(client, a) == before
    assert snapshot_counts(client, b)["/v1/scans"] == 1  # B's forms made nothing either


def snapshot_counts(client: TestClient, project: dict[str, Any]) -> dict[str, int]:
    h = auth(project["key"])
    return {
        path: len(client.get(path, headers=h).json()["data"])
        for path in ("/v1/jobs", "/v1/skills", "/v1/scans", "/v1/mixtures", "/v1/verifications")
    }


def test_ui_pages_need_a_session(client: TestClient, roots: dict[str, Path]) -> None:
    from service.api.ui.session import Signer, UiSession

    a = seed_project(client, new_key("project-a"), roots["root"], "a")
    revoked = new_key("project-a")
    with session_scope() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == revoked[:10]))
        assert row is not None
        row.revoked_at = utcnow()
    pages = UI_LISTS + [
        f"/ui/skills/{a['skills'][0]['id']}",
        f"/ui/scans/{a['scan']['id']}",
        f"/ui/mixtures/{a['mixtures'][0]['id']}",
        f"/ui/verifications/{a['verification']['id']}",
    ]
    data_paths = [
        f"/ui/mixtures/{a['mixtures'][0]['id']}/composition.json",
        f"/ui/jobs/{a['job_ids'][0]}/events",
    ]
    forms = ["/ui/scans", "/ui/mixtures", "/ui/verifications", "/ui/sign-out"]
    forms.append(f"/ui/skills/{a['skills'][0]['id']}/preview")
    request = types.SimpleNamespace(url=types.SimpleNamespace(scheme="http"))

    def forged(key: str | None, secret: str | None = None) -> str:
        """A session cookie for `key`, signed with this app's secret or another one."""
        response = Response()
        settings = get_settings()
        if secret:
            settings = settings.model_copy(update={"ui_secret": SecretStr(secret)})
        Signer(settings).write(request, response, UiSession(key=key, csrf="t"))
        return response.headers["set-cookie"].split(";")[0].split("=", 1)[1]

    sessions: list[dict[str, str]] = [
        {},
        {"skillmix_ui": ""},
        {"skillmix_ui": "garbage"},
        {"skillmix_ui": forged(None)},  # the sign-in page's key-less cookie
        {"skillmix_ui": forged(revoked)},
        {"skillmix_ui": forged("sk_" + "x" * 40)},
        {"skillmix_ui": forged(a["key"], secret="another secret")},
        {"skillmix_ui": forged(a["key"])[:-2]},  # signature cut
    ]
    for cookies in sessions:
        client.cookies.clear()
        for name, value in cookies.items():
            client.cookies.set(name, value, path="/ui")
        for path in pages:
            r = client.get(path, follow_redirects=False)
            assert r.status_code == 303, (cookies, path, r.status_code)
            assert r.headers["location"].startswith("/ui/sign-in?next=")
            assert "cmp-regex-a" not in r.text and a["scan"]["id"] not in r.text
        for path in data_paths:
            assert client.get(path, follow_redirects=False).status_code == 401, (cookies, path)
        for path in forms:
            r = client.post(path, data={"csrf_token": "t"}, follow_redirects=False)
            assert r.status_code == 401, (cookies, path, r.status_code)
    # The real key in a cookie signed with the app's secret is a session.
    client.cookies.clear()
    client.cookies.set("skillmix_ui", forged(a["key"]), path="/ui")
    assert client.get("/ui/skills").status_code == 200
    # The /v1 API never takes the cookie as a credential.
    assert client.get("/v1/skills").status_code == 401


def test_ui_forms_are_refused_without_the_csrf_token(
    client: TestClient, roots: dict[str, Path]
) -> None:
    a = seed_project(client, new_key("project-a"), roots["root"], "a")
    before = snapshot_counts(client, a)
    csrf = ui_sign_in(client, a["key"])
    skill_id = a["skills"][1]["id"]
    forms = {
        "/ui/scans": {"corpus_id": a["corpus"]["id"], "skill_ids": skill_id},
        "/ui/mixtures": {
            "corpus_id": a["corpus"]["id"],
            "scan_id": a["scan"]["id"],
            "skill_id": skill_id,
            "target_value": "2",
            "batch_tokens": "4096",
            "seq_len": "256",
            "action": "build",
        },
        "/ui/verifications": {
            "mixture_id": a["mixtures"][0]["id"],
            "skill_ids": skill_id,
            "seeds": "0",
        },
        f"/ui/skills/{skill_id}/preview": {"text": CMP[0]},
        "/ui/sign-out": {},
    }
    for path, fields in forms.items():
        for token in (None, "", "x", csrf[:-1], csrf + "x", csrf.upper()):
            data = fields if token is None else {**fields, "csrf_token": token}
            r = client.post(path, data=data, follow_redirects=False)
            assert r.status_code == 403, (path, token, r.status_code, r.text[:300])
            assert "CSRF" in r.text
        # Another session's valid token is not this one's.
        other = TestClient(client.app)
        other_csrf = ui_sign_in(other, a["key"])
        r = client.post(path, data={**fields, "csrf_token": other_csrf}, follow_redirects=False)
        assert r.status_code == 403, path
    assert snapshot_counts(client, a) == before
    assert client.get("/ui/skills").status_code == 200  # still signed in: sign-out refused
    # The sign-in form has its token too.
    client.cookies.clear()
    client.get("/ui/sign-in")
    r = client.post("/ui/sign-in", data={"key": a["key"]}, follow_redirects=False)
    assert r.status_code == 403 and "skillmix_ui=" not in r.headers.get("set-cookie", "")
    # With the token each form does what it says (the scan form starts a scan).
    csrf = ui_sign_in(client, a["key"])
    r = client.post(
        "/ui/scans", data={**forms["/ui/scans"], "csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/scans/scan_")


def test_ui_shows_user_text_as_text_under_a_strict_policy(
    client: TestClient, roots: dict[str, Path]
) -> None:
    a = seed_project(client, new_key("project-a"), roots["root"], "a")
    evil = "<script>alert('x')</script>"
    skill = _ok(
        client.post(
            "/v1/skills",
            headers=auth(a["key"]),
            json={
                "name": evil,
                "description": '"><img src=x onerror=alert(1)>',
                "detector": {"kind": "regex", "pattern": r"cmp \d+ \d+ : [<>]"},
            },
        ),
        201,
    )
    scan = _ok(
        client.post(
            "/v1/scans",
            headers=auth(a["key"]),
            json={"corpus_id": a["corpus"]["id"], "skill_ids": [skill["id"]], "batch_tokens": 4096},
        ),
        202,
    )
    assert runner.execute(scan["job"]["id"]) == "succeeded"
    csrf = ui_sign_in(client, a["key"])
    preview = client.post(
        f"/ui/skills/{skill['id']}/preview",
        data={"text": f"{evil} {CMP[0]} <b>bold</b>", "csrf_token": csrf},
    )
    pages = {
        "/ui/skills": client.get("/ui/skills"),
        "skill": client.get(f"/ui/skills/{skill['id']}"),
        "preview": preview,
        "scan": client.get(f"/ui/scans/{scan['id']}"),
        "scans": client.get("/ui/scans"),
        "/ui": client.get("/ui"),
    }
    for name, r in pages.items():
        assert r.status_code == 200, (name, r.text[:300])
        assert evil not in r.text and "<img src=x" not in r.text, name
        # Every script is a file of this site or inert JSON data: nothing inline runs.
        for tag in re.findall(r"<script[^>]*>", r.text):
            assert 'src="/ui/static/' in tag or 'type="application/json"' in tag, (name, tag)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages["skill"].text
    assert "&lt;b&gt;bold&lt;/b&gt;" in pages["preview"].text
    assert "<mark" in pages["preview"].text  # the match is highlighted, the rest is text
    # The scan page's JSON data for the charts escapes < and > too.
    assert "\\u003cscript\\u003e" in pages["scan"].text
    # Headers on pages, static files, redirects and error pages.
    client_paths = ["/ui/skills", "/ui/static/js/common.js", "/ui/scans/scan_nope", "/ui/nope"]
    for path in client_paths:
        r = client.get(path, follow_redirects=False)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff", path
    client.cookies.clear()
    r = client.get("/ui/skills", follow_redirects=False)
    assert r.status_code == 303 and "frame-ancestors 'none'" in r.headers["content-security-policy"]
