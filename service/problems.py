"""A refusal a person can act on: an HTTP status, a stable slug, a title and a detail.

The domain layer (`service.store`) raises these when a request cannot be done (not found,
a conflict, an infeasible plan); the API answers them as RFC 9457 problem documents
(`service.api.errors`). Kept apart from the API so the store does not import it.
"""

from __future__ import annotations

import math
from typing import Any


class Problem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str = "",
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.slug, self.title, self.detail, self.extra = (
            status,
            slug,
            title,
            detail,
            extra,
        )
        self.headers = headers or _default_headers(status)


def _default_headers(status: int) -> dict[str, str] | None:
    if status == 401:  # RFC 6750: the scheme to authenticate with (an API key as a token)
        return {"WWW-Authenticate": "Bearer"}
    if status == 409:  # a 409 that retrying cannot fix says so, for clients that retry conflicts
        return {"X-Should-Retry": "false"}
    return None


def not_found(what: str, ident: str) -> Problem:
    return Problem(
        404,
        "not-found",
        f"{what} not found",
        f"No {what.lower()} with id {ident!r} in this project.",
    )


def too_many_requests(
    slug: str, title: str, detail: str, retry_after: float, **extra: Any
) -> Problem:
    """A 429 whose `Retry-After` (and `retry_after` member) is whole seconds, at least 1."""
    seconds = max(1, math.ceil(retry_after))
    return Problem(
        429,
        slug,
        title,
        detail,
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
        **extra,
    )
