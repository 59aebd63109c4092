"""Logging for `skillmix serve` and `skillmix worker`: one line per record on stderr, as text
or as JSON (`SKILLMIX_LOG_FORMAT`), at `SKILLMIX_LOG_LEVEL`.

Every line carries the context it was written in: the request id in the API, the job id,
kind and attempt in a worker. The context lives in a contextvar that the handler's filter
reads, so lines from any library (datatrove, torch, Celery itself) carry it too. Processes
that a job spawns (a verification's training runs) start with Python's defaults: they run
`child_setup()` first to log the same way, in the job's context.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from functools import partial
from typing import Any

from service.settings import Settings

_context: ContextVar[dict[str, Any]] = ContextVar("skillmix_log_context")
_applied: dict[str, Any] | None = None
"""The configuration `setup_logging` applied in this process (passed on to its children)."""


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line written inside the block (in this thread or task)."""
    token = _context.set({**_context.get({}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.context = _context.get({})
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", None)
        if not context:
            return line
        first, nl, rest = line.partition("\n")
        fields = " ".join(f"{k}={v}" for k, v in context.items())
        return f"{first} [{fields}]{nl}{rest}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict; uvicorn applies it in each of its worker processes."""
    formatter = "JsonFormatter" if settings.log_format == "json" else "TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {"default": {"()": f"{__name__}.{formatter}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["context"],
            }
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        # uvicorn's own loggers go through the root handler, not uvicorn's formatters.
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": "NOTSET"}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def setup_logging(settings: Settings) -> None:
    _apply(logging_config(settings))


def _apply(config: dict[str, Any]) -> None:
    global _applied
    _applied = config
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


def child_setup() -> Callable[[], None] | None:
    """What a spawned process runs first to log like this one: the same format, level and
    stream, its print() and stderr output as log lines, and the context of the caller (in a
    job: its id, kind and attempt) on every line. Picklable, for a pool's initializer. None
    if this process's logging was not set up by `setup_logging`."""
    if _applied is None:
        return None
    return partial(_setup_child, _applied, _context.get({}))


def _setup_child(config: dict[str, Any], context: dict[str, Any]) -> None:
    from celery.utils.log import LoggingProxy

    _apply(config)
    _context.set(dict(context))
    # As in the worker's own processes (Celery's redirect_stdouts, under the same name).
    sys.stdout = sys.stderr = LoggingProxy(logging.getLogger("celery.redirected"), logging.WARNING)


def redirect_loguru() -> None:
    """Point loguru (datatrove's logger) at the current sys.stderr. It took the stream when
    it was imported, before a worker redirected stderr into logging; datatrove points it
    again at each rank it runs in this process, but not for what it logs around them."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr)


def log_in_signal_handler(name: str, message: str, level: int = logging.INFO) -> None:
    """Log from inside a signal handler: formatted by the root handler like every other line,
    but written to stderr with a single os.write. The handler's own stream may be in the middle
    of the write the signal interrupted, and writing into it again there can raise."""
    logger = logging.getLogger(name)
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(name, level, __file__, 0, message, (), None)
    ContextFilter().filter(record)
    handlers = logging.getLogger().handlers
    line = handlers[0].format(record) if handlers else message
    os.write(2, f"{line}\n".encode())
