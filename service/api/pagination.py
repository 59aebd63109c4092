"""Keyset pagination, newest first: `?limit=N&after=<id>`; ids sort by creation time."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from service.api.deps import PageParams

T = TypeVar("T")


def paginate(
    session: Session, stmt: Select[Any], id_column: Any, page: PageParams
) -> tuple[list[Any], str | None]:
    """Return one page of rows and the id to pass as `after` for the next (None at the end)."""
    if page.after:
        stmt = stmt.where(id_column < page.after)
    rows = list(session.scalars(stmt.order_by(id_column.desc()).limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, (rows[-1].id if more and rows else None)
