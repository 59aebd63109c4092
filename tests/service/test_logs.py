"""Logs: text or JSON lines that carry their context (the request id in the API; the job id,
kind and attempt in a worker, on every line written while the job runs, whichever library
or process wrote it). A worker in JSON mode writes nothing else, up to its shutdown."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.cli.embedded import refresh_settings, start_workers
from service.logs import ContextFilter, JsonFormatter, TextFormatter, log_context, logging_config
from service.settings import get_settings
from tests.service.api.test_mixtures import body
from tests.service.conftest import auth, new_key, register_scan
from tests.service.stack import stop_process, wait_final, worker


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """JSON lines of everything logged at INFO and above, as the JSON config writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def json_lines(log: Path) -> list[dict]:
    """Every line of a worker's output (stdout and stderr), each of which must be JSON."""
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(isinstance(e, dict) for e in entries)
    return entries


SHUTDOWN = "worker: Warm shutdown (MainProcess) on SIGTERM"


def test_log_lines_carry_the_context_they_were_written_in(captured: io.StringIO) -> None:
    log = logging.getLogger("skillmix.test")
    log.info("before")
    with log_context(job_id="job_1", job_kind="sleep"):
        with log_context(job_attempt=2):
            log.info("inner %s", "line")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("after")
    before, inner, failed, after = lines(captured)
    assert before["message"] == "before" and "job_id" not in before
    assert inner["message"] == "inner line" and inner["logger"] == "skillmix.test"
    assert (inner["job_id"], inner["job_kind"], inner["job_attempt"]) == ("job_1", "sleep", 2)
    assert failed["job_id"] == "job_1" and "job_attempt" not in failed
    assert "ValueError: boom" in failed["exception"]
    assert "job_id" not in after and after["level"] == "INFO" and after["time"].endswith("+00:00")

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.context = {"job_id": "job_1"}
    assert TextFormatter().format(record).endswith("INFO x: hello [job_id=job_1]")


def test_the_log_settings_pick_the_formatter_and_level(env: pytest.MonkeyPatch) -> None:
    assert logging_config(get_settings())["formatters"]["default"]["()"].endswith("TextFormatter")
    env.setenv("SKILLMIX_LOG_FORMAT", "json")
    env.setenv("SKILLMIX_LOG_LEVEL", "warning")
    refresh_settings()
    config = logging_config(get_settings())
    assert config["formatters"]["default"]["()"].endswith("JsonFormatter")
    assert config["root"]["level"] == "WARNING"


def test_api_log_lines_carry_the_request_id(sqlite_db: str, captured: io.StringIO) -> None:
    app = create_app()

    @app.get("/test/log")
    def _log() -> dict:
        logging.getLogger("skillmix.test").info("handling")
        return {}

    @app.get("/test/boom")
    def _boom() -> dict:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/test/log", headers={"X-Request-ID": "req-1"})
        assert r.headers["x-request-id"] == "req-1"
        made = client.get("/test/log").headers["x-request-id"]
        assert client.get("/test/boom", headers={"X-Request-ID": "req-3"}).status_code == 500
    handling = [line for line in lines(captured) if line["message"] == "handling"]
    assert [line["request_id"] for line in handling] == ["req-1", made]
    [boom] = [line for line in lines(captured) if "unhandled error" in line["message"]]
    assert boom["request_id"] == "req-3" and "RuntimeError: boom" in boom["exception"]


