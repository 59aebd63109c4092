"""The embedded default: SQLite and a filesystem broker under one data directory, the API
in this process and the workers in child processes. Used by `skillmix serve --embedded`,
`skillmix demo` and the tests; needs nothing installed but Python.

The process that starts the workers owns them: it stops them when it stops
(`serve_with_workers`, `embedded_stack`), and a worker whose starter died without stopping
it (SIGKILL, an OOM kill) stops by itself (`service.worker.celery_worker.watch_parent`)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from service import migrate
from service.celery_app import get_celery
from service.db import reset_engine_cache
from service.settings import get_settings
from service.worker.celery_worker import PARENT_PID_ENV, WARM_SHUTDOWN_TIMEOUT

log = logging.getLogger("skillmix.embedded")


def use_embedded(data_dir: Path) -> None:
    """Point this process (and the children it starts) at the embedded database and broker."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["SKILLMIX_DATA_DIR"] = str(data_dir)
    os.environ["SKILLMIX_DATABASE_URL"] = f"sqlite:///{data_dir / 'skillmix.db'}"
    os.environ.pop("SKILLMIX_BROKER_URL", None)
    refresh_settings()


def refresh_settings() -> None:
    """Forget cached settings, engine and Celery app after the environment changed."""
    get_settings.cache_clear()
    get_celery.cache_clear()
    reset_engine_cache()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(
    queues: str = "curation,training",
    concurrency: int | None = 1,
    log_path: Path | None = None,
    *,
    watch_parent: bool = True,
    env: dict[str, str] | None = None,
    inherit_output: bool = False,
) -> subprocess.Popen[bytes]:
    """A `skillmix worker` child process with this process's environment (and `env`), the
    leader of a process group (and session) of its own, so that `stop_workers` can end its
    pool processes with it and a Ctrl-C at a terminal reaches only the process that owns
    it. With `watch_parent`, the worker stops by itself once this process is gone.
    concurrency None: the worker's default (`skillmix worker`). Output: to `log_path`, or
    this process's own with `inherit_output`, else nowhere."""
    if log_path:
        out: Any = open(log_path, "ab")  # noqa: SIM115
    else:
        out = None if inherit_output else subprocess.DEVNULL
    child_env = {**os.environ, **(env or {})}
    if watch_parent:
        child_env[PARENT_PID_ENV] = str(os.getpid())
    argv = [sys.executable, "-m", "service.cli", "worker", "--queues", queues]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    return subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=child_env,
        start_new_session=True,
    )


