"""Alembic: upgrade, downgrade to base, upgrade again, on SQLite and on PostgreSQL; and the
models never drift from the migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from service import migrate
from service.db import make_engine
from service.models import Base

TABLES = {
    "projects",
    "api_keys",
    "jobs",
    "idempotency_keys",
    "skills",
    "skill_versions",
    "corpora",
    "scans",
    "mixtures",
    "verifications",
    "verification_runs",
    "training_runs",
}


def roundtrip(url: str) -> None:
    migrate.upgrade(url)
    migrate.downgrade(url, "base")
    engine = make_engine(url)
    assert TABLES.isdisjoint(inspect(engine).get_table_names())
    migrate.upgrade(url)
    assert set(inspect(make_engine(url)).get_table_names()) >= TABLES
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"
    assert migrate.current(url) is not None


def test_roundtrip_sqlite(env: object, tmp_path) -> None:  # type: ignore[no-untyped-def]
    roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_roundtrip_postgres(pg_db: str) -> None:
    roundtrip(pg_db)
