"""Celery's worker program as `skillmix worker` runs it.

`--quiet` (which `skillmix worker` passes when logs are JSON) keeps Celery's banner off
stdout, but Celery's signal handlers still write "worker: Warm shutdown (MainProcess)" to
the terminal's stdout when SIGTERM, SIGINT or SIGQUIT stops the worker, with a raw
`os.write` that no logging configuration sees. Quiet, this worker installs the same
handlers without that line (and without the "Hitting Ctrl+C again" hint of the first
SIGINT) and logs the notice instead, like every other line. Left as Celery has them: the
hints of a cold shutdown (SIGQUIT, or a second Ctrl+C), meant for a person at a terminal.
"""

from __future__ import annotations

from typing import Any

from celery.apps import worker as celery_worker
from celery.signals import worker_shutting_down

from service.logs import log_in_signal_handler


class Worker(celery_worker.Worker):
    def install_platform_tweaks(self, worker: Any) -> None:
        super().install_platform_tweaks(worker)
        if not self.quiet:
            return
        celery_worker.install_worker_term_handler(worker, verbose=False)
        celery_worker.install_worker_term_hard_handler(worker, verbose=False)
        celery_worker.install_worker_int_handler(worker, verbose=False, callback=_on_sigint)
        worker_shutting_down.connect(_notice, weak=False, dispatch_uid="skillmix-shutdown-notice")


def _on_sigint(worker: Any) -> None:
    # Celery's on_SIGINT without its hint: a second SIGINT is a cold shutdown.
    celery_worker.install_worker_term_hard_handler(worker, sig="SIGINT", verbose=False)


def _notice(sig: str, how: str, **_: Any) -> None:
    # Runs inside the signal handler, in the middle of whatever the main thread was doing.
    log_in_signal_handler("celery.apps.worker", f"worker: {how} shutdown (MainProcess) on {sig}")