def run_device_workers(queues: str, devices: list[str]) -> int:
    """`skillmix worker --devices 0,1`: one worker process per device, each seeing only its
    own (CUDA_VISIBLE_DEVICES) and taking one task at a time, their output on this one's.
    Runs until SIGTERM or SIGINT (then stops them: a warm shutdown, as `stop_workers`) or
    until one of them exits (then stops the others: exit status 1, for a supervisor to
    restart the set)."""
    procs = [
        start_worker(queues, 1, env={"CUDA_VISIBLE_DEVICES": device}, inherit_output=True)
        for device in devices
    ]
    asked = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        asked.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        while not asked.is_set() and all(proc.poll() is None for proc in procs):
            asked.wait(1.0)
        if not asked.is_set():
            log.error("a device worker exited; stopping the others")
    finally:
        stop_workers(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if asked.is_set() else 1


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def stop_workers(
    procs: list[subprocess.Popen[bytes]],
    timeout: float = WARM_SHUTDOWN_TIMEOUT,
    hurry: threading.Event | None = None,
) -> None:
    """Stop workers that `start_worker` started: SIGTERM to each (Celery's warm shutdown:
    the task at hand finishes), up to `timeout` seconds for them all to exit (no more once
    `hurry` is set), then SIGKILL to each one's process group, which also ends whatever a
    worker left behind (pool processes, a verification's training processes)."""
    hurry = hurry or threading.Event()
    for proc in procs:
        if not _exited(proc):
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (
        not all(_exited(proc) for proc in procs)
        and time.monotonic() < deadline
        and not hurry.is_set()
    ):
        hurry.wait(0.1)
    for proc in procs:
        if proc.returncode is None:
            # Not reaped yet (`_exited` leaves it be): its pid, which is its group's id, can
            # be no other process's.
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether `proc` has exited, without reaping it (`Popen.poll` would)."""
    if proc.returncode is not None:
        return True
    if not hasattr(os, "waitid"):  # macOS: reap it; its group is then left alone
        return proc.poll() is not None
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped elsewhere
        return proc.poll() is not None


class _Stop(BaseException):
    """The first SIGTERM or SIGINT during `serve_with_workers`, raised wherever the main
    thread was (a BaseException, like KeyboardInterrupt, so `except Exception` lets it by)."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve_with_workers(
    run_api: Callable[[], object], log_dir: Path, *, timeout: float = WARM_SHUTDOWN_TIMEOUT
) -> None:
    """Start the embedded workers (logs in `log_dir`), run the API in this thread with
    `run_api` (e.g. `uvicorn.run`) until it returns or SIGTERM or SIGINT stops it, then stop
    the workers with `stop_workers`, whichever way the API ended. Call it from the main
    thread (it sets signal handlers); it gives back the ones it found.

    uvicorn handles SIGTERM and SIGINT while it serves: it shuts down, puts back the handlers
    it found (here ours) and raises the signal again (`Server.capture_signals`); ours then
    raises `_Stop` out of uvicorn, to here. Without a handler of ours the re-raised SIGTERM
    would end the process there and then, workers left running. A signal before uvicorn
    took over stops the API (or keeps it from starting) just the same, and a signal while
    the workers start is kept until they have started. A second signal while the workers
    stop (an impatient Ctrl-C) stops waiting for their warm shutdowns: SIGKILL at once.

    Exit status: a stop that SIGTERM or SIGINT asked for returns normally, so that
    `skillmix serve --embedded` exits 0: it is the clean stop it was asked for (the status
    uvicorn gives after SIGINT, and its supervisor of several API processes after either
    signal, which it handles itself), and systemd or a container runtime count it as one. If
    `run_api` raises instead (uvicorn exits 3 when the API cannot start), that propagates,
    after the workers have stopped."""
    asked = threading.Event()  # a stop was asked for
    hurry = threading.Event()  # ... twice: do not wait out the warm shutdowns
    interruptible = False

    def on_signal(signum: int, _frame: object) -> None:
        if asked.is_set():
            hurry.set()
            return
        asked.set()
        if interruptible:  # raised once at most: `asked` is set from here on
            raise _Stop(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        try:
            procs = start_workers(log_dir)
            interruptible = True
            if not asked.is_set():
                run_api()
            interruptible = False
        except _Stop:
            pass
    finally:
        interruptible = False
        # uvicorn's supervisor of several API processes does not put back the handlers.
        for sig in STOP_SIGNALS:
            signal.signal(sig, on_signal)
        log.info("stopping the workers: up to %g s (Ctrl-C again: at once)", timeout)
        stop_workers(procs, timeout, hurry)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class Stack:
    base_url: str
    workers: list[subprocess.Popen[bytes]]


def start_workers(log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """One worker per queue: curation (one process) and training (SKILLMIX_TRAINING_WORKERS
    processes, each training one unit of a verification at a time). Logs:
    worker-<queue>.log in `log_dir`."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for queue, concurrency in (("curation", 1), ("training", None)):
            log_path = log_dir / f"worker-{queue}.log"
            procs.append(start_worker(queue, concurrency, log_path=log_path))
    except BaseException:
        stop_workers(procs)
        raise
    return procs


@contextmanager
def run_api(
    host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning"
) -> Iterator[str]:
    """Serve the API from a thread of this process; yield its base URL once it answers."""
    from service.api.app import create_app

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host=host, port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        raise RuntimeError(f"the API did not start on {base_url}")
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def embedded_stack(
    data_dir: Path, *, port: int | None = None, worker: bool = True, log_level: str = "warning"
) -> Iterator[Stack]:
    use_embedded(data_dir)
    migrate.upgrade(get_settings().effective_database_url)
    procs = start_workers(get_settings().resolved_data_dir) if worker else []
    try:
        with run_api(port=port, log_level=log_level) as base_url:
            yield Stack(base_url=base_url, workers=procs)
    finally:
        stop_workers(procs)
