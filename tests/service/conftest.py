from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.auth import create_key
from service.db import session_scope


def new_key(project: str) -> str:
    with session_scope() as session:
        _, key = create_key(session, project)
    return key


@pytest.fixture
def client(sqlite_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def key_a(sqlite_db: str) -> str:
    return new_key("project-a")


@pytest.fixture
def key_b(sqlite_db: str) -> str:
    return new_key("project-b")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
