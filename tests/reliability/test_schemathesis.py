"""Property-based API fuzzing with schemathesis: every operation of the OpenAPI document,
against a real uvicorn server on PostgreSQL, with a key for a project that has one of
every resource. Checks: no 5xx, responses conform to the document (status code
documented, content type, body schema, documented headers), and every operation that
declares the `ApiKey` bearer scheme enforces it (`ignored_auth`: each success is sent again
without the key and with a made-up one, and must be refused). Negative cases may drop the
key (the scheme is a parameter schemathesis negates), which must give a documented 401.

Bounded for CI: a fixed seed, deterministic generation and a few examples per operation
(about a minute). Jobs created by fuzzing stay queued: no worker runs, the embedded
filesystem broker and every output stay under the test's tmp dir.

Generated ids almost never exist, so most cases would only see 404s. A deterministic
share of the cases (chosen by a CRC of the generated values, so runs are reproducible)
has its path and body ids swapped for real ones of the seeded project, to reach the code
behind the lookups.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import create_engine, text

from service import migrate
from service.api.app import create_app
from service.cli.embedded import refresh_settings, run_api
from tests.reliability.test_security import auth, new_key, seed_project

# The document as the app generates it (the fixture checks that the server serves the
# same). Loaded at import so that each operation is its own test: schemathesis's lazy
# `schemathesis.pytest.from_fixture` loader fails on pytest 9 (it sets Node._nodeid,
# which pytest 9 no longer has).
DOCUMENT = create_app().openapi()
# A deeper local run: SKILLMIX_TEST_FUZZ_EXAMPLES=300 SKILLMIX_TEST_FUZZ_SEED=7 pytest ...
MAX_EXAMPLES = int(os.environ.get("SKILLMIX_TEST_FUZZ_EXAMPLES", "25"))
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": int(os.environ.get("SKILLMIX_TEST_FUZZ_SEED", "20240601")),
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "mode": "all"},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]


@pytest.fixture(scope="module")
def fuzz_target(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running API on the session's PostgreSQL database and a project with real
    resources (plus spares to delete), shared by every operation's test."""
    tmp = tmp_path_factory.mktemp("fuzz")
    root, data = tmp / "corpora", tmp / "data"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("SKILLMIX_") and not name.startswith("SKILLMIX_TEST_"):
                mp.delenv(name)
        mp.setenv("SKILLMIX_DATA_DIR", str(data))
        mp.setenv("SKILLMIX_DATABASE_URL", pg_url)
        mp.setenv("SKILLMIX_ALLOWED_ROOTS", str(root))
        mp.setenv("SKILLMIX_RATE_LIMIT_PER_MINUTE", "0")  # one key, as fast as it goes
        mp.setenv("SKILLMIX_MAX_ACTIVE_JOBS_PER_PROJECT", "0")  # no worker: jobs pile up
        refresh_settings()
        migrate.upgrade(pg_url)
        try:
            key = new_key("fuzz", "admin")  # an admin key reaches /v1/keys too
            with run_api() as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
                served = http.get("/openapi.json").json()
                assert served == DOCUMENT, "the fuzzed document is not the one served"
                yield {"base_url": base_url, "key": key, **seed(http, key, root)}
        finally:
            engine = create_engine(pg_url)
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE projects CASCADE"))
            engine.dispose()
    refresh_settings()