def test_a_worker_logs_json_naming_the_job_on_every_line_it_writes_during_it(
    pg_db: str, redis_url: str, env: pytest.MonkeyPatch, planted: dict, tmp_path: Path
) -> None:
    env.setenv("SKILLMIX_BROKER_URL", redis_url)
    env.setenv("SKILLMIX_LOG_FORMAT", "json")
    refresh_settings()
    log_path = tmp_path / "worker.log"
    w = worker(log_path)
    try:
        with TestClient(create_app()) as client:
            h = auth(new_key("logs"))
            corpus = client.post(
                "/v1/corpora",
                headers=h,
                json={"name": "web", "uri": planted["uri"], "format": "jsonl.gz"},
            ).json()
            skill = client.post(
                "/v1/skills",
                headers=h,
                json={"name": "cmp", "detector": {"kind": "regex", "pattern": r"cmp \d+ \d+"}},
            ).json()
            scan = client.post(
                "/v1/scans",
                headers=h,
                json={"corpus_id": corpus["id"], "skill_ids": [skill["id"]]},
            ).json()
            client.headers.update(h)
            job = wait_final(client, scan["job"]["id"], timeout=90)
    finally:
        stop_process(w)
    assert job["state"] == "succeeded", log_path.read_text()[-3000:]

    # Every line is JSON: no Celery banner or format of its own, and the notice Celery's
    # signal handler writes as SIGTERM stops the worker is a log line too.
    entries = json_lines(log_path)
    assert any(e["logger"] == "celery.apps.worker" and "ready" in e["message"] for e in entries)
    [notice] = [e for e in entries if e["message"] == SHUTDOWN]
    assert notice["logger"] == "celery.apps.worker" and "job_id" not in notice
    job_id = job["id"]
    [start] = [i for i, e in enumerate(entries) if e["message"].startswith(f"job {job_id} attempt")]
    [end] = [i for i, e in enumerate(entries) if e["message"].startswith(f"job {job_id}: ")]
    pid = entries[start]["process"]
    during = [e for e in entries[start : end + 1] if e["process"] == pid]
    for entry in during:
        assert (entry.get("job_id"), entry.get("job_kind"), entry.get("job_attempt")) == (
            job_id,
            "scan",
            1,
        ), entry
    # datatrove's own output (loguru, to stderr) is among them.
    assert any("datatrove" in e["message"] for e in during), [e["message"] for e in during]
    assert all("job_id" not in e for e in entries[:start])


def test_a_verifications_training_processes_log_json_naming_the_job_and_their_run(
    pg_db: str, redis_url: str, env: pytest.MonkeyPatch, planted: dict, tmp_path: Path
) -> None:
    env.setenv("SKILLMIX_BROKER_URL", redis_url)
    env.setenv("SKILLMIX_LOG_FORMAT", "json")
    env.setenv("SKILLMIX_TRAINING_WORKERS", "2")
    refresh_settings()
    # The deployed shape: a curation worker and a training worker of two processes
    # (SKILLMIX_TRAINING_WORKERS), which share a verification's training units.
    workers = start_workers(tmp_path)
    try:
        with TestClient(create_app()) as client:
            client.headers.update(auth(new_key("logs")))
            scanned = register_scan(client, planted["uri"])
            skill, scan = scanned["skill"], scanned["scan"]
            assert wait_final(client, scan["job"]["id"], timeout=90)["state"] == "succeeded"
            plan = {skill["id"]: {"target": {"per_batch": 3}, "source": "synthesize"}}
            mixture = client.post("/v1/mixtures", json=body(scanned, plan=plan)).json()
            assert wait_final(client, mixture["job"]["id"], timeout=90)["state"] == "succeeded"
            ver = client.post(
                "/v1/verifications",
                json={
                    "arms": {"upweighted": mixture["id"]},
                    "skill_ids": [skill["id"]],
                    "sizes": ["nano"],
                    "seeds": [0, 1],
                    "token_budget": 8 * 4096,
                    "eval_every": 4,
                    "device": "cpu",
                },
            ).json()
            job = wait_final(client, ver["job"]["id"], timeout=120)
    finally:
        for proc in workers:
            stop_process(proc)
    training_log = tmp_path / "worker-training.log"
    assert job["state"] == "succeeded", (job, training_log.read_text()[-3000:])

    curation = json_lines(tmp_path / "worker-curation.log")
    entries = json_lines(training_log)
    for lines_of_a_worker in (curation, entries):
        assert [e for e in lines_of_a_worker if e["message"] == SHUTDOWN]
    job_id = job["id"]
    assert [e for e in entries if e["message"].startswith(f"job {job_id} attempt 1")]
    runs = [e for e in entries if "run" in e]
    # The runs trained in the two processes, whose lines (the trainer's, here) name the
    # job, the training unit and the run, as the worker's own do.
    assert len({e["process"] for e in runs}) == 2, runs
    assert {e["run"] for e in runs} == {"upweighted/nano/0", "upweighted/nano/1"}
    for entry in runs:
        assert (entry["job_id"], entry["job_kind"], entry["job_attempt"]) == (
            job_id,
            "verification",
            1,
        ), entry
        assert entry["training_run"].startswith("run_"), entry
    assert len({e["training_run"] for e in runs}) == 2
    assert any(e["message"].startswith("training nano model") for e in runs), runs
