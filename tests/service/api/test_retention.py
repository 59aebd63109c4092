"""Data retention on PostgreSQL: deleting a scan, a mixture or a verification removes its
jobs' artifact and work folders (and a mixture's output when the service chose the folder),
answers 404 for its id afterwards, refuses (409) while a job of it or one depending on it is
queued or running, keeps what the user placed elsewhere, and never follows a link out of
the service's folders (service/store/retention.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.cli.embedded import refresh_settings
from service.db import session_scope
from service.settings import get_settings
from service.store import jobs, retention
from service.worker import runner
from tests.service.api.test_mixtures import body
from tests.service.conftest import auth, new_key, register_scan


@pytest.fixture
def client(pg_db: str, corpora_root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def key_a(pg_db: str) -> str:
    return new_key("project-a")


@pytest.fixture
def key_b(pg_db: str) -> str:
    return new_key("project-b")


@pytest.fixture
def scanned(client: TestClient, key_a: str, planted: dict) -> dict:
    found = register_scan(client, planted["uri"], auth(key_a))
    assert runner.execute(found["scan"]["job"]["id"]) == "succeeded"
    return found


def folders(job_id: str) -> list[Path]:
    settings = get_settings()
    return [settings.artifacts_dir / job_id, settings.work_dir / job_id]


def mixture(client: TestClient, key: str, scanned: dict, **extra: object) -> dict:
    sid = scanned["skill"]["id"]
    plan = {sid: {"target": {"per_batch": 2}, "source": "synthesize"}}
    r = client.post("/v1/mixtures", headers=auth(key), json=body(scanned, plan=plan, **extra))
    assert r.status_code == 202, r.text
    return r.json()


def verification(client: TestClient, key: str, scanned: dict, mixture_id: str) -> dict:
    r = client.post(
        "/v1/verifications",
        headers=auth(key),
        json={"arms": {"a": mixture_id}, "skill_ids": [scanned["skill"]["id"]], "sizes": ["nano"]},
    )
    assert r.status_code == 202, r.text
    return r.json()


def delete(client: TestClient, key: str, path: str, status: int, slug: str = "") -> dict:
    r = client.delete(path, headers=auth(key))
    assert r.status_code == status, (path, r.text)
    if slug:
        assert r.json()["type"] == f"urn:skillmix:problem:{slug}", r.text
        return r.json()
    return {}


def test_deleting_removes_the_files_and_the_id_answers_404(
    client: TestClient, key_a: str, scanned: dict
) -> None:
    h = auth(key_a)
    scan_job = scanned["scan"]["job"]["id"]
    assert all(f.is_dir() for f in folders(scan_job))
    mix = mixture(client, key_a, scanned)
    assert runner.execute(mix["job"]["id"]) == "succeeded"
    output = Path(client.get(f"/v1/mixtures/{mix['id']}", headers=h).json()["output"]["uri"])
    assert output == get_settings().resolved_data_dir / "mixtures" / mix["id"]
    assert list(output.glob("tokens-*.bin"))
    ver = verification(client, key_a, scanned, mix["id"])
    ver_job = ver["job"]["id"]
    for folder in folders(ver_job):  # as a run would have left them
        (folder / "runs").mkdir(parents=True)
        (folder / "runs" / "ckpt.pt").write_bytes(b"x")

    # The mixture is in use by a queued verification: 409 naming that job.
    problem = delete(client, key_a, f"/v1/mixtures/{mix['id']}", 409, "resource-busy")
    assert problem["jobs"] == [{"id": ver_job, "kind": "verification", "state": "queued"}]
    assert ver_job in problem["detail"] and output.is_dir()
    delete(client, key_a, f"/v1/verifications/{ver['id']}", 409, "resource-busy")
    assert client.post(f"/v1/jobs/{ver_job}/cancel", headers=h).status_code == 200

    delete(client, key_a, f"/v1/verifications/{ver['id']}", 204)
    assert not any(f.exists() for f in folders(ver_job))
    delete(client, key_a, f"/v1/mixtures/{mix['id']}", 204)
    assert not output.exists() and not any(f.exists() for f in folders(mix["job"]["id"]))
    delete(client, key_a, f"/v1/scans/{scanned['scan']['id']}", 204)
    assert not any(f.exists() for f in folders(scan_job))

    for path in (
        f"/v1/scans/{scanned['scan']['id']}",
        f"/v1/mixtures/{mix['id']}",
        f"/v1/verifications/{ver['id']}",
    ):
        assert client.get(path, headers=h).status_code == 404
        delete(client, key_a, path, 404, "not-found")
    for path in ("/v1/scans", "/v1/mixtures", "/v1/verifications"):
        assert client.get(path, headers=h).json()["data"] == []
    # The job rows stay, with no artifacts listed; a deleted scan plans no new mixture.
    job = client.get(f"/v1/jobs/{scan_job}", headers=h).json()
    assert job["state"] == "succeeded" and job["artifacts"] == []
    r = client.post("/v1/mixtures", headers=h, json=body(scanned, dry_run=True))
    assert r.status_code == 404 and "Scan" in r.json()["title"]
    # Other resources' folders are untouched.
    assert (get_settings().resolved_data_dir / "mixtures").is_dir()
    assert get_settings().artifacts_dir.is_dir() and get_settings().work_dir.is_dir()


def test_active_jobs_refuse_the_delete(
    client: TestClient, key_a: str, planted: dict, env: pytest.MonkeyPatch
) -> None:
    h = auth(key_a)
    queued = register_scan(client, planted["uri"], h)
    problem = delete(client, key_a, f"/v1/scans/{queued['scan']['id']}", 409, "resource-busy")
    assert problem["jobs"][0]["state"] == "queued"
    assert runner.execute(queued["scan"]["job"]["id"]) == "succeeded"
    # A mixture being built from the scan holds the scan, and the build holds the mixture.
    mix = mixture(client, key_a, queued)
    problem = delete(client, key_a, f"/v1/scans/{queued['scan']['id']}", 409, "resource-busy")
    assert problem["jobs"] == [{"id": mix["job"]["id"], "kind": "mixture", "state": "queued"}]
    delete(client, key_a, f"/v1/mixtures/{mix['id']}", 409, "resource-busy")

    # Cancelled while it ran: its worker may still write until its next progress write, so
    # the delete waits a lease (job_lease_seconds) after the cancel.
    env.setenv("SKILLMIX_JOB_LEASE_SECONDS", "1")
    refresh_settings()
    with session_scope() as session:
        assert jobs.claim(session, mix["job"]["id"], "a-worker", 60)
    assert client.get(f"/v1/mixtures/{mix['id']}", headers=h).json()["job"]["state"] == "running"
    delete(client, key_a, f"/v1/mixtures/{mix['id']}", 409, "resource-busy")
    assert client.post(f"/v1/jobs/{mix['job']['id']}/cancel", headers=h).status_code == 200
    r = client.delete(f"/v1/mixtures/{mix['id']}", headers=h)
    assert r.status_code == 409 and r.json()["type"].endswith("job-stopping"), r.text
    assert r.headers["Retry-After"] == "1" and r.headers["X-Should-Retry"] == "true"
    time.sleep(1.1)
    delete(client, key_a, f"/v1/mixtures/{mix['id']}", 204)
    delete(client, key_a, f"/v1/scans/{queued['scan']['id']}", 204)


def test_an_output_the_user_chose_is_kept(
    client: TestClient, key_a: str, scanned: dict, corpora_root: Path
) -> None:
    chosen = corpora_root / "my-mixture"
    mix = mixture(client, key_a, scanned, output={"uri": str(chosen)})
    assert runner.execute(mix["job"]["id"]) == "succeeded"
    assert list(chosen.glob("tokens-*.bin"))
    delete(client, key_a, f"/v1/mixtures/{mix['id']}", 204)
    assert list(chosen.glob("tokens-*.bin"))  # the user's data
    assert not any(f.exists() for f in folders(mix["job"]["id"]))


def test_links_are_removed_never_followed(
    client: TestClient, key_a: str, scanned: dict, tmp_path: Path
) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("another project's data")
    job_id = scanned["scan"]["job"]["id"]
    artifacts, work = folders(job_id)
    (work / "link-to-outside").symlink_to(outside, target_is_directory=True)
    (work / "nested").mkdir(exist_ok=True)
    (work / "nested" / "file-link").symlink_to(outside / "keep.txt")
    # The artifact folder itself replaced by a link out of the data dir.
    for f in artifacts.iterdir():
        f.unlink()
    artifacts.rmdir()
    artifacts.symlink_to(outside, target_is_directory=True)
    delete(client, key_a, f"/v1/scans/{scanned['scan']['id']}", 204)
    assert (outside / "keep.txt").read_text() == "another project's data"
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert not artifacts.exists() and not artifacts.is_symlink() and not work.exists()


def test_only_plain_ids_name_a_folder() -> None:
    base = Path("/data/work")
    assert retention.service_folder(base, "job_abc-1") == base / "job_abc-1"
    for bad in ("", "..", "../x", "a/b", "/etc", "job\x00", "x" * 65):
        with pytest.raises(ValueError):
            retention.service_folder(base, bad)


def test_a_failed_removal_deletes_nothing(
    client: TestClient, key_a: str, scanned: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan_id, job_id = scanned["scan"]["id"], scanned["scan"]["job"]["id"]
    _, work = folders(job_id)
    real_remove = retention._remove

    def refuse(path: Path) -> None:
        if path == work:
            raise PermissionError(13, "Permission denied", str(path))
        real_remove(path)

    monkeypatch.setattr(retention, "_remove", refuse)
    problem = delete(client, key_a, f"/v1/scans/{scan_id}", 500, "files-not-removed")
    assert "was not deleted" in problem["detail"] and str(work) in problem["detail"]
    scan = client.get(f"/v1/scans/{scan_id}", headers=auth(key_a))
    assert scan.status_code == 200 and scan.json()["job"]["artifacts"]  # nothing committed
    monkeypatch.setattr(retention, "_remove", real_remove)
    delete(client, key_a, f"/v1/scans/{scan_id}", 204)
    assert not work.exists()


def test_another_project_cannot_delete(
    client: TestClient, key_a: str, key_b: str, scanned: dict
) -> None:
    mix = mixture(client, key_a, scanned)
    job_id = scanned["scan"]["job"]["id"]
    for path in (f"/v1/scans/{scanned['scan']['id']}", f"/v1/mixtures/{mix['id']}"):
        # 404 as for an id nobody has, before any 409 that would reveal the resource.
        delete(client, key_b, path, 404, "not-found")
        assert client.get(path, headers=auth(key_a)).status_code == 200
    assert all(f.is_dir() for f in folders(job_id))
