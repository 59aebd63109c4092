"""RFC 9457 problem details: every error is `application/problem+json` with a stable `type`."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.db import describe_error, is_transient
from service.logs import log_context
from service.problems import Problem, not_found, too_many_requests

__all__ = ["Problem", "not_found", "too_many_requests"]

log = logging.getLogger("skillmix.api")

PROBLEM_JSON = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 5
"""Retry-After of a 503 for a database that cannot be reached: a restart or a failover takes
seconds; a client's few retries at this pace span most such blips."""

# Stable problem types by HTTP status, for errors raised by the framework itself.
_STATUS_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


def problem_type(slug: str) -> str:
    return f"urn:skillmix:problem:{slug}"


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str = "",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": problem_type(slug), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                400,
                "malformed-json",
                "Malformed JSON",
                "The request body is not valid JSON: " + "; ".join(e["msg"] for e in errors),
                instance=request.url.path,
            )
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return problem_response(
            422,
            "validation-error",
            "Invalid request",
            detail,
            instance=request.url.path,
            errors=json.loads(json.dumps(errors, default=str)),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _STATUS_TYPES.get(exc.status_code, "error")
        title = slug.replace("-", " ").capitalize()
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return problem_response(
            exc.status_code,
            slug,
            title,
            detail,
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not is_transient(exc):
            raise exc  # a bad statement is a bug: the 500 below
        # Inside the app's middleware (unlike `_unexpected`): the line names the request.
        log.warning(
            "database unavailable on %s %s: %s",
            request.method,
            request.url.path,
            describe_error(exc)[:300],
        )
        return problem_response(
            503,
            "database-unavailable",
            "Database unavailable",
            "The database cannot be reached right now; retry after Retry-After seconds.",
            instance=request.url.path,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
            retry_after=DATABASE_RETRY_AFTER_SECONDS,
        )

    # `is_transient` errors: a dropped or refused connection, a lock timeout, a full pool.
    app.add_exception_handler(DBAPIError, _database_unavailable)
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this outside the app's middleware, so outside RequestId's log context.
        with log_context(request_id=getattr(request.state, "request_id", None)):
            log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal-error",
            "Internal server error",
            "An unexpected error occurred; it has been logged.",
            instance=request.url.path,
        )


def from_validation_error(exc: Any, where: str = "body") -> Problem:
    """A pydantic ValidationError raised in a handler, as the same 422 the framework gives."""
    errors = [
        {
            "loc": [where, *map(str, e.get("loc", ()))],
            "msg": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in exc.errors(include_url=False)
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return Problem(
        422,
        "validation-error",
        "Invalid request",
        detail,
        errors=json.loads(json.dumps(errors, default=str)),
    )
