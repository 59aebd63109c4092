"""Dependencies shared by the routes, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session

from service.api.errors import Problem, too_many_requests
from service.auth import api_key_for
from service.db import get_sessionmaker
from service.models import Project
from service.settings import Settings, get_settings


def get_db() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_current_project(
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Project:
    """The project of the request's API key, after the key's rate limit."""
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
    api_key = api_key_for(session, key.strip())
    project = session.get(Project, api_key.project_id) if api_key else None
    if api_key is None or project is None:
        raise Problem(401, "unauthorized", "Invalid API key", "The key is unknown or revoked.")
    check_rate(request, api_key.id)
    return project


def check_rate(request: Request, key_id: str) -> None:
    """429 when this API key is over SKILLMIX_RATE_LIMIT_PER_MINUTE (the app's limiter)."""
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    decision = limiter.hit(key_id)
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


CurrentProject = Annotated[Project, Depends(get_current_project)]


class PageParams:
    def __init__(
        self,
        settings: SettingsDep,
        limit: Annotated[int, Query(ge=1, description="Page size.")] = 50,
        after: Annotated[
            str | None,
            Query(
                max_length=64,
                description="Return items after this id (the previous page's `next_after`).",
            ),
        ] = None,
    ) -> None:
        if limit > settings.max_page_size:
            msg = f"limit must be at most {settings.max_page_size}"
            raise Problem(
                422,
                "validation-error",
                "Invalid request",
                f"query.limit: {msg}",
                errors=[{"loc": ["query", "limit"], "msg": msg, "type": "less_than_equal"}],
            )
        self.limit, self.after = limit, after


PageDep = Annotated[PageParams, Depends()]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retries of a POST with the same key return the first response.",
    ),
]
