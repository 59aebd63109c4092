"""A private `redis-server` for one test: its own port and folder, so a test can kill and
restart the broker (or lose its data) without touching the machine's Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from service.cli.embedded import free_port


class RedisServer:
    """`redis-server` on a free port with its data in `folder`.

    `persist=True` is the durable setup: an append-only file fsynced on every write, so a
    restart (even after SIGKILL) keeps every message. `persist=False` keeps nothing.
    """

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=5)

    def start(self, *, persist: bool = True, timeout: float = 20) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--save", "",
            "--appendonly", "yes" if persist else "no",
            "--appendfsync", "always",
            "--logfile", str(self.folder / f"redis-{self.starts}.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def wipe(self) -> None:
        """Delete the data folder: the next start begins with an empty broker."""
        shutil.rmtree(self.folder, ignore_errors=True)
