"""Logging for `skillmix serve` and `skillmix worker`: one line per record on stderr, as text
or as JSON (`SKILLMIX_LOG_FORMAT`), at `SKILLMIX_LOG_LEVEL`.

Every line carries the context it was written in: the request id in the API, the job id,
kind and attempt in a worker. The context lives in a contextvar that the handler's filter
reads, so lines from any library (datatrove, torch, Celery itself) carry it too.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from service.settings import Settings

_context: ContextVar[dict[str, Any]] = ContextVar("skillmix_log_context")


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
    logging.config.dictConfig(logging_config(settings))
    logging.captureWarnings(True)
