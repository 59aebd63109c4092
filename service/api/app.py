"""The FastAPI application."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import errors, metrics, ratelimit, ui
from service.api.deps import refuse_nul_in_url
from service.api.routes import (
    corpora,
    health,
    jobs,
    keys,
    mixtures,
    scans,
    skills,
    studies,
    verifications,
)
from service.api.schemas import problem_responses
from service.auth import CallerCache, UsageThrottle
from service.logs import log_context
from service.settings import Settings, get_settings

DESCRIPTION = """Rare-skill upweighting for pretraining data: register skills, measure how
often they appear in a corpus, build reweighted and spaced mixtures, and verify by training
small models that they keep the skills. Authenticate with `Authorization: Bearer <key>`.
Errors are RFC 9457 problem details (`application/problem+json`)."""


class BodySizeLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not they declare a
    Content-Length, before the application reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # An HTTPException, so FastAPI's body parsing passes it through as is.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"The body exceeds {self.limit} bytes (SKILLMIX_MAX_BODY_BYTES)."

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = errors.problem_response(
            413,
            "payload-too-large",
            "Request body too large",
            self._detail(),
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


class RequestId:
    """Echo the caller's X-Request-ID, or make one, on every response and every log line
    written while the request is handled."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"")
        request_id = given[:128] if given else uuid.uuid4().hex.encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id))
            await send(message)

        with log_context(request_id=scope["state"]["request_id"]):
            await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="skillmix", version="0.1.0", description=DESCRIPTION)
    errors.install(app)
    # Per API key, checked in the authenticating dependency (so /healthz, /readyz and
    # /metrics are never limited); shared through Redis when the broker is Redis.
    app.state.rate_limiter = ratelimit.from_settings(settings)
    app.state.caller_cache = CallerCache(settings.auth_cache_seconds)
    app.state.key_usage = UsageThrottle()  # last_used_at: one write a minute per key
    app.include_router(health.router)
    app.include_router(metrics.router)
    for module in (jobs, skills, corpora, scans, mixtures, verifications, studies):
        app.include_router(
            module.router,
            dependencies=[Depends(refuse_nul_in_url)],
            responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 503),
        )
    app.include_router(
        keys.router,
        dependencies=[Depends(refuse_nul_in_url)],
        responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    )
    ui.install(app, settings)  # the /ui pages, after errors.install (their error pages)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestId)
    app.add_middleware(metrics.RequestMetrics)
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn service.api.app:app` builds the app on first use, after settings are final.
    if name == "app":
        return create_app()
    raise AttributeError(name)
