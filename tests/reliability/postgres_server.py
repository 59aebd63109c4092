"""A private PostgreSQL server for one test: its own cluster, port and folder, so a test can
stop and start the database without touching the machine's PostgreSQL.

initdb refuses to run as root: as root (CI containers), the cluster belongs to the
`postgres` user and every server program runs through `runuser -u postgres`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from service.cli.embedded import free_port


def server_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin (Debian, Ubuntu), else the folder of the
    `pg_ctl` on PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if found:
        newest = max(found, key=lambda path: int(Path(path).parts[-3].split(".")[0]))
        return Path(newest).parent
    on_path = shutil.which("pg_ctl")
    if on_path is None:
        raise FileNotFoundError("no PostgreSQL server programs (initdb, pg_ctl) found")
    return Path(on_path).resolve().parent


class PostgresServer:
    """A cluster in a fresh temporary folder, served on a free loopback port with trust
    authentication; `create()` it, then `stop()` and `start()` at will; `remove()` ends it
    and deletes the folder."""

    def __init__(self, database: str = "skillmix") -> None:
        self.bindir = server_bindir()
        self.database, self.port = database, free_port()
        # Not under pytest's tmp_path: that is private to its user, and the server's user
        # must reach its folder.
        self.folder = Path(tempfile.mkdtemp(prefix="skillmix-pg-"))
        self.data, self.sockets = self.folder / "data", self.folder / "sockets"
        self.as_postgres = os.geteuid() == 0
        try:
            self.sockets.mkdir()
            if self.as_postgres:
                user = pwd.getpwnam("postgres")  # KeyError: no such user
                for path in (self.folder, self.sockets):
                    os.chown(path, user.pw_uid, user.pw_gid)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def url(self, database: str | None = None) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def create(self, timeout: float = 90) -> None:
        """initdb, start, and create the database."""
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", timeout=timeout,
        )  # fmt: skip
        self.start()
        admin = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        finally:
            admin.dispose()

    def start(self, timeout: float = 30) -> None:
        """Start the server; return once it accepts connections."""
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
            # A throwaway cluster: no waiting for the disk.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"),
            "-o", options, "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10,
        )  # fmt: skip

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """Stop the server (`fast`: end the sessions, as a restart does); return once it
        is down."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)), "stop",
            timeout=timeout + 5,
        )  # fmt: skip

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def remove(self, timeout: float = 20) -> None:
        """Stop the server at once (`immediate`, then SIGKILL of the postmaster by pid if it
        is still there) and delete the folder; bounded by about `timeout` seconds."""
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self.stop("immediate", timeout=timeout / 2)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout / 2
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _run(self, program: str, *args: str, timeout: float) -> None:
        command = [str(self.bindir / program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        # Output to a file, not a pipe: the server that pg_ctl starts must not hold our pipe.
        output = self.folder / f"{program}.out"
        with open(output, "ab") as out:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                timeout=timeout,
                check=False,
            )
        if done.returncode != 0:
            said = output.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{program} exited with {done.returncode}: {said}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # not ours to signal (not root, and the server's user differs)
        return True
    return True
