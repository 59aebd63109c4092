"""GET /metrics: request latency by route template, job counts from the database, queue depth
from the broker, training throughput as verifications record it; and the request histogram
added up across uvicorn worker processes (PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.api.metrics import redis_keys
from service.celery_app import TASK_NAME, enqueue, get_celery
from service.cli.embedded import free_port, refresh_settings, stop_process
from service.db import session_scope
from service.models import Job, Project, Verification, VerificationRun
from service.worker import runner
from service.worker.handlers.verification import SYNC_SECONDS, RunRecorder
from tests.service.conftest import auth
from tests.service.stack import wait_for
from training.events import RunFinished, RunKey, StepDone


def scrape(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample as (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


REQUESTS = "skillmix_http_request_duration_seconds_count"


def test_metrics_after_real_requests_and_jobs(client: TestClient, key_a: str) -> None:
    before = scrape(client.get("/metrics").text)
    h = auth(key_a)
    done = client.post("/v1/jobs", headers=h, json={"kind": "sleep", "params": {"seconds": 0}})
    waiting = client.post("/v1/jobs", headers=h, json={"kind": "sleep", "params": {}})
    assert done.status_code == waiting.status_code == 202
    assert runner.execute(done.json()["id"]) == "succeeded"
    for job in (done.json(), waiting.json()):
        assert client.get(f"/v1/jobs/{job['id']}", headers=h).status_code == 200
    assert client.get("/v1/jobs/job_nope", headers=h).status_code == 404
    assert client.get("/no/such/path").status_code == 404

    r = client.get("/metrics")  # no API key needed, like /healthz
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = scrape(r.text)

    def grew(route: str, status: str, method: str = "GET") -> float:
        labels = {"method": method, "route": route, "status": status}
        return (value(after, REQUESTS, **labels) or 0) - (value(before, REQUESTS, **labels) or 0)

    # Route templates, not raw paths: both job ids land in one series.
    assert grew("/v1/jobs/{job_id}", "200") == 2
    assert grew("/v1/jobs/{job_id}", "404") == 1
    assert grew("/v1/jobs", "202", method="POST") == 2
    assert grew("unmatched", "404") == 1
    ids = {done.json()["id"], waiting.json()["id"], "job_nope"}
    assert not any(dict(labels).get("route") in ids for name, labels in after)

    assert value(after, "skillmix_jobs", state="succeeded", kind="sleep") == 1
    assert value(after, "skillmix_jobs", state="queued", kind="sleep") == 1
    assert value(after, "skillmix_jobs", state="failed", kind="scan") == 0
    # Both POSTs went to the embedded (filesystem) broker; the in-process run took none.
    assert value(after, "skillmix_queue_depth", queue="curation") == 2
    assert value(after, "skillmix_queue_depth", queue="training") == 0
    assert value(after, "skillmix_metrics_source_up", source="database") == 1
    assert value(after, "skillmix_metrics_source_up", source="broker") == 1
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_queue_depth_counts_redis_messages_no_worker_took(
    sqlite_db: str, redis_url: str, env: pytest.MonkeyPatch
) -> None:
    env.setenv("SKILLMIX_BROKER_URL", redis_url)
    refresh_settings()
    tag = uuid.uuid4().hex
    depth = "skillmix_queue_depth"
    with TestClient(create_app()) as client:
        before = scrape(client.get("/metrics").text)
        for i in range(3):
            enqueue(f"job_{tag}_{i}", "curation")
        enqueue(f"job_{tag}_t", "training")
        # A prioritised message goes to a list of its own (kombu's priority steps).
        get_celery().send_task(
            TASK_NAME, args=[f"job_{tag}_p"], queue="curation", routing_key="curation", priority=6
        )
        after = scrape(client.get("/metrics").text)
    r = redis.Redis.from_url(redis_url)
    queued = {key: r.lrange(key, 0, -1) for q in ("curation", "training") for key in redis_keys(q)}
    for key, messages in queued.items():  # no worker will take them: take them out again
        for message in messages:
            if tag.encode() in message:
                r.lrem(key, 0, message)
    assert [tag.encode() in m for m in queued[redis_keys("curation")[2]]] == [True]
    for queue, added in (("curation", 4), ("training", 1)):
        assert value(after, depth, queue=queue) - value(before, depth, queue=queue) == added


def test_an_unreachable_broker_leaves_its_series_out(
    sqlite_db: str, env: pytest.MonkeyPatch
) -> None:
    env.setenv("SKILLMIX_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    refresh_settings()
    with TestClient(create_app()) as client:
        r = client.get("/metrics")
    assert r.status_code == 200
    samples = scrape(r.text)
    assert "skillmix_queue_depth" not in names(samples)
    assert value(samples, "skillmix_metrics_source_up", source="broker") == 0
    assert value(samples, "skillmix_jobs", state="queued", kind="sleep") == 0


def make_verification(state: str, runs: list[tuple[str, str, int]]) -> str:
    with session_scope() as session:
        project = Project(name=f"p-{state}")
        session.add(project)
        session.flush()
        job = Job(project_id=project.id, kind="verification", queue="training", state=state)
        session.add(job)
        session.flush()
        ver = Verification(project_id=project.id, job_id=job.id, arms={}, skills=[], params={})
        session.add(ver)
        session.flush()
        for arm, size, seed in runs:
            session.add(VerificationRun(verification_id=ver.id, arm=arm, size=size, seed=seed))
        return ver.id


def set_job_state(verification_id: str, state: str) -> None:
    with session_scope() as session:
        ver = session.get(Verification, verification_id)
        assert ver is not None
        job = session.get(Job, ver.job_id)
        assert job is not None
        job.state = state


def test_training_throughput_as_the_verification_handler_records_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [("upweighted", "nano", 0), ("baseline", "nano", 0)]
    ver_id = make_verification("running", runs)
    clock = [100.0]
    monkeypatch.setattr("service.worker.handlers.verification.time.monotonic", lambda: clock[0])
    recorder = RunRecorder(ver_id)
    up, base = RunKey("upweighted", "nano", 0), RunKey("baseline", "nano", 0)

    def states() -> dict[str, str]:
        with session_scope() as session:
            rows = session.query(VerificationRun).filter_by(verification_id=ver_id)
            return {r.arm: r.state for r in rows}

    # The events training reports, as the handler receives them.
    recorder(StepDone(up, 10, 400, 10 * 1024, 9000))  # the first is written at once
    recorder(StepDone(base, 5, 400, 5 * 1024, 8000))  # within SYNC_SECONDS: kept for later
    assert states() == {"upweighted": "running", "baseline": "pending"}
    clock[0] += SYNC_SECONDS + 1
    recorder(StepDone(up, 30, 400, 30 * 1024, 10240))  # each run's latest is written

    samples = scrape(client.get("/metrics").text)
    live = "skillmix_training_tokens_per_second"
    labels = {"verification": ver_id, "size": "nano", "seed": "0"}
    assert value(samples, live, arm="upweighted", **labels) == 10240
    assert value(samples, live, arm="baseline", **labels) == 8000
    with session_scope() as session:
        row = session.query(VerificationRun).filter_by(verification_id=ver_id, arm="upweighted")
        assert row.one().state == "running"
        assert row.one().summary == {
            "step": 30,
            "steps": 400,
            "tokens": 30 * 1024,
            "tokens_per_second": 10240,
            "group": None,  # trained alone, not in a seed group (training.batched)
        }

    # The run finishes: its summary is recorded with its overall throughput.
    summary = {"steps": 400, "tokens": 409600, "seconds": 32.0, "final": {}, "resumes": 0}
    clock[0] += SYNC_SECONDS + 1
    recorder(RunFinished(up, {**summary, "tokens_per_second": 12800}))
    samples = scrape(client.get("/metrics").text)
    assert value(samples, live, arm="upweighted", **labels) is None
    assert value(samples, "skillmix_training_last_run_tokens_per_second", size="nano") == 12800
    # A step reported after (by a stale process, say) does not undo it.
    clock[0] += SYNC_SECONDS + 1
    recorder(StepDone(up, 40, 400, 40 * 1024, 10000))
    assert states()["upweighted"] == "done"
    # The attempt ends: runs it left unfinished are pending again, nothing is live.
    recorder.stop()
    set_job_state(ver_id, "failed")
    with session_scope() as session:
        states = {
            r.arm: r.state for r in session.query(VerificationRun).filter_by(verification_id=ver_id)
        }
    assert states == {"upweighted": "done", "baseline": "pending"}
    assert live not in names(scrape(client.get("/metrics").text))


def test_api_workers_add_up_their_request_metrics_and_log_json(
    sqlite_db: str, tmp_path: Path
) -> None:
    """`skillmix serve --workers 2` as compose runs it: PROMETHEUS_MULTIPROC_DIR set, so
    /metrics counts every worker's requests; JSON logs from each worker (uvicorn's own
    lines too), every request's lines with its request id."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "histogram_1.db").write_bytes(b"stale")  # from an earlier run: cleared
    port = free_port()
    log_path = tmp_path / "api.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"],
        env={
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "SKILLMIX_LOG_FORMAT": "json",
        },
        stdout=subprocess.DEVNULL,
        stderr=open(log_path, "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 60, "the API")
        for i in range(30):  # a new connection each: the workers share the listening socket
            r = httpx.get(f"{base}/healthz", headers={"X-Request-ID": f"req-{i}"})
            assert r.status_code == 200
        samples = scrape(httpx.get(f"{base}/metrics").text)
    finally:
        stop_process(proc)
    log = log_path.read_text()
    count = value(samples, REQUESTS, method="GET", route="/healthz", status="200")
    assert count == 30, log[-2000:]
    assert value(samples, "skillmix_jobs", state="queued", kind="sleep") == 0
    # Per-process series (process_*, python_gc_*) mean nothing summed: multiprocess mode
    # leaves them out.
    assert not any(name.startswith("process_") for name in names(samples))

    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    access = {e["request_id"]: e for e in entries if e["logger"] == "uvicorn.access"}
    assert {f"req-{i}" for i in range(30)} <= set(access), log[-2000:]
    assert "/healthz" in access["req-0"]["message"]
    assert any(e["logger"] == "uvicorn.error" for e in entries)  # startup lines, as JSON