def seed(http: httpx.Client, key: str, root: Path) -> dict[str, Any]:
    # Long enough for a few batches at the default batch_tokens, so that fuzzed mixture
    # plans get past "the corpus is shorter than one batch".
    seeded = seed_project(http, key, root, "fuzz", n_docs=600, mean_chars=1500)
    spare_skills = [
        http.post(
            "/v1/skills",
            headers=auth(key),
            json={"name": f"spare-{i}", "detector": {"kind": "keywords", "keywords": ["x"]}},
        ).json()["id"]
        for i in range(2)
    ]
    # Revoked and rotated instead of the fuzzing key itself.
    spare_keys = [
        http.post("/v1/keys", headers=auth(key), json={"name": f"spare-{i}"}).json()["id"]
        for i in range(2)
    ]
    # Deletable (no active job): a dry-run mixture, and a scan and a verification whose
    # jobs were cancelled before they started.
    spare_mixture = http.post(
        "/v1/mixtures",
        headers=auth(key),
        json={
            "corpus_id": seeded["corpus"]["id"],
            "scan_id": seeded["scan"]["id"],
            "batch_tokens": 4096,
            "seq_len": 256,
            "plan": {},
            "dry_run": True,
        },
    ).json()["id"]
    spare_scan = http.post(
        "/v1/scans",
        headers=auth(key),
        json={"corpus_id": seeded["corpus"]["id"], "skill_ids": [seeded["skills"][0]["id"]]},
    ).json()
    spare_verification = http.post(
        "/v1/verifications",
        headers=auth(key),
        json={
            "arms": {"a": seeded["mixtures"][0]["id"]},
            "skill_ids": [seeded["skills"][1]["id"]],
            "sizes": ["nano"],
        },
    ).json()
    for spare in (spare_scan, spare_verification):
        cancelled = http.post(f"/v1/jobs/{spare['job']['id']}/cancel", headers=auth(key))
        assert cancelled.status_code == 200, cancelled.text
    spare_corpus = http.post(
        "/v1/corpora",
        headers=auth(key),
        json={"name": "spare", "uri": seeded["corpus"]["uri"], "format": "jsonl.gz"},
    ).json()["id"]
    return {
        "ids": {
            "job_id": seeded["job_ids"],
            "skill_id": [s["id"] for s in seeded["skills"]],
            "corpus_id": [seeded["corpus"]["id"]],
            "scan_id": [seeded["scan"]["id"]],
            "mixture_id": [m["id"] for m in seeded["mixtures"]],
            "verification_id": [seeded["verification"]["id"]],
            "name": ["report.json", "rates.png", "gaps.png"],
        },
        # Deleted and cancelled instead of the resources above, which later cases need:
        # (a cancelled mixture job would fail every verification of that mixture).
        "spares": {
            "skill_id": spare_skills,
            "corpus_id": [spare_corpus],
            "job_id": [seeded["job"]["id"], seeded["scan"]["job"]["id"]],
            "key_id": spare_keys,
            "scan_id": [spare_scan["id"]],
            "mixture_id": [spare_mixture],
            "verification_id": [spare_verification["id"]],
        },
        "corpus_uri": seeded["corpus"]["uri"],
        # The events stream of a job that is still queued never ends (no worker here):
        # stream only a finished job's events.
        "finished_job": seeded["scan"]["job"]["id"],
        "built_skill": seeded["skills"][1]["id"],
        "built_mixture": seeded["mixtures"][0]["id"],
    }


def _pick(choices: list[str], salt: str) -> str:
    return choices[zlib.crc32(salt.encode()) % len(choices)]


def use_real_ids(case: schemathesis.Case, target: dict[str, Any]) -> None:
    """For three cases in four, put ids of the seeded project where the document has ids."""
    salt = repr((case.operation.label, case.path_parameters, case.query, case.body))
    # A fixed generated key would be "reused for a different request" (422) in every
    # later case: one key per distinct case instead.
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = f"fuzz-{zlib.crc32(salt.encode()):08x}"
    if zlib.crc32(salt.encode()) % 4 == 0:
        return
    ids = target["ids"]
    destructive = case.method.upper() == "DELETE" or case.path.endswith(
        ("/cancel", "/retry", "/revoke", "/rotate")
    )
    for name in list(case.path_parameters or {}):
        pool = (target["spares"] if destructive else ids).get(name)
        if pool:
            case.path_parameters[name] = _pick(pool, salt + name)
    if case.path.endswith("/events") or case.path.endswith("/artifacts/{name}"):
        case.path_parameters["job_id"] = target["finished_job"]
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("uri"), str):
        body["uri"] = target["corpus_uri"]
    for field in ("corpus_id", "scan_id"):
        if isinstance(body.get(field), str):
            body[field] = _pick(ids[field], salt + field)
    if isinstance(body.get("skill_ids"), list) and body["skill_ids"]:
        body["skill_ids"] = [target["built_skill"]]
    if isinstance(body.get("plan"), dict) and len(body["plan"]) == 1:
        body["plan"] = {target["built_skill"]: next(iter(body["plan"].values()))}
    arms = body.get("arms")
    if isinstance(arms, dict) and arms:
        first = next(iter(arms))
        body["arms"] = {**arms, first: target["built_mixture"]}


@schema.parametrize()
def test_every_operation_conforms(case: schemathesis.Case, fuzz_target: dict[str, Any]) -> None:
    use_real_ids(case, fuzz_target)
    case.call_and_validate(
        base_url=fuzz_target["base_url"],
        headers=auth(fuzz_target["key"]),
        checks=CHECKS,
        timeout=30,
    )
