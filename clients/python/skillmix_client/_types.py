"""Small shared types: the NOT_GIVEN sentinel and the timeout argument."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx


class NotGiven:
    """Marks an argument the caller left out, where `None` is a meaningful value (PATCH:
    `generator=None` removes the generator; leaving it out keeps it)."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()

Timeout = float | httpx.Timeout | None


def body_of(fields: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON body from keyword arguments: NOT_GIVEN is left out, `extra` is merged last
    (for fields the server has and this SDK does not know yet)."""
    body = {k: v for k, v in fields.items() if not isinstance(v, NotGiven)}
    body.update(extra or {})
    return body
