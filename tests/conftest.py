"""Shared fixtures. PostgreSQL and Redis are real: the machine's own servers.

Outside CI a missing server skips the tests that need it; in CI (CI=true) it fails them,
so a green CI run always means those tests ran.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import create_engine, text

from service.cli.embedded import refresh_settings

PG_ADMIN_URL = os.environ.get(
    "SKILLMIX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SKILLMIX_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
# Session fixtures `ray_engine` and `slurm_engine`: real clusters (tests/clusters.py).
pytest_plugins = ["tests.clusters"]

# The scan's line screen caches compiled patterns (curation/skills/screen.py): in a folder
# of the test session's, removed after it, never the user's ~/.cache. Set here, before any
# test starts a worker process, so every process of the session inherits it.
if "SKILLMIX_SCREEN_CACHE" not in os.environ:
    os.environ["SKILLMIX_SCREEN_CACHE"] = tempfile.mkdtemp(prefix="skillmix-screens-")
    atexit.register(shutil.rmtree, os.environ["SKILLMIX_SCREEN_CACHE"], True)


def missing(message: str) -> NoReturn:
    """Skip a test whose real part (a server, a mount, a package) is missing here; fail it
    in CI (CI=true), where every one of them must be present."""
    if os.environ.get("CI"):
        pytest.fail(message + " (CI requires it)")
    pytest.skip(message)


def need_module(name: str, install: str) -> Any:
    """Import `name`, or `missing(...)` naming what installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} is not installed ({install}): {exc}")


def _unavailable(what: str, exc: Exception) -> None:
    missing(f"{what} is not reachable: {exc}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"skillmix_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _unavailable("PostgreSQL", exc)
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.flushdb()
    except Exception as exc:
        _unavailable("Redis", exc)
    return REDIS_URL


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A clean SKILLMIX_* environment with the data dir in tmp_path (embedded defaults)."""
    for key in list(os.environ):
        if key.startswith("SKILLMIX_") and not key.startswith("SKILLMIX_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SKILLMIX_DATA_DIR", str(tmp_path / "data"))
    refresh_settings()
    yield monkeypatch
    monkeypatch.undo()
    refresh_settings()


@pytest.fixture
def sqlite_db(env: pytest.MonkeyPatch) -> str:
    from service import migrate
    from service.settings import get_settings

    url = get_settings().effective_database_url
    migrate.upgrade(url)
    return url


@pytest.fixture
def pg_db(env: pytest.MonkeyPatch, pg_url: str) -> Iterator[str]:
    """Point the settings at the session's PostgreSQL database, migrated and emptied."""
    from service import migrate

    env.setenv("SKILLMIX_DATABASE_URL", pg_url)
    refresh_settings()
    migrate.upgrade(pg_url)
    yield pg_url
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE projects CASCADE"))
    engine.dispose()
