"""The /ui pages without a browser: the session cookie, where sign-in may send the browser
back to, the helpers behind the pages (highlighting, number formatting, composition bins).
The pages in a real browser: test_ui_browser.py; their security: tests/reliability/
test_security.py (the /ui part of the matrix)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from curation.mixture.format import COMPOSITION
from service.api.app import create_app
from service.api.ui.app import fmt
from service.api.ui.views import _safe_next, composition, highlight, mixture_body
from service.cli.embedded import refresh_settings
from tests.service.conftest import new_key


def sign_in(client: TestClient, key: str, next_path: str = "/ui") -> object:
    page = client.get("/ui/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    return client.post(
        "/ui/sign-in",
        data={"key": key, "csrf_token": token.group(1), "next": next_path},
        follow_redirects=False,
    )


def test_the_session_cookie_is_signed_httponly_strict_and_expires(
    sqlite_db: str, env: pytest.MonkeyPatch
) -> None:
    env.setenv("SKILLMIX_UI_SECRET", "s3cret")
    env.setenv("SKILLMIX_UI_SESSION_SECONDS", "2")
    refresh_settings()
    key = new_key("p")
    with TestClient(create_app()) as client:
        r = sign_in(client, key, "/ui/skills")
        assert r.status_code == 303 and r.headers["location"] == "/ui/skills"  # type: ignore[attr-defined]
        cookie = r.headers["set-cookie"]  # type: ignore[attr-defined]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert "Max-Age=2" in cookie and "Secure" not in cookie  # plain http on loopback
        assert client.get("/ui/skills").status_code == 200
        # Signed: the payload changed by one character is no session.
        value = client.cookies.get("skillmix_ui")
        assert value
        client.cookies.clear()
        client.cookies.set(
            "skillmix_ui", value[:5] + ("A" if value[5] != "A" else "B") + value[6:], path="/ui"
        )
        assert client.get("/ui/skills", follow_redirects=False).status_code == 303
        client.cookies.clear()
        client.cookies.set("skillmix_ui", value, path="/ui")
        assert client.get("/ui/skills").status_code == 200
        time.sleep(3.1)  # older than SKILLMIX_UI_SESSION_SECONDS
        r2 = client.get("/ui/skills", follow_redirects=False)
        assert r2.status_code == 303 and r2.headers["location"].startswith("/ui/sign-in")
    # Another process with the same secret reads the session; with another secret it does not.
    env.setenv("SKILLMIX_UI_SESSION_SECONDS", "600")
    refresh_settings()
    with TestClient(create_app()) as first:
        sign_in(first, key)
        value = first.cookies.get("skillmix_ui")
    with TestClient(create_app()) as second:
        second.cookies.set("skillmix_ui", value, path="/ui")
        assert second.get("/ui").status_code == 200
    env.setenv("SKILLMIX_UI_SECRET", "other")
    refresh_settings()
    with TestClient(create_app()) as third:
        third.cookies.set("skillmix_ui", value, path="/ui")
        assert third.get("/ui", follow_redirects=False).status_code == 303


def test_without_a_secret_the_process_makes_one_and_says_so(
    sqlite_db: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.api.ui import session

    monkeypatch.setattr(session, "_process_secret", None)
    with caplog.at_level("WARNING", logger="skillmix.ui"):
        create_app()
        create_app()
    assert caplog.text.count("SKILLMIX_UI_SECRET is unset") == 1
    assert session._process_secret and len(session._process_secret) >= 32


def test_sign_in_sends_the_browser_back_only_inside_ui() -> None:
    assert _safe_next("/ui/scans/scan_1?x=1") == "/ui/scans/scan_1?x=1"
    for target in ("//evil.example/ui", "https://evil.example/ui", "/v1/jobs", "", "/ui\\@x"):
        assert _safe_next(target) == "/ui", target


def test_highlight_cuts_the_text_into_plain_and_matched_pieces() -> None:
    text = "a cmp 1 2 : < b cmp 3 4 : < c"
    matches = [
        {"start": 16, "end": 27, "text": "cmp 3 4 : <"},
        {"start": 2, "end": 13, "text": "cmp 1 2 : <"},
        {"start": 4, "end": 9, "text": "overlapping"},
    ]
    pieces = highlight(text, matches)
    assert "".join(p["text"] for p in pieces) == text
    assert [p["text"] for p in pieces if p["match"]] == ["cmp 1 2 : <", "cmp 3 4 : <"]
    assert highlight("", []) == [] and highlight("plain", []) == [{"text": "plain", "match": None}]


def test_fmt_rounds_as_the_tables_show_numbers() -> None:
    assert [fmt(7), fmt(7.0), fmt(0.123456), fmt(1234.56), fmt(None), fmt(1e-5)] == [
        "7", "7", "0.123", "1234.6", "–", "1e-05",
    ]  # fmt: skip
    assert fmt(0.5, 2) == "0.5" and fmt(True) == "True" and fmt("x") == "x"


def test_composition_bins_batches_into_at_most_points(tmp_path: Path) -> None:
    rows = [
        {"batch": b, "skills": {"s": {"planned": b % 3, "count": b % 2, "sequences": []}}}
        for b in range(10)
    ]
    (tmp_path / COMPOSITION).write_text("".join(json.dumps(r) + "\n" for r in rows))
    whole = composition(str(tmp_path), ["s", "absent"], points=100)
    assert whole["n_batches"] == 10 and whole["bin_batches"] == 1
    assert whole["skills"]["s"]["planned"] == [b % 3 for b in range(10)]
    assert whole["skills"]["s"]["placed"] == [b % 2 for b in range(10)]
    assert whole["skills"]["absent"]["placed"] == [0] * 10
    binned = composition(str(tmp_path), ["s"], points=4)
    assert binned["bin_batches"] == 3 and binned["batch"] == [0, 3, 6, 9]
    assert binned["skills"]["s"]["placed"] == [1 / 3, 2 / 3, 1 / 3, 1.0]
    # Binned means keep the total: mean x bin size, summed, is the sum.
    sizes = [3, 3, 3, 1]
    total = sum(m * n for m, n in zip(binned["skills"]["s"]["planned"], sizes, strict=True))
    assert total == pytest.approx(sum(b % 3 for b in range(10)))


def test_the_mixture_form_passes_a_pool_size_into_the_plan() -> None:
    fields = {"corpus_id": ["corpus_1"], "scan_id": ["scan_1"], "skill_id": ["skill_1"],
              "target_kind": ["per_batch"], "target_value": ["2"], "source": ["synthesize"],
              "pool_size": ["40"]}  # fmt: skip
    body = mixture_body(fields, dry_run=True)
    assert body.plan["skill_1"].pool_size == 40
    assert (
        mixture_body({**fields, "pool_size": [""]}, dry_run=True).plan["skill_1"].pool_size is None
    )
