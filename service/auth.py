"""API keys: `sk_` + 32 random bytes; only the SHA-256 is stored.

A plain hash (not a slow KDF) is right here: the key is high-entropy random, not a
password, and the lookup must be an indexed equality on every request.

A key is live while it is neither revoked nor expired. Its lifecycle (create, list,
revoke, rotate) lives here, shared by the `skillmix keys` verbs and `/v1/keys`. The key in
clear exists only in what `create_key`, `issue_key` and `rotate_key` return: never log it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, update
from sqlalchemy.orm import Session

from service.models import ApiKey, Project, utcnow

ROLES = ("member", "admin")
DEFAULT_NAME = "default"
LAST_USED_INTERVAL = 60.0  # seconds between two writes of one key's last_used_at, per process


class KeyNotLive(Exception):
    """Rotating a key that is already revoked or expired."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(
    session: Session,
    project_id: str,
    *,
    name: str = DEFAULT_NAME,
    role: str = "member",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key row for a project; return it and the key in clear (shown once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    key = "sk_" + secrets.token_urlsafe(32)
    row = ApiKey(
        project_id=project_id,
        key_hash=hash_key(key),
        prefix=key[:10],
        name=name,
        role=role,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, key


def create_key(
    session: Session,
    project_name: str,
    *,
    name: str = DEFAULT_NAME,
    role: str = "member",
    expires_at: datetime | None = None,
) -> tuple[Project, str]:
    """Create the project if needed and a new key for it; return the key in clear once."""
    project = session.scalar(select(Project).where(Project.name == project_name))
    if project is None:
        project = Project(name=project_name)
        session.add(project)
        session.flush()
    _, key = issue_key(session, project.id, name=name, role=role, expires_at=expires_at)
    return project, key


def is_live(row: ApiKey, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)


def keys_query(project_id: str | None = None) -> Select[ApiKey]:
    """Every key (live or not), or a project's."""
    stmt = select(ApiKey)
    return stmt if project_id is None else stmt.where(ApiKey.project_id == project_id)


def find_key(session: Session, key_id: str, project_id: str | None = None) -> ApiKey | None:
    """A key by id, or None (also when it belongs to another project than `project_id`)."""
    row = session.get(ApiKey, key_id)
    if row is None or (project_id is not None and row.project_id != project_id):
        return None
    return row


def revoke_key(row: ApiKey) -> ApiKey:
    """Revoke at once (again: nothing changes). API processes that verified the key in the
    last SKILLMIX_AUTH_CACHE_SECONDS keep accepting it until their cache entry runs out."""
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def rotate_key(session: Session, row: ApiKey, grace: timedelta) -> tuple[ApiKey, str]:
    """A new key with the old one's project, name and role (and lifetime, if it had one);
    the old one expires after `grace` (at once for 0; never later than it would have).
    KeyNotLive if the old key is revoked or expired already."""
    now = utcnow()
    if not is_live(row, now):
        raise KeyNotLive(f"key {row.id} is revoked or expired")
    lifetime = row.expires_at - row.created_at if row.expires_at else None
    new, key = issue_key(
        session,
        row.project_id,
        name=row.name or DEFAULT_NAME,
        role=row.role,
        expires_at=now + lifetime if lifetime else None,
    )
    if grace <= timedelta(0):
        row.revoked_at = now
    else:
        row.expires_at = min(row.expires_at or now + grace, now + grace)
    return new, key


def _live(key: str) -> tuple[ColumnElement[bool], ...]:
    """The conditions for the row of a key given in clear that is not revoked or expired."""
    return (
        ApiKey.key_hash == hash_key(key),
        ApiKey.revoked_at.is_(None),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow()),
    )


def api_key_for(session: Session, key: str) -> ApiKey | None:
    """The live (not revoked, not expired) key row for a key given in clear."""
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
    role: str = "member"
    expires_at: float | None = None  # the key's expiry, in time.time() seconds


def caller_for(session: Session, key: str) -> Caller | None:
    """The live key and its project, in one query."""
    row = session.execute(
        select(ApiKey.id, Project.id, Project.name, ApiKey.role, ApiKey.expires_at)
        .join(Project, Project.id == ApiKey.project_id)
        .where(*_live(key))
    ).first()
    if row is None:
        return None
    expires = row[4].timestamp() if row[4] else None
    return Caller(row[0], ProjectRef(row[1], row[2]), row[3], expires)


def record_use(session: Session, key_id: str) -> None:
    """Set a key's last_used_at to now (the caller throttles: see UsageThrottle)."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


class CallerCache:
    """Keys verified in the last `ttl` seconds, by hash, so most requests authenticate
    without a database query. The price: a key revoked in the database keeps working in
    an API process for up to `ttl` seconds. An entry never outlives its key's expiry (the
    expiry is cached with it), so an expired key is refused on time. Unknown keys are never
    cached (a new key works at once, and guessing cannot fill the cache)."""

    def __init__(
        self,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self.clock, self.wall_clock = clock, wall_clock
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
            lifetime = self.ttl
            if caller.expires_at is not None:
                lifetime = min(lifetime, caller.expires_at - self.wall_clock())
            self._entries[key_hash] = (now + lifetime, caller)


class UsageThrottle:
    """Which keys' `last_used_at` is due for a write: at most once per `interval` seconds
    per key in this process, so a busy key costs one UPDATE a minute, not one a request.
    A key is marked before its write is tried, so a failing write is not retried at once."""

    def __init__(
        self,
        interval: float = LAST_USED_INTERVAL,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval, self.max_entries, self.clock = interval, max_entries, clock
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, key_id: str) -> bool:
        now = self.clock()
        last = self._written.get(key_id)
        if last is not None and now - last < self.interval:
            return False
        with self._lock:
            last = self._written.get(key_id)
            if last is not None and now - last < self.interval:
                return False
            if len(self._written) >= self.max_entries:
                self._written = {k: t for k, t in self._written.items() if now - t < self.interval}
                if len(self._written) >= self.max_entries:
                    self._written.clear()
            self._written[key_id] = now
        return True


def key_summary(row: ApiKey, project_name: str | None = None) -> dict[str, Any]:
    """A key as the CLI and the API show it: never its secret (only its prefix)."""
    out: dict[str, Any] = {"id": row.id}
    if project_name is not None:
        out["project"] = project_name
    out.update(
        name=row.name or DEFAULT_NAME,
        prefix=row.prefix,
        role=row.role,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        live=is_live(row),
    )
    return out
