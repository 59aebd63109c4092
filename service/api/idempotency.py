"""`Idempotency-Key` on POST: the first response is stored with the created resource, in
the same transaction, and replayed for every retry with the same key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.api.deps import CurrentProject, IdempotencyKey, SessionDep, SettingsDep
from service.api.errors import Problem
from service.models import IdempotencyRecord
from service.settings import Settings

Create = Callable[[], tuple[dict[str, Any], Callable[[], None] | None]]
Row = TypeVar("Row")


def _digest(path: str, payload: Any) -> str:
    canonical = json.dumps([path, payload], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(session: Session, project_id: str, key: str, digest: str) -> JSONResponse | None:
    record = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.project_id == project_id, IdempotencyRecord.key == key
        )
    )
    if record is None:
        return None
    if record.request_hash != digest:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request.",
        )
    return JSONResponse(
        record.response_body,
        status_code=record.status_code,
        headers={"Idempotent-Replayed": "true"},
    )


def create_once(
    session: Session,
    request: Request,
    body: BaseModel,
    *,
    project_id: str,
    key: str | None,
    status_code: int,
    create: Create,
) -> JSONResponse:
    """Run `create` (which adds rows and returns the response body and an after-commit
    hook) unless this key was seen; commit; then run the hook (e.g. enqueue the job)."""
    path = request.url.path
    digest = _digest(path, body.model_dump(mode="json"))
    if key and (replayed := _replay(session, project_id, key, digest)):
        return replayed
    response_body, after_commit = create()
    if key:
        session.add(
            IdempotencyRecord(
                project_id=project_id,
                key=key,
                method="POST",
                path=path,
                request_hash=digest,
                status_code=status_code,
                response_body=response_body,
            )
        )
    try:
        session.commit()
    except IntegrityError:
        # A concurrent retry with the same key won the race: answer with its response.
        session.rollback()
        if key and (replayed := _replay(session, project_id, key, digest)):
            return replayed
        raise
    if after_commit:
        after_commit()
    return JSONResponse(response_body, status_code=status_code)


class CreateOnce:
    """The create of a POST route, run once per `Idempotency-Key` (a route's dependency):

        return create(body, lambda: scans.start_scan(...), present=..., status_code=202)

    `make` adds the rows through the store and returns the new row and an after-commit
    hook (or None); `present` turns the row into the response model. The rows, the
    idempotency record and the response commit together; the hook runs after the commit.
    """

    def __init__(
        self,
        request: Request,
        session: Session,
        project_id: str,
        settings: Settings,
        key: str | None,
    ) -> None:
        self.request, self.session, self.project_id = request, session, project_id
        self.settings, self.key = settings, key

    def __call__(
        self,
        body: BaseModel,
        make: Callable[[], tuple[Row, Callable[[], None] | None]],
        present: Callable[[Session, Row], BaseModel],
        *,
        status_code: int,
    ) -> JSONResponse:
        def create() -> tuple[dict[str, Any], Callable[[], None] | None]:
            row, after_commit = make()
            return present(self.session, row).model_dump(mode="json"), after_commit

        return create_once(
            self.session,
            self.request,
            body,
            project_id=self.project_id,
            key=self.key,
            status_code=status_code,
            create=create,
        )


def create_once_dep(
    request: Request,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> CreateOnce:
    return CreateOnce(request, session, project.id, settings, idempotency_key)


CreateOnceDep = Annotated[CreateOnce, Depends(create_once_dep)]
