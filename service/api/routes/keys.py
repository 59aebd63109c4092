"""API keys of the caller's project: list, create, revoke, rotate (admin keys only).

An admin key may revoke or rotate itself (it then stops working like any other revoked
key). A create or rotate answers with the key in clear once; it is not stored, so these
POSTs do not take an Idempotency-Key (a replay would have to keep the secret)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from sqlalchemy.orm import Session

from service.api.deps import AdminCaller, PageDep, SessionDep
from service.api.errors import Problem, not_found
from service.api.pagination import paginate
from service.api.schemas import KeyCreate, KeyCreated, KeyPublic, KeyRotate, KeysPublic
from service.auth import (
    KeyNotLive,
    find_key,
    issue_key,
    key_summary,
    keys_query,
    revoke_key,
    rotate_key,
)
from service.models import ApiKey, utcnow

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def public(row: ApiKey) -> KeyPublic:
    return KeyPublic.model_validate(key_summary(row))


def get_key(session: Session, caller: AdminCaller, key_id: str) -> ApiKey:
    row = find_key(session, key_id, caller.project.id)
    if row is None:
        raise not_found("Key", key_id)
    return row


@router.get("", operation_id="keys_list", response_model=KeysPublic)
def list_keys(*, session: SessionDep, caller: AdminCaller, page: PageDep) -> KeysPublic:
    """This project's API keys (live, expired and revoked), newest first; never a secret."""
    stmt = keys_query(caller.project.id)
    return KeysPublic.model_validate(paginate(session, stmt, ApiKey.id, page, public))


@router.post("", operation_id="keys_create", status_code=201, response_model=KeyCreated)
def create_key(*, body: KeyCreate, session: SessionDep, caller: AdminCaller) -> KeyCreated:
    """Create a key in this project; the answer carries the key itself, this once."""
    expires_at = None
    if body.expires_in_seconds is not None:
        expires_at = utcnow() + timedelta(seconds=body.expires_in_seconds)
    row, key = issue_key(
        session, caller.project.id, name=body.name, role=body.role, expires_at=expires_at
    )
    session.commit()
    return KeyCreated(**key_summary(row), key=key)


@router.post("/{key_id}/revoke", operation_id="keys_revoke", response_model=KeyPublic)
def revoke(*, key_id: str, session: SessionDep, caller: AdminCaller) -> KeyPublic:
    """Revoke a key (again: no change). API processes that verified it recently accept it
    for up to SKILLMIX_AUTH_CACHE_SECONDS more."""
    row = revoke_key(get_key(session, caller, key_id))
    session.commit()
    return public(row)


@router.post(
    "/{key_id}/rotate", operation_id="keys_rotate", status_code=201, response_model=KeyCreated
)
def rotate(
    *, key_id: str, session: SessionDep, caller: AdminCaller, body: KeyRotate | None = None
) -> KeyCreated:
    """A new key with the old one's name and role; the old one works for `grace_seconds`
    more (default an hour). 409 if the old key is revoked or expired already."""
    row = get_key(session, caller, key_id)
    grace = timedelta(seconds=(body or KeyRotate()).grace_seconds)
    try:
        new, key = rotate_key(session, row, grace)
    except KeyNotLive:
        raise Problem(
            409,
            "key-not-live",
            "Key not live",
            f"Key {key_id!r} is revoked or expired: create a new key instead.",
        ) from None
    session.commit()
    return KeyCreated(**key_summary(new), key=key)
