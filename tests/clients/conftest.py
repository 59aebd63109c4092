"""One embedded stack (SQLite, filesystem broker, a real `skillmix worker` process and the
API on a loopback port) shared by the SDK tests; each test gets its own project and key,
so lists and 404s are isolated.

The embedded broker hands the worker about one message a second, so the worker consumes
only the `curation` queue: jobs that a test never needs to run are created on `training`
(`PARKED`), where they stay queued without delaying the jobs that must run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from skillmix_client import Skillmix

from service import migrate
from service.auth import create_key
from service.cli.embedded import refresh_settings, run_api, start_worker, stop_process, use_embedded
from service.db import session_scope
from service.settings import get_settings

TIMEOUT = 10.0
PARKED = "training"


def new_key(project: str | None = None) -> str:
    with session_scope() as session:
        _, key = create_key(session, project or f"sdk-{uuid.uuid4().hex[:8]}")
    return key


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API's base URL."""
    data_dir = tmp_path_factory.mktemp("sdk-stack")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("SKILLMIX_") and not key.startswith("SKILLMIX_TEST_"):
                mp.delenv(key)
        # use_embedded sets these in os.environ; recording them here restores them after.
        for key in ("SKILLMIX_DATA_DIR", "SKILLMIX_DATABASE_URL", "SKILLMIX_BROKER_URL"):
            mp.delenv(key, raising=False)
        use_embedded(data_dir)
        migrate.upgrade(get_settings().effective_database_url)
        worker = start_worker(queues="curation", log_path=data_dir / "worker.log")
        try:
            with run_api() as base_url:
                yield base_url
        finally:
            stop_process(worker)
    refresh_settings()


@pytest.fixture
def base_url(stack: str) -> str:
    return stack


@pytest.fixture
def api_key(stack: str) -> str:
    return new_key()


@pytest.fixture
def client(base_url: str, api_key: str) -> Iterator[Skillmix]:
    with Skillmix(base_url=base_url, api_key=api_key, timeout=TIMEOUT) as c:
        yield c
