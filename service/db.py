"""Engine and session factory. SQLite (embedded) and PostgreSQL (production) alike."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from service.settings import get_settings


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        # The API and the worker are separate processes writing one file: WAL lets readers
        # run beside the writer, busy_timeout makes writers queue instead of failing.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().effective_database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error (for workers and the CLI)."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_transient(exc: BaseException) -> bool:
    """Whether the same statement may well succeed a moment later: a dropped or refused
    connection, a lock or serialization timeout (OperationalError: PostgreSQL's connection
    and deadlock errors, SQLite's "database is locked"), any error that invalidated its
    connection, or no free connection in the pool. A bad statement or a constraint
    violation is not."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError)
    return isinstance(exc, PoolTimeoutError)


def describe_error(exc: BaseException) -> str:
    """A database error in one line, for logs: its class and the driver's message (which
    often spans several lines)."""
    return " ".join(f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}".split())


def _fresh_pool_after_fork() -> None:
    """A forked child (a Celery prefork pool process replacing one that died, a datatrove
    or multiprocessing fork) must not use the connections its parent has open: two
    processes on one socket corrupt both sides' queries. SQLAlchemy's recipe: the child
    starts an empty pool and leaves the parent's connections alone."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)


os.register_at_fork(after_in_child=_fresh_pool_after_fork)


def reset_engine_cache() -> None:
    """Forget the cached engine (tests and the CLI change settings between runs)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
