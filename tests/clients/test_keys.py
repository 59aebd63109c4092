"""`client.keys`, sync and async, against the real stack: an admin key manages its
project's keys; a member key is refused."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from skillmix_client import (
    AsyncSkillmix,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    Skillmix,
)

from service.auth import create_key
from service.db import session_scope
from tests.clients.conftest import TIMEOUT


def another_admin() -> str:
    with session_scope() as session:
        _, key = create_key(session, f"sdk-{uuid.uuid4().hex[:8]}", name="ops", role="admin")
    return key


@pytest.fixture
def admin_key(stack: str) -> str:
    return another_admin()


def test_keys_sync(base_url: str, admin_key: str) -> None:
    with Skillmix(base_url=base_url, api_key=admin_key, timeout=TIMEOUT) as admin:
        made = admin.keys.create(name="ci", expires_in_seconds=3600)
        assert made.key.startswith("sk_") and made.key not in repr(made)
        assert (made.name, made.role, made.live) == ("ci", "member", True)
        assert made.expires_at is not None
        with Skillmix(base_url=base_url, api_key=made.key, timeout=TIMEOUT) as member:
            assert list(member.jobs.list()) == []
            with pytest.raises(PermissionDeniedError):
                list(member.keys.list())
        listed = list(admin.keys.list(limit=1))
        assert [k.name for k in listed] == ["ci", "ops"]
        assert all(not hasattr(k, "key") for k in listed)

        spare = admin.keys.create(name="spare")
        new = admin.keys.rotate(spare.id, grace_seconds=0)
        assert (new.name, new.role) == ("spare", "member") and new.key != spare.key
        old = Skillmix(base_url=base_url, api_key=spare.key, max_retries=0)
        with old, pytest.raises(AuthenticationError):
            list(old.jobs.list())
        revoked = admin.keys.revoke(new.id)
        assert revoked.revoked_at is not None and not revoked.live
        with pytest.raises(NotFoundError):
            admin.keys.revoke("key_" + "0" * 28)
    # Another project's admin does not find this project's keys.
    other = Skillmix(base_url=base_url, api_key=another_admin(), timeout=TIMEOUT)
    with other, pytest.raises(NotFoundError):
        other.keys.revoke(made.id)


def test_keys_async(base_url: str, admin_key: str) -> None:
    async def scenario() -> None:
        async with AsyncSkillmix(base_url=base_url, api_key=admin_key, timeout=TIMEOUT) as admin:
            made = await admin.keys.create(name="bot", role="admin")
            assert made.role == "admin" and made.expires_at is None
            rotated = await admin.keys.rotate(made.id)
            assert rotated.name == "bot" and rotated.role == "admin"
            names = sorted([k.name async for k in admin.keys.list()])
            assert names == ["bot", "bot", "ops"]
            revoked = await admin.keys.revoke(made.id)
            assert revoked.revoked_at is not None

    asyncio.run(scenario())
