"""Keyset pagination, newest first: `?limit=N&after=<id>`; ids sort by creation time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

from service.api.deps import PageParams


def paginate(
    session: Session,
    stmt: Select[Any],
    id_column: Any,
    page: PageParams,
    render: Callable[[Any], Any],
    prefetch: Callable[[list[Any]], None] | None = None,
) -> dict[str, Any]:
    """One page `{"data", "has_more", "next_after"}`: rows rendered by `render`, and the id
    to pass as `after` for the next page (None at the end). `prefetch`, given the page's
    rows before they are rendered, can load what rendering needs in one query."""
    if page.after:
        stmt = stmt.where(id_column < page.after)
    rows = list(session.scalars(stmt.order_by(id_column.desc()).limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    if prefetch:
        prefetch(rows)
    return {
        "data": [render(r) for r in rows],
        "has_more": more,
        "next_after": rows[-1].id if more and rows else None,
    }
