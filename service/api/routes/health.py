"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.deps import SessionDep, SettingsDep
from service.api.schemas import Health
from service.celery_app import get_celery
from service.settings import Settings

router = APIRouter(tags=["health"])


def _check_broker(settings: Settings) -> str:
    if settings.embedded_broker:
        folder = settings.broker_folder / "queue"
        folder.mkdir(parents=True, exist_ok=True)
        return "ok (embedded filesystem broker)"
    with get_celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)
    return "ok"


@router.get("/healthz", operation_id="health_live", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="health_ready",
    response_model=Health,
    responses={503: {"model": Health}},
)
def readyz(*, session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """The database and the broker answer."""
    checks: dict[str, str] = {}
    ok = True
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        ok, checks["database"] = False, f"error: {type(exc).__name__}: {exc}"[:300]
    try:
        checks["broker"] = _check_broker(settings)
    except Exception as exc:
        ok, checks["broker"] = False, f"error: {type(exc).__name__}: {exc}"[:300]
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
