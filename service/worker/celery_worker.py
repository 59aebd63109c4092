"""Celery's worker program as `skillmix worker` runs it.

`--quiet` (which `skillmix worker` passes when logs are JSON) keeps Celery's banner off
stdout, but Celery's signal handlers still write "worker: Warm shutdown (MainProcess)" to
the terminal's stdout when SIGTERM, SIGINT or SIGQUIT stops the worker, with a raw
`os.write` that no logging configuration sees. Quiet, this worker installs the same
handlers without that line (and without the "Hitting Ctrl+C again" hint of the first
SIGINT) and logs the notice instead, like every other line. Left as Celery has them: the
hints of a cold shutdown (SIGQUIT, or a second Ctrl+C), meant for a person at a terminal.

A worker that `service.cli.embedded.start_worker` started (`skillmix serve --embedded`, the demo,
the tests) also watches the process that started it, and stops itself when that process is
gone, even if it was SIGKILLed and so could not stop its workers (`watch_parent`). A
production `skillmix worker` does not: its supervisor owns its lifetime.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from celery.apps import worker as celery_worker
from celery.signals import worker_shutting_down

from service.logs import log_in_signal_handler

# The pid of the process that started this worker, set by `service.cli.embedded.start_worker`
# in the environment of the workers it starts; a worker started otherwise has none.
PARENT_PID_ENV = "SKILLMIX_WORKER_PARENT_PID"
# How long a worker gets for its warm shutdown (finishing the task at hand) before its whole
# process group is SIGKILLed: by `service.cli.embedded.stop_workers`, or by `watch_parent`.
WARM_SHUTDOWN_TIMEOUT = 20.0

log = logging.getLogger("skillmix.worker")


class Worker(celery_worker.Worker):
    def on_start(self) -> None:
        # Celery's (and our) signal handlers are in place once this returns, so the SIGTERM
        # that the watch sends is the warm shutdown it would be from outside.
        super().on_start()
        if parent := os.environ.get(PARENT_PID_ENV):
            watch_parent(int(parent))

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


def watch_parent(
    parent_pid: int, timeout: float = WARM_SHUTDOWN_TIMEOUT, interval: float = 1.0
) -> threading.Thread:
    """Stop this worker when it is no longer the child of `parent_pid`: SIGTERM to itself
    (Celery's warm shutdown, as `service.cli.embedded.stop_workers` would send it), then, if it is
    still there `timeout` seconds later (a long task), SIGKILL to its process group: itself,
    its pool processes and any training processes a verification started.

    Why a thread that polls getppid() and not prctl(PR_SET_PDEATHSIG, SIGTERM):
    - the death signal fires when the *thread* that forked the child exits, not the process:
      a worker started from a helper thread would be stopped as soon as that thread ends,
      and nothing keeps the callers of `start_worker` on the main thread;
    - it must be set between fork and exec, in a `preexec_fn`, which Python documents as
      unsafe in a process that has threads (the starting process may well have some);
    - it is Linux only, and it is lost if the parent dies before the child calls prctl, so a
      getppid() check is needed anyway;
    - it only sends the signal: nothing ends a warm shutdown that does not end.
    The parent's pid comes from the parent (not from our first getppid()), so a parent that
    died before this watch started is noticed; and it is compared for equality rather than
    with 1, so a reparenting to a subreaper (systemd --user, a container's init) is noticed
    too. A reparented process never gets its old parent's pid back: the watch cannot miss.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        log.warning(
            "the process that started this worker (pid %s) is gone: warm shutdown", parent_pid
        )
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(timeout)
        log.warning("warm shutdown not done after %s s: killing the worker", timeout)
        if os.getpgrp() == os.getpid():  # a group of its own, as start_worker starts it
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="skillmix-parent-watch", daemon=True)
    thread.start()
    return thread
