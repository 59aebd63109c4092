"""The HTTP contract of the foundation: auth, isolation, problem details, pagination,
idempotency, limits. SQLite, no worker (jobs stay queued)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.auth import Caller, CallerCache, ProjectRef
from service.db import session_scope
from service.models import ApiKey, Job, utcnow
from tests.service.conftest import auth

PROBLEM = "application/problem+json"


def create(client: TestClient, key: str, **body: object) -> dict:
    r = client.post("/v1/jobs", json=body or {"kind": "sleep"}, headers=auth(key))
    assert r.status_code == 202, r.text
    return r.json()


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


def test_missing_wrong_and_malformed_keys_are_401(client: TestClient, key_a: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer sk_nope"},
        {"Authorization": key_a},
        {"Authorization": "Basic abc"},
    ):
        r = client.get("/v1/jobs", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["type"] == "urn:skillmix:problem:unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"  # RFC 6750
    titles = [
        client.get("/v1/jobs", headers=h).json()["title"]
        for h in ({}, {"Authorization": "Bearer  "}, {"Authorization": "Bearer sk_nope"})
    ]
    assert titles == ["Missing API key", "Malformed Authorization header", "Invalid API key"]


def test_verified_keys_are_cached_for_auth_cache_seconds(client: TestClient, key_a: str) -> None:
    """A key verified once is trusted without a query until the cache entry expires; then
    a revocation in the database takes effect. Unknown keys are never cached."""
    now = [1000.0]
    cache = CallerCache(ttl=10, clock=lambda: now[0])
    client.app.state.caller_cache = cache  # type: ignore[attr-defined]
    assert client.get("/v1/jobs", headers=auth(key_a)).status_code == 200
    with session_scope() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == key_a[:10]))
        assert row is not None
        row.revoked_at = utcnow()
    now[0] += 9.9
    assert client.get("/v1/jobs", headers=auth(key_a)).status_code == 200
    now[0] += 0.2
    assert client.get("/v1/jobs", headers=auth(key_a)).status_code == 401
    assert client.get("/v1/jobs", headers=auth("sk_unknown")).status_code == 401
    assert len(cache._entries) == 1  # the (now stale) entry of key_a, nothing for the unknown


def test_caller_cache_stays_bounded_and_ttl_zero_disables_it() -> None:
    now = [0.0]
    caller = Caller("key_x", ProjectRef("proj_x", "x"))
    cache = CallerCache(ttl=5, max_entries=3, clock=lambda: now[0])
    for i in range(10):
        cache.put(f"h{i}", caller)
        now[0] += 1
        assert len(cache._entries) <= 3
    assert cache.get("h9") == caller and cache.get("h0") is None
    off = CallerCache(ttl=0)
    off.put("h", caller)
    assert off.get("h") is None


def test_another_projects_job_is_404_everywhere(client: TestClient, key_a: str, key_b: str) -> None:
    job = create(client, key_a)
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("GET", f"/v1/jobs/{job['id']}/artifacts"),
        ("GET", f"/v1/jobs/{job['id']}/artifacts/result.json"),
    ]:
        r = client.request(method, path, headers=auth(key_b))
        assert r.status_code == 404, (method, path, r.text)
        assert job["id"] not in r.text or "No job" in r.json()["detail"]
    assert client.get("/v1/jobs", headers=auth(key_b)).json()["data"] == []
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth(key_a)).json()["state"] == "queued"


def test_bad_bodies_are_4xx_problems(client: TestClient, key_a: str) -> None:
    h = {**auth(key_a), "Content-Type": "application/json"}
    cases = [
        (b"{not json", 400, "malformed-json"),
        (b'{"kind": "sleep", "params": {"seconds": "soon"}}', 422, "validation-error"),
        (b'{"kind": "sleep", "colour": "blue"}', 422, "validation-error"),
        (b'{"kind": "train-everything"}', 422, "validation-error"),
        (b'{"kind": "sleep", "params": {"seconds": -1}}', 422, "validation-error"),
        (b"[]", 422, "validation-error"),
    ]
    for body, status, slug in cases:
        r = client.post("/v1/jobs", content=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["type"].endswith(slug)
        assert r.json()["detail"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_oversized_body_is_413_with_or_without_content_length(
    client: TestClient, key_a: str
) -> None:
    big = b'{"kind": "sleep", "params": {"fail": "' + b"x" * 2_000_000 + b'"}}'
    r = client.post(
        "/v1/jobs", content=big, headers={**auth(key_a), "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["type"].endswith("payload-too-large")

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield b"x" * 65536

    r = client.post(
        "/v1/jobs", content=chunks(), headers={**auth(key_a), "Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_pagination_walks_every_job_once_newest_first(client: TestClient, key_a: str) -> None:
    ids = [create(client, key_a)["id"] for _ in range(5)]
    seen, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = client.get("/v1/jobs", params=params, headers=auth(key_a)).json()
        seen += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            break
        after = page["next_after"]
    assert seen == list(reversed(ids))
    r = client.get("/v1/jobs", params={"limit": 10_000}, headers=auth(key_a))
    assert r.status_code == 422


def test_idempotency_key_replays_and_creates_once(client: TestClient, key_a: str) -> None:
    h = {**auth(key_a), "Idempotency-Key": "retry-1"}
    first = client.post("/v1/jobs", json={"kind": "sleep"}, headers=h)
    second = client.post("/v1/jobs", json={"kind": "sleep"}, headers=h)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 1}}, headers=h)
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency-key-reused")
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_cancel_a_queued_job_then_409(client: TestClient, key_a: str) -> None:
    job = create(client, key_a)
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth(key_a))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth(key_a))
    assert again.status_code == 409
    assert again.json()["state"] == "cancelled"
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=auth(key_a))
    assert "event: end" in events.text


def test_openapi_documents_every_resource_with_errors_and_examples(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/healthz",
        "/readyz",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/artifacts",
        "/v1/jobs/{job_id}/artifacts/{name}",
        "/v1/skills",
        "/v1/skills/{skill_id}",
        "/v1/skills/{skill_id}/preview",
        "/v1/skill-families",
        "/v1/corpora",
        "/v1/corpora/{corpus_id}",
        "/v1/scans",
        "/v1/scans/{scan_id}",
        "/v1/mixtures",
        "/v1/mixtures/{mixture_id}",
        "/v1/verifications",
        "/v1/verifications/{verification_id}",
    ):
        assert path in paths, path
    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            assert op.get("summary") and op.get("description"), (method, path)
            for status in ("401", "404", "422"):
                assert status in op["responses"], (method, path, status)
    schemas = doc["components"]["schemas"]
    assert "ProblemDetails" in schemas
    for name in ("CorpusCreate", "ScanCreate", "MixtureCreate", "VerificationCreate"):
        assert schemas[name].get("examples"), name


def test_openapi_declares_the_bearer_scheme_on_every_authenticated_operation(
    client: TestClient, key_a: str
) -> None:
    doc = client.get("/openapi.json").json()
    [(name, scheme)] = doc["components"]["securitySchemes"].items()
    assert (name, scheme["type"], scheme["scheme"]) == ("ApiKey", "http", "bearer")
    assert "Authorization: Bearer <key>" in scheme["description"]
    operations = [
        (method, path, op) for path, ops in doc["paths"].items() for method, op in ops.items()
    ]
    for method, path, op in operations:
        if path.startswith("/v1/"):
            assert op.get("security") == [{"ApiKey": []}], (method, path)
            assert "Authorization" not in {p["name"] for p in op.get("parameters", [])}
            assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
        else:  # probes: no key, and they answer without one
            assert "security" not in op, (method, path)
            assert client.request(method.upper(), path).status_code in (200, 503)
    assert "/metrics" not in doc["paths"] and client.get("/metrics").status_code == 200
    # What the document declares is what the API does: the scheme's header is enough.
    assert client.get("/v1/skill-families", headers=auth(key_a)).status_code == 200
