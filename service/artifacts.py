"""Deferred artifacts: files a job lists before they exist, drawn after its result is stored.

A handler lists such a file with `ctx.add_artifact(..., deferred=True)` (its size is null);
the kind's `follow_up` draws it right after the job succeeded (`draw_deferred`), and a
download that comes first draws it too. Which files a kind defers, and how they are drawn
from its stored result, is the kind's entry in `DRAWERS`.

Drawing takes seconds (a scan's plots of 50 skills), so it runs in no transaction: one
short session reads the job, the files are drawn, and another locks the row to record
their sizes. Files are written atomically and sizes read back from disk under that lock,
so two drawing at once (the worker and a download) agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from curation.scan_plots import SCAN_PLOTS, draw_scan_plots
from service.db import session_scope
from service.models import Job, JobState

Draw = Callable[[dict[str, Any], Path, list[str]], None]
"""Draws the named deferred artifacts into a folder, from the job's stored result."""


def _draw_scan_plots(result: dict[str, Any], folder: Path, names: list[str]) -> None:
    draw_scan_plots(result, str(folder), [name for name in names if name in SCAN_PLOTS])


DRAWERS: dict[str, Draw] = {"scan": _draw_scan_plots}


def draw_deferred(job_id: str, result: dict[str, Any] | None = None) -> None:
    """Draw a succeeded job's deferred artifacts that are not on disk yet, from `result`
    (default: its stored result), and record their sizes. A `JobKind.follow_up`."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.succeeded.value or job.kind not in DRAWERS:
            return
        kind, stored = job.kind, job.result or {}
        pending = [a for a in job.artifacts or [] if a.get("size") is None]
    if not pending:
        return
    missing = [a for a in pending if not Path(a["path"]).is_file()]
    if missing:
        folder = Path(missing[0]["path"]).parent
        names = [a["name"] for a in missing]
        DRAWERS[kind](result if result is not None else stored, folder, names)
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        assert job is not None
        job.artifacts = [
            {**a, "size": Path(a["path"]).stat().st_size}
            if a.get("size") is None and Path(a["path"]).is_file()
            else a
            for a in job.artifacts or []
        ]
