"""Retries against the real app wrapped in failure-injecting ASGI middleware: a POST whose
answer is lost is retried with the same Idempotency-Key and creates one job; a dead port
ends in APIConnectionError; a broken event stream falls back to polling."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import pytest
from skillmix_client import APIConnectionError, APITimeoutError, Skillmix
from sqlalchemy import func, select

from service.api.app import create_app
from service.auth import create_key
from service.cli.embedded import free_port
from service.db import session_scope
from service.models import Job
from tests.clients.conftest import PARKED
from tests.clients.servers import BrokenEvents, UnavailableAfterCreate, serve


def test_a_retried_create_makes_one_job(stack: str, caplog: pytest.LogCaptureFixture) -> None:
    with session_scope() as session:
        project, key = create_key(session, "sdk-retries")
        project_id = project.id
    app = UnavailableAfterCreate(create_app(), "/v1/jobs", failures=2)
    caplog.set_level(logging.DEBUG, logger="skillmix_client")

    with serve(app) as base_url, Skillmix(base_url=base_url, api_key=key) as client:
        job = client.jobs.create(queue=PARKED)

    assert app.answers == [202, 202]  # the real app created the job on the first attempt
    assert len({headers["idempotency-key"] for headers in app.posts}) == 1
    with session_scope() as session:
        count = session.scalar(select(func.count(Job.id)).where(Job.project_id == project_id))
    assert count == 1 and job.state == "queued"
    retries = [r.getMessage() for r in caplog.records if r.name == "skillmix_client"]
    assert len(retries) == 2, retries
    assert "attempt 1 of 2 in 0.00s (status=503)" in retries[0]
    assert "attempt 2 of 2" in retries[1]


@pytest.mark.parametrize("mode", ["truncated", "bad-gateway"])
def test_wait_polls_when_the_event_stream_breaks(stack: str, api_key: str, mode: str) -> None:
    app = BrokenEvents(create_app(), mode)
    with serve(app) as base_url, Skillmix(base_url=base_url, api_key=api_key) as client:
        job = client.jobs.create(params={"seconds": 0.2})
        done = client.with_options(max_retries=0).jobs.wait(job.id, timeout=60, poll_interval=0.2)
    assert app.hits == 1 and done.state == "succeeded"


def test_nothing_listening_is_a_connection_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="skillmix_client")
    client = Skillmix(base_url=f"http://127.0.0.1:{free_port()}", api_key="sk_x", max_retries=2)
    with pytest.raises(APIConnectionError) as info:
        client.jobs.create()
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.request.headers["idempotency-key"]
    assert len([r for r in caplog.records if "ConnectError" in r.getMessage()]) == 2


def test_a_silent_server_is_a_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = Skillmix(
            base_url=f"http://127.0.0.1:{port}", api_key="sk_x", timeout=0.3, max_retries=1
        )
        with pytest.raises(APITimeoutError):
            client.jobs.retrieve("job_x")


def test_skillmix_log_debug_prints_retries() -> None:
    code = (
        "import skillmix_client as s\n"
        f"c = s.Skillmix(base_url='http://127.0.0.1:{free_port()}', api_key='k', max_retries=1)\n"
        "try:\n    c.jobs.retrieve('x')\nexcept s.APIConnectionError:\n    pass\n"
    )
    env = {"SKILLMIX_LOG": "debug", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "skillmix_client DEBUG" in out.stderr and "attempt 1 of 1" in out.stderr
