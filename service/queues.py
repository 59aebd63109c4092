"""Which Celery queue each job kind runs on: a static table, so the API (which sends jobs)
knows a kind's queue without importing the worker's handlers (and torch with them).

`curation` (scans, mixtures) is CPU work; `training` (verifications) wants a GPU. The
worker checks at import that every handler it has is listed here (service.worker.kinds).
"""

from __future__ import annotations

CURATION = "curation"
TRAINING = "training"
QUEUES = (CURATION, TRAINING)

KIND_QUEUES: dict[str, str] = {
    "sleep": CURATION,
    "scan": CURATION,
    "mixture": CURATION,
    "verification": TRAINING,
    # the analysis of a finished verification's runs: a few seconds of scipy, no torch
    "study": CURATION,
}
"""Job kind -> the queue its jobs go to unless a create asks for another."""

JOB_KINDS = tuple(KIND_QUEUES)
