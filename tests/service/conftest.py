from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from curation.synthetic_corpus import Plant, generate_corpus
from service.api.app import create_app
from service.auth import create_key
from service.cli.embedded import refresh_settings
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


def register_scan(client: TestClient, uri: str, headers: dict[str, str] | None = None) -> dict:
    """A jsonl.gz corpus at `uri`, the builtin `cmp` skill and a (queued) scan of the two:
    `{"corpus", "skill", "scan"}` as the API answered them."""
    corpus = client.post(
        "/v1/corpora", headers=headers, json={"name": "web", "uri": uri, "format": "jsonl.gz"}
    ).json()
    skill = client.post(
        "/v1/skills",
        headers=headers,
        json={
            "name": "cmp",
            "detector": {"kind": "builtin"},
            "generator": {"family": "number_comparison", "params": {}},
        },
    ).json()
    scan = client.post(
        "/v1/scans",
        headers=headers,
        json={"corpus_id": corpus["id"], "skill_ids": [skill["id"]], "batch_tokens": 4096},
    ).json()
    return {"corpus": corpus, "skill": skill, "scan": scan}


CMP = tuple(
    f"cmp {a} {b} : {'<' if a < b else '>'}"
    for a, b in [(12, 57), (80, 31), (45, 46), (99, 10), (23, 71)]
)


@pytest.fixture
def corpora_root(tmp_path: Path, env: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "corpora"
    root.mkdir()
    env.setenv("SKILLMIX_ALLOWED_ROOTS", str(root))
    refresh_settings()
    return root


@pytest.fixture
def planted(corpora_root: Path) -> dict:
    corpus = generate_corpus(
        str(corpora_root / "web"),
        n_docs=240,
        seed=3,
        format="jsonl.gz",
        plants=[Plant("cmp", CMP, every=4, offset=2)],
        n_files=3,
    )
    return {"uri": str(corpora_root / "web" / "*.jsonl.gz"), "truth": corpus.truth}
