"""API keys: `sk_` + 32 random bytes; only the SHA-256 is stored.

A plain hash (not a slow KDF) is right here: the key is high-entropy random, not a
password, and the lookup must be an indexed equality on every request.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
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


def api_key_for(session: Session, key: str) -> ApiKey | None:
    """The live (not revoked) key row for a key given in clear."""
    return session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )


def project_for_key(session: Session, key: str) -> Project | None:
    row = api_key_for(session, key)
    return session.get(Project, row.project_id) if row else None
