"""The API-key lifecycle: names, expiry, roles, revocation, rotation and last use, through
`/v1/keys` and the `skillmix keys` verbs; and no key secret in any log line."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from service import auth
from service.api.app import create_app
from service.auth import CallerCache, UsageThrottle, create_key
from service.cli import server_app
from service.cli.embedded import refresh_settings
from service.db import session_scope
from service.models import ApiKey
from tests.service.conftest import auth as bearer

FORBIDDEN = "urn:skillmix:problem:admin-key-required"
SECRET = re.compile(r"sk_[A-Za-z0-9_-]{20,}")


def new_key(project: str, **kwargs: Any) -> str:
    with session_scope() as session:
        _, key = create_key(session, project, **kwargs)
    return key


def key_row(key: str) -> ApiKey:
    with session_scope() as session:
        row = session.query(ApiKey).filter(ApiKey.key_hash == auth.hash_key(key)).one()
        session.expunge(row)
        return row


def skillmix(*args: str) -> Result:
    return CliRunner().invoke(server_app, list(args))


@pytest.fixture
def uncached(sqlite_db: str, env: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """A client of an app that asks the database on every request."""
    env.setenv("SKILLMIX_AUTH_CACHE_SECONDS", "0")
    refresh_settings()
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def admin(sqlite_db: str) -> str:
    return new_key("project-a", name="ops", role="admin")


def works(client: TestClient, key: str) -> bool:
    status = client.get("/v1/jobs", headers=bearer(key)).status_code
    assert status in (200, 401)
    return status == 200


def test_create_and_list_through_the_api(uncached: TestClient, admin: str) -> None:
    r = uncached.post(
        "/v1/keys",
        headers=bearer(admin),
        json={"name": "ci", "expires_in_seconds": 3600, "role": "member"},
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["key"].startswith("sk_") and made["prefix"] == made["key"][:10]
    assert (made["name"], made["role"], made["live"]) == ("ci", "member", True)
    assert made["expires_at"] is not None and made["revoked_at"] is None
    assert works(uncached, made["key"])
    second = uncached.post("/v1/keys", headers=bearer(admin), json={"role": "admin"}).json()
    assert (second["name"], second["role"], second["expires_at"]) == ("default", "admin", None)

    listed = uncached.get("/v1/keys", headers=bearer(admin), params={"limit": 2})
    assert listed.status_code == 200
    page = listed.json()
    assert [k["id"] for k in page["data"]] == [second["id"], made["id"]]  # newest first
    assert page["has_more"] and not SECRET.search(listed.text)
    rest = uncached.get("/v1/keys", headers=bearer(admin), params={"after": page["next_after"]})
    assert [k["name"] for k in rest.json()["data"]] == ["ops"]
    assert all("key" not in k for k in page["data"] + rest.json()["data"])


def test_bad_create_is_422_and_stores_nothing(uncached: TestClient, admin: str) -> None:
    for body in ({"role": "owner"}, {"expires_in_seconds": 0}, {"name": ""}, {"secret": "x"}):
        r = uncached.post("/v1/keys", headers=bearer(admin), json=body)
        assert r.status_code == 422, body
    assert len(uncached.get("/v1/keys", headers=bearer(admin)).json()["data"]) == 1


def test_a_member_key_gets_403_on_keys(uncached: TestClient, admin: str) -> None:
    member = new_key("project-a")
    admin_id = key_row(admin).id
    for method, path in [
        ("GET", "/v1/keys"),
        ("POST", "/v1/keys"),
        ("POST", f"/v1/keys/{admin_id}/revoke"),
        ("POST", f"/v1/keys/{admin_id}/rotate"),
    ]:
        r = uncached.request(method, path, headers=bearer(member), json={})
        assert r.status_code == 403, (method, path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == FORBIDDEN
    assert works(uncached, admin) and works(uncached, member)
    assert len(uncached.get("/v1/keys", headers=bearer(admin)).json()["data"]) == 2


def test_another_projects_keys_answer_404(uncached: TestClient, admin: str) -> None:
    other = new_key("project-b", role="admin")
    other_id = key_row(other).id
    for path in (f"/v1/keys/{other_id}/revoke", f"/v1/keys/{other_id}/rotate"):
        r = uncached.post(path, headers=bearer(admin))
        assert r.status_code == 404 and r.json()["type"] == "urn:skillmix:problem:not-found"
    ids = [k["id"] for k in uncached.get("/v1/keys", headers=bearer(admin)).json()["data"]]
    assert other_id not in ids
    assert works(uncached, other) and key_row(other).revoked_at is None


def test_revoke_takes_effect_and_an_admin_may_revoke_itself(
    uncached: TestClient, admin: str
) -> None:
    member = new_key("project-a")
    member_id = key_row(member).id
    assert works(uncached, member)
    r = uncached.post(f"/v1/keys/{member_id}/revoke", headers=bearer(admin))
    assert r.status_code == 200 and r.json()["revoked_at"] and not r.json()["live"]
    assert not works(uncached, member)  # SKILLMIX_AUTH_CACHE_SECONDS=0: at once
    again = uncached.post(f"/v1/keys/{member_id}/revoke", headers=bearer(admin))
    assert again.json()["revoked_at"] == r.json()["revoked_at"]
    rotated = uncached.post(f"/v1/keys/{member_id}/rotate", headers=bearer(admin))
    assert rotated.status_code == 409 and rotated.json()["type"].endswith("key-not-live")

    own = uncached.post(f"/v1/keys/{key_row(admin).id}/revoke", headers=bearer(admin))
    assert own.status_code == 200
    assert uncached.get("/v1/keys", headers=bearer(admin)).status_code == 401


def test_revocation_waits_for_the_auth_cache(client: TestClient, admin: str) -> None:
    """The documented delay: a process that verified a key in the last
    SKILLMIX_AUTH_CACHE_SECONDS keeps accepting it until its cache entry runs out."""
    now = [100.0]
    client.app.state.caller_cache = CallerCache(ttl=5, clock=lambda: now[0])  # type: ignore[attr-defined]
    member = new_key("project-a")
    assert works(client, member)
    r = client.post(f"/v1/keys/{key_row(member).id}/revoke", headers=bearer(admin))
    assert r.status_code == 200
    now[0] += 4.9
    assert works(client, member)
    now[0] += 0.2
    assert not works(client, member)


def test_an_expired_key_is_refused_even_when_cached(client: TestClient, admin: str) -> None:
    """The app's cache (SKILLMIX_AUTH_CACHE_SECONDS, 10 s by default) keeps the key's expiry
    with the entry: the key stops working when it expires, not when the entry would."""
    made = client.post("/v1/keys", headers=bearer(admin), json={"expires_in_seconds": 1}).json()
    assert works(client, made["key"])  # verified and cached
    time.sleep(1.2)
    assert not works(client, made["key"])
    listed = client.get("/v1/keys", headers=bearer(admin)).json()["data"]
    assert [k["live"] for k in listed if k["id"] == made["id"]] == [False]


def test_the_cache_never_outlives_a_keys_expiry() -> None:
    mono, wall = [0.0], [1000.0]
    cache = CallerCache(ttl=10, clock=lambda: mono[0], wall_clock=lambda: wall[0])
    ref = auth.ProjectRef("proj_x", "x")
    cache.put("a", auth.Caller("key_a", ref, "member", expires_at=1003.0))
    cache.put("b", auth.Caller("key_b", ref))
    mono[0] += 2.9
    assert cache.get("a") and cache.get("b")
    mono[0] += 0.2
    assert cache.get("a") is None and cache.get("b")


def test_rotate_keeps_the_old_key_for_its_grace(uncached: TestClient, admin: str) -> None:
    old = uncached.post("/v1/keys", headers=bearer(admin), json={"name": "ci"}).json()
    r = uncached.post(
        f"/v1/keys/{old['id']}/rotate", headers=bearer(admin), json={"grace_seconds": 1}
    )
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["id"] != old["id"] and new["key"] != old["key"]
    assert (new["name"], new["role"]) == ("ci", "member")
    assert works(uncached, new["key"]) and works(uncached, old["key"])
    time.sleep(1.2)
    assert not works(uncached, old["key"]) and works(uncached, new["key"])

    now = uncached.post(
        f"/v1/keys/{new['id']}/rotate", headers=bearer(admin), json={"grace_seconds": 0}
    ).json()
    assert not works(uncached, new["key"]) and works(uncached, now["key"])
    assert key_row(new["key"]).revoked_at is not None


def test_last_used_at_is_set_and_throttled(client: TestClient, admin: str) -> None:
    now = [0.0]
    client.app.state.key_usage = UsageThrottle(clock=lambda: now[0])  # type: ignore[attr-defined]
    member = new_key("project-a")
    assert key_row(member).last_used_at is None
    assert works(client, member)
    first = key_row(member).last_used_at
    assert first is not None
    now[0] += 59
    assert works(client, member)
    assert key_row(member).last_used_at == first  # within the minute: no write
    now[0] += 1
    assert works(client, member)
    later = key_row(member).last_used_at
    assert later is not None and later > first
    listed = client.get("/v1/keys", headers=bearer(admin)).json()["data"]
    assert [k["last_used_at"] is not None for k in listed] == [True, True]


def test_a_failing_last_used_write_never_fails_the_request(
    client: TestClient,
    admin: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(session: object, key_id: str) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr("service.api.deps.record_use", broken)
    with caplog.at_level(logging.WARNING, logger="skillmix.api"):
        assert works(client, admin)
    assert "could not record the use of API key key_" in caplog.text
    assert admin not in caplog.text


def test_keys_cli(uncached: TestClient) -> None:
    made = skillmix(
        "keys", "create", "--project", "acme", "--name", "ci", "--expires-in", "30d", "--admin",
        "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    out = json.loads(made.stdout)
    assert (out["project"], out["name"], out["role"]) == ("acme", "ci", "admin")
    assert out["key"].startswith("sk_") and out["expires_at"] is not None
    assert uncached.get("/v1/keys", headers=bearer(out["key"])).status_code == 200
    plain = skillmix("keys", "create", "--project", "acme", "-q")
    member = plain.stdout.strip()
    assert plain.exit_code == 0 and SECRET.fullmatch(member)
    assert uncached.get("/v1/keys", headers=bearer(member)).status_code == 403

    listed = skillmix("keys", "list", "--project", "acme", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"]) for r in rows] == [("ci", "admin"), ("default", "member")]
    assert {"id", "project", "prefix", "created_at", "last_used_at", "revoked_at"} <= set(rows[0])
    table = skillmix("keys", "list")
    assert table.exit_code == 0 and rows[0]["id"] in table.stdout and "last_used" in table.stdout
    assert not SECRET.search(listed.stdout + table.stdout)

    rotated = skillmix("keys", "rotate", rows[1]["id"], "--grace", "0", "-q")
    assert rotated.exit_code == 0, rotated.output
    assert works(uncached, rotated.stdout.strip()) and not works(uncached, member)
    assert skillmix("keys", "revoke", out["id"]).exit_code == 0
    assert not works(uncached, out["key"])

    assert skillmix("keys", "create", "--project", "acme", "--expires-in", "3x").exit_code == 2
    assert skillmix("keys", "rotate", out["id"], "--grace", "soon").exit_code == 2
    gone = skillmix("keys", "revoke", "key_nope")
    assert gone.exit_code == 1 and "no API key" in gone.stderr
    stale = skillmix("keys", "rotate", out["id"], "--json")
    assert stale.exit_code == 1 and stale.stdout == ""
    assert "revoked or expired" in json.loads(stale.stderr)["error"]["message"]


def test_no_secret_is_ever_logged(
    uncached: TestClient, admin: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Create, use, rotate and revoke keys through the API and the CLI with every logger at
    DEBUG: a key appears only in the answer that creates it, never in a log record, on
    stderr, or in any other answer."""
    caplog.set_level(logging.DEBUG)
    secrets = [admin]
    shown: list[str] = []  # the answers that deliberately carry a key
    other: list[str] = []  # every other answer and output

    def api(method: str, path: str, key: str, **kw: Any) -> dict[str, Any]:
        r = uncached.request(method, path, headers=bearer(key), **kw)
        body = r.json() if r.content else {}
        if isinstance(body, dict) and "key" in body:
            secrets.append(body["key"])
            shown.append(r.text)
        else:
            other.append(r.text + json.dumps(dict(r.headers)))
        return body

    made = api("POST", "/v1/keys", admin, json={"name": "ci"})
    api("GET", "/v1/jobs", made["key"])
    rotated = api("POST", f"/v1/keys/{made['id']}/rotate", admin, json={"grace_seconds": 0})
    api("GET", "/v1/jobs", made["key"])  # refused: rotated away
    api("GET", "/v1/jobs", rotated["key"])
    api("POST", f"/v1/keys/{rotated['id']}/revoke", admin)
    api("GET", "/v1/jobs", rotated["key"])
    api("GET", "/v1/keys", admin)
    api("GET", "/v1/keys", "sk_" + "x" * 43)  # unknown

    for args in (["create", "--project", "project-a", "--json"], ["create", "--project", "b"]):
        result = skillmix("keys", *args)
        secrets += SECRET.findall(result.stdout)
        shown.append(result.stdout)
        other.append(result.stderr)
    cli_id = json.loads(shown[-2])["id"]
    result = skillmix("keys", "rotate", cli_id, "--json")
    secrets.append(json.loads(result.stdout)["key"])
    shown.append(result.stdout)
    other.append(result.stderr)
    for args in (["list"], ["list", "--json"], ["revoke", cli_id]):
        result = skillmix("keys", *args)
        other += [result.stdout, result.stderr]
    api("GET", "/v1/jobs", secrets[-1])

    assert len(set(secrets)) == 6 and all(SECRET.fullmatch(s) for s in secrets)
    assert len(caplog.records) > 0
    logged = [r.getMessage() + (r.exc_text or "") + repr(r.args) for r in caplog.records]
    for secret in secrets:
        assert sum(secret in s for s in shown) == (0 if secret == admin else 1)
        assert not [line for line in logged if secret in line]
        assert not [text for text in other if secret in text]
