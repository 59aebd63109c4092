"""The /ui session: a signed cookie (HttpOnly, SameSite=Strict) holding the browser's API key
and its CSRF token, and the checks every page and form makes with it.

The cookie is signed (itsdangerous), not encrypted: it holds the key the person typed, in
their own browser, which JavaScript cannot read (HttpOnly) and other sites cannot send
(SameSite=Strict). The key is checked on every request exactly as a bearer key is
(`service.api.deps.authenticate`: revocation, expiry, rate limit), so a revoked key ends
its sessions within SKILLMIX_AUTH_CACHE_SECONDS.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from service.auth import ProjectRef
from service.settings import Settings

log = logging.getLogger("skillmix.ui")

COOKIE = "skillmix_ui"
CSRF_FIELD = "csrf_token"
_SALT = "skillmix-ui-session"
# One random secret per process when SKILLMIX_UI_SECRET is unset (the embedded default).
_process_secret: str | None = None


def _secret(settings: Settings) -> str:
    global _process_secret
    if settings.ui_secret is not None:
        return settings.ui_secret.get_secret_value()
    if _process_secret is None:
        _process_secret = secrets.token_urlsafe(32)
        log.warning(
            "SKILLMIX_UI_SECRET is unset: /ui sessions are signed with a random secret of "
            "this process; they end when it stops and work on this process only. Set one "
            "secret for every API process in production."
        )
    return _process_secret


class Signer:
    """Reads and writes the session cookie of one app."""

    def __init__(self, settings: Settings) -> None:
        self.serializer = URLSafeTimedSerializer(_secret(settings), salt=_SALT)
        self.max_age = settings.ui_session_seconds

    def read(self, request: Request) -> UiSession | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self.serializer.loads(raw, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        key = data.get("k")
        return UiSession(key=key if isinstance(key, str) and key else None, csrf=data["c"])

    def write(self, request: Request, response: Response, session: UiSession) -> None:
        response.set_cookie(
            COOKIE,
            self.serializer.dumps({"k": session.key or "", "c": session.csrf}),
            max_age=self.max_age,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")


@dataclass(frozen=True)
class UiSession:
    key: str | None
    csrf: str

    @classmethod
    def anonymous(cls) -> UiSession:
        return cls(key=None, csrf=secrets.token_urlsafe(32))

    def csrf_ok(self, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given, self.csrf)


@dataclass(frozen=True)
class Viewer:
    """A signed-in browser: its project (as the API resolves the key) and CSRF token."""

    project: ProjectRef
    csrf: str


class SignInRequired(Exception):
    """No (valid) session: pages redirect to the sign-in page, other requests answer 401."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class CsrfRefused(Exception):
    """A form posted without this session's CSRF token."""
