"""The `skillmix_client` logger; `SKILLMIX_LOG=debug` (or `info`) prints it to stderr."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("skillmix_client")


def setup_from_env() -> None:
    level = os.environ.get("SKILLMIX_LOG", "").strip().upper()
    if level not in ("DEBUG", "INFO") or log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
