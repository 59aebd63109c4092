"""API keys: `sk_` + 32 random bytes; only the SHA-256 is stored.

A plain hash (not a slow KDF) is right here: the key is high-entropy random, not a
password, and the lookup must be an indexed equality on every request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from service.models import ApiKey, Project


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, project_name: str) -> tuple[Project, str]:
    """Create the project if needed and a new key for it; return the key in clear once."""
    project = session.scalar(select(Project).where(Project.name == project_name))
    if project is None:
        project = Project(name=project_name)
        session.add(project)
        session.flush()
    key = "sk_" + secrets.token_urlsafe(32)
    session.add(ApiKey(project_id=project.id, key_hash=hash_key(key), prefix=key[:10]))
    session.flush()
    return project, key


def _live(key: str) -> tuple[ColumnElement[bool], ...]:
    """The conditions for the row of a key given in clear that is not revoked."""
    return ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)


def api_key_for(session: Session, key: str) -> ApiKey | None:
    """The live (not revoked) key row for a key given in clear."""
    return session.scalar(select(ApiKey).where(*_live(key)))


def project_for_key(session: Session, key: str) -> Project | None:
    row = api_key_for(session, key)
    return session.get(Project, row.project_id) if row else None


@dataclass(frozen=True)
class ProjectRef:
    """The project a request acts for, as the routes need it: a plain value, so it can be
    cached across requests, unlike an ORM row tied to one session."""

    id: str
    name: str


@dataclass(frozen=True)
class Caller:
    key_id: str
    project: ProjectRef


def caller_for(session: Session, key: str) -> Caller | None:
    """The live key and its project, in one query."""
    row = session.execute(
        select(ApiKey.id, Project.id, Project.name)
        .join(Project, Project.id == ApiKey.project_id)
        .where(*_live(key))
    ).first()
    return Caller(row[0], ProjectRef(row[1], row[2])) if row else None


class CallerCache:
    """Keys verified in the last `ttl` seconds, by hash, so most requests authenticate
    without a database query. The price: a key revoked in the database keeps working in
    an API process for up to `ttl` seconds. Unknown keys are never cached (a new key works
    at once, and guessing cannot fill the cache)."""

    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.max_entries, self.clock = ttl, max_entries, clock
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Caller | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry[1]

    def put(self, key_hash: str, caller: Caller) -> None:
        if self.ttl <= 0:
            return
        now = self.clock()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key_hash] = (now + self.ttl, caller)
