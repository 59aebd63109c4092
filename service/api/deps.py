"""Dependencies shared by the routes, as `Annotated` aliases."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.api import errors
from service.api.errors import Problem, too_many_requests
from service.api.ratelimit import Decision, RateLimiter
from service.auth import (
    Caller,
    CallerCache,
    ProjectRef,
    UsageThrottle,
    caller_for,
    hash_key,
    record_use,
)
from service.db import get_sessionmaker
from service.settings import Settings, get_settings

log = logging.getLogger("skillmix.api")


async def get_db() -> AsyncIterator[Session]:
    # Async, so FastAPI does not hand off to a thread just to make the session (that does
    # no I/O); closing it returns its connection to the pool, which talks to the database,
    # so that part runs in a thread.
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        await run_in_threadpool(session.close)


async def settings_dep() -> Settings:
    return get_settings()


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(settings_dep)]


# The API's security scheme in the OpenAPI document: every operation that depends on
# `get_current_project` lists it. auto_error=False: the 401s stay our problem details.
api_key_scheme = HTTPBearer(
    scheme_name="ApiKey",
    description="An API key (`skillmix keys create --project NAME`), sent as "
    "`Authorization: Bearer <key>`.",
    auto_error=False,
)


def bearer_key(authorization: str | None) -> str:
    """The key of an `Authorization: Bearer <key>` header, or 401."""
    if not authorization:
        raise Problem(
            401,
            "unauthorized",
            "Missing API key",
            "Send 'Authorization: Bearer <key>'; create a key with "
            "'skillmix keys create --project NAME'.",
        )
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(
            401,
            "unauthorized",
            "Malformed Authorization header",
            "Expected 'Authorization: Bearer <key>'.",
        )
    return key.strip()


def _lookup_caller(key: str) -> Caller | None:
    with get_sessionmaker()() as session:
        return caller_for(session, key)


def _record_use(key_id: str) -> None:
    """Write a key's last_used_at; a failure is logged (by key id) and never fails the
    request."""
    try:
        with get_sessionmaker()() as session:
            record_use(session, key_id)
            session.commit()
    except Exception:
        log.warning("could not record the use of API key %s", key_id, exc_info=True)


async def get_current_project(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(api_key_scheme)],
) -> ProjectRef:
    """The project of the request's API key, after the key's rate limit.

    Keys verified in the last SKILLMIX_AUTH_CACHE_SECONDS come from the app's cache; only
    a miss queries the database. Blocking calls (that query, the Redis rate limiter, the
    once-a-minute write of the key's last_used_at) run in a thread, off the event loop; a
    cache hit with the in-process limiter needs none. The caller (key id, role) is left in
    `request.state.caller` for `AdminCaller`."""
    header = request.headers.get("Authorization")
    # No usable bearer credentials: bearer_key raises the 401 for a missing or malformed one.
    key = credentials.credentials if credentials else bearer_key(header)
    return await authenticate(request, key)


async def authenticate(request: Request, key: str) -> ProjectRef:
    """The project of API key `key`, after its rate limit (401 or 429 otherwise): the one
    check every caller passes, a bearer header's key or the key of a /ui session."""
    key_hash = hash_key(key)
    cache: CallerCache | None = getattr(request.app.state, "caller_cache", None)
    caller = cache.get(key_hash) if cache else None
    if caller is None:
        caller = await run_in_threadpool(_lookup_caller, key)
        if caller is None:
            raise Problem(
                401, "unauthorized", "Invalid API key", "The key is unknown, revoked or expired."
            )
        if cache:
            cache.put(key_hash, caller)
    usage: UsageThrottle | None = getattr(request.app.state, "key_usage", None)
    if usage is not None and usage.due(caller.key_id):
        await run_in_threadpool(_record_use, caller.key_id)
    request.state.caller = caller
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        if limiter.blocking:
            decision = await run_in_threadpool(limiter.hit, caller.key_id)
        else:
            decision = limiter.hit(caller.key_id)
        refuse_if_limited(limiter, decision)
    return caller.project


def refuse_if_limited(limiter: RateLimiter, decision: Decision) -> None:
    """429 when the API key is over SKILLMIX_RATE_LIMIT_PER_MINUTE."""
    if not decision.allowed:
        per_minute = limiter.rate.per_minute
        raise too_many_requests(
            "rate-limited",
            "Rate limit exceeded",
            f"This API key is over its limit of {per_minute} requests a minute "
            "(SKILLMIX_RATE_LIMIT_PER_MINUTE); retry after Retry-After seconds.",
            decision.retry_after,
            limit_per_minute=per_minute,
        )


CurrentProject = Annotated[ProjectRef, Depends(get_current_project)]


async def get_admin_caller(request: Request, project: CurrentProject) -> Caller:
    """The request's key, if it is an admin key of its project; 403 otherwise."""
    caller: Caller = request.state.caller
    if caller.role != "admin":
        raise Problem(
            403,
            "admin-key-required",
            "Admin key required",
            "Managing API keys needs an admin key of this project "
            "('skillmix keys create --project NAME --admin').",
        )
    return caller


AdminCaller = Annotated[Caller, Depends(get_admin_caller)]


class PageParams:
    """`?limit=N&after=<id>`, checked against SKILLMIX_MAX_PAGE_SIZE."""

    def __init__(self, limit: int, after: str | None) -> None:
        self.limit, self.after = limit, after


async def page_params(
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, description="Page size.")] = 50,
    after: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Return items after this id (the previous page's `next_after`).",
        ),
    ] = None,
) -> PageParams:
    if limit > settings.max_page_size:
        msg = f"limit must be at most {settings.max_page_size}"
        raise Problem(
            422,
            "validation-error",
            "Invalid request",
            f"query.limit: {msg}",
            errors=[{"loc": ["query", "limit"], "msg": msg, "type": "less_than_equal"}],
        )
    return PageParams(limit, after)


PageDep = Annotated[PageParams, Depends(page_params)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retries of a POST with the same key return the first response.",
    ),
]


async def refuse_nul_in_url(request: Request) -> None:
    """422 for a NUL character in a path or query parameter: PostgreSQL text cannot hold
    one, so no id or cursor can contain it, and the query would fail with a 500."""
    params = [("path", k, v) for k, v in request.path_params.items()]
    params += [("query", k, v) for k, v in request.query_params.multi_items()]
    for where, name, value in params:
        if "\x00" in str(value):
            msg = "text must not contain NUL (\\u0000) characters"
            raise errors.Problem(
                422,
                "validation-error",
                "Invalid request",
                f"{where}.{name}: {msg}",
                errors=[{"loc": [where, name], "msg": msg, "type": "value_error"}],
            )
