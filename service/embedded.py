"""The embedded default: SQLite and a filesystem broker under one data directory, the API
in this process and a worker in a child process. Used by `skillmix serve --embedded`,
`skillmix demo` and the tests; needs nothing installed but Python."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from service import migrate
from service.celery_app import get_celery
from service.db import reset_engine_cache
from service.settings import get_settings


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
    queues: str = "curation,training", concurrency: int = 1, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """A `skillmix worker` child process with this process's environment."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "worker",
            "--queues",
            queues,
            "--concurrency",
            str(concurrency),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


@dataclass
class Stack:
    base_url: str
    workers: list[subprocess.Popen[bytes]]


def start_workers(log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """One worker per queue: curation (prefork) and training (solo, so a verification can
    start its own training processes). Logs: worker-<queue>.log in `log_dir`."""
    return [
        start_worker(queue, log_path=log_dir / f"worker-{queue}.log")
        for queue in ("curation", "training")
    ]


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
        for proc in procs:
            stop_process(proc)
