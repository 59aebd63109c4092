"""`skillmix serve --embedded` owns its two worker processes: SIGTERM, or a Ctrl-C, stops
the API and the workers (with the workers' pool children) and the command exits 0; a worker
whose `serve` died without stopping it (SIGKILL, an OOM kill) stops by itself.

The command runs as a user runs it, in a session of its own as a shell runs a job. Its
process tree is read from /proc: `serve`, its descendants, and every process of their
sessions (which keeps a worker's processes in sight once they are reparented). A failing
test SIGKILLs whatever it left, by pid. Two quick tests check the last resorts with stand-in
workers whose warm shutdown never ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent

import httpx
import pytest

from service.cli import embedded
from service.cli.embedded import free_port

# Outside Linux there is no /proc to read: skip there, but never in CI (a Linux machine).
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists() and not os.environ.get("CI"),
    reason="reads the process tree from /proc",
)

QUEUES = ("curation", "training")
# A process, not a pid: (pid, start time in clock ticks since boot), so that a pid the
# system reused for another process is never taken for one of ours.
Proc = tuple[int, int]


def stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid,
    [2] process group, [3] session, [19] start time. None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses.
    return text[text.rindex(")") + 2 :].split()


def processes() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := stat(int(entry))) is not None:
            found[int(entry)] = fields
    return found


def alive(proc: Proc) -> bool:
    fields = stat(proc[0])
    # A zombie has exited: only its parent's wait is missing.
    return fields is not None and int(fields[19]) == proc[1] and fields[0] not in "ZXx"


def group(pgid: int) -> set[int]:
    """The live processes of process group `pgid`."""
    return {pid for pid, f in processes().items() if int(f[2]) == pgid and f[0] not in "ZXx"}


def describe(proc: Proc) -> str:
    try:
        cmdline = Path(f"/proc/{proc[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmdline = "?"
    fields = stat(proc[0]) or ["?", "?"]
    return f"pid {proc[0]} (ppid {fields[1]}, state {fields[0]}): {cmdline.strip()}"


@dataclass
class Serving:
    proc: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    log: Path
    # Every process of the tree seen so far, and the sessions they belong to.
    seen: set[Proc] = field(default_factory=set)
    sessions: set[int] = field(default_factory=set)

    def look(self) -> set[Proc]:
        """Add the tree as it is now to `seen`; return the processes of `seen` still alive."""
        procs = processes()
        children: dict[int, list[int]] = {}
        for pid, fields in procs.items():
            children.setdefault(int(fields[1]), []).append(pid)
        tree: set[int] = set()
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            if pid in procs and pid not in tree:
                tree.add(pid)
                todo += children.get(pid, [])
        # `serve` runs in a session of its own, never the one of this test.
        self.sessions |= {int(procs[pid][3]) for pid in tree}
        tree |= {pid for pid, fields in procs.items() if int(fields[3]) in self.sessions}
        self.seen |= {(pid, int(procs[pid][19])) for pid in tree}
        return {p for p in self.seen if alive(p)}

    def output(self) -> str:
        parts = [self.log.read_text(errors="replace")[-3000:]]
        for queue in QUEUES:
            path = self.data_dir / f"worker-{queue}.log"
            if path.exists():
                parts.append(f"--- worker-{queue}.log\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until /healthz answers and both workers logged that they are ready (by then
        Celery's signal handlers are in place)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (
                f"serve exited with {self.proc.returncode}\n{self.output()}"
            )
            self.look()
            try:
                healthy = httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                healthy = False
            logs = [self.data_dir / f"worker-{queue}.log" for queue in QUEUES]
            if healthy and all(p.exists() and " ready." in p.read_text() for p in logs):
                return
            time.sleep(0.5)
        raise AssertionError(f"not ready after {timeout}s\n{self.output()}")

    def workers(self) -> set[Proc]:
        """The worker processes: `serve`'s children running `skillmix worker`."""
        return {
            p
            for p in self.look()
            if (stat(p[0]) or ["", ""])[1] == str(self.proc.pid) and " worker " in describe(p)
        }

    def wait_gone(self, timeout: float) -> None:
        """Until no process of the tree is left; fail naming those that are."""
        deadline = time.monotonic() + timeout
        while (left := self.look()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"still running after {timeout}s:\n" + "\n".join(
            describe(p) for p in sorted(left)
        )

    def kill_all(self) -> None:
        for _ in range(3):  # again, for a process a dying one started meanwhile
            left = self.look()
            for pid, _start in left:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not left:
                break
            time.sleep(0.2)


def assert_warm_shutdowns(s: Serving) -> None:
    """Each worker stopped as SIGTERM stops it, finishing its task (it had none)."""
    for queue in QUEUES:
        text = (s.data_dir / f"worker-{queue}.log").read_text()
        assert "warm shutdown (mainprocess)" in text.lower(), text[-2000:]


@contextmanager
def serving(tmp_path: Path) -> Iterator[Serving]:
    """`skillmix serve --embedded` on a free port with its data in `tmp_path`, ready."""
    data_dir = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKILLMIX_")}
    env["SKILLMIX_DATA_DIR"] = str(data_dir)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--embedded"]
            + ["--data-dir", str(data_dir), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    s = Serving(proc=proc, base_url=f"http://127.0.0.1:{port}", data_dir=data_dir, log=log)
    try:
        s.wait_ready()
        workers = s.workers()
        assert len(workers) == 2, s.look()
        # The curation worker's prefork pool: a grandchild that must not be left either.
        assert len(s.look()) >= 4, [describe(p) for p in s.look()]
        yield s
    finally:
        s.kill_all()
        with suppress(ProcessLookupError):
            proc.kill()
        proc.wait(30)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "how",
    [
        pytest.param("SIGTERM", id="SIGTERM"),  # `kill PID`, systemd, `docker stop`
        pytest.param("SIGINT", id="ctrl-c"),  # a terminal's Ctrl-C: its whole foreground job
    ],
)
def test_a_signal_stops_the_api_and_its_workers(tmp_path: Path, how: str) -> None:
    with serving(tmp_path) as s:
        if how == "SIGTERM":
            os.kill(s.proc.pid, signal.SIGTERM)
        else:
            os.killpg(s.proc.pid, signal.SIGINT)
        try:
            returncode = s.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not exit within 60 s of {how}\n{s.output()}")
        s.wait_gone(30)
        assert returncode == 0, s.output()
        assert_warm_shutdowns(s)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_ctrl_c_while_the_workers_stop_still_stops_them_all(tmp_path: Path) -> None:
    """An impatient second Ctrl-C hurries the stop (SIGKILL instead of waiting out the warm
    shutdowns) but leaves nothing behind. Its exit status is not checked: a Ctrl-C that
    arrives after the stop finished meets Python's own SIGINT handler."""
    with serving(tmp_path) as s:
        os.killpg(s.proc.pid, signal.SIGINT)
        stopping = s.data_dir / "worker-curation.log"
        deadline = time.monotonic() + 60
        while "warm shutdown" not in stopping.read_text().lower():
            assert time.monotonic() < deadline, s.output()
            time.sleep(0.05)
        with suppress(ProcessLookupError):
            os.killpg(s.proc.pid, signal.SIGINT)
        try:
            s.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not exit within 60 s of a second Ctrl-C\n{s.output()}")
        s.wait_gone(30)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_workers_stop_by_themselves_when_serve_is_killed(tmp_path: Path) -> None:
    with serving(tmp_path) as s:
        workers = s.workers()
        s.proc.kill()  # SIGKILL: no handler runs, nothing in `serve` stops the workers
        s.proc.wait(30)
        s.wait_gone(60)
        assert_warm_shutdowns(s)
        assert workers and not any(alive(p) for p in workers)


# A worker whose warm shutdown never ends: it ignores SIGTERM, and so does its pool process.
STUBBORN = dedent(
    """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:  # the pool process: keeps no pipe of its parent's open
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    else:
        if len(sys.argv) > 1:
            from service.worker.celery_worker import watch_parent
            watch_parent(int(sys.argv[1]), timeout=1, interval=0.1)
        print("ready", flush=True)
    time.sleep(120)
    """
)


def stubborn(*args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUBBORN, *args], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert len(group(proc.pid)) == 2
    except BaseException:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise
    return proc


def test_a_signal_while_the_api_runs_stops_it_and_workers_that_ignore_sigterm_are_killed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In this process, with an API that is not uvicorn (so nothing hands the signal back
    after a shutdown): the SIGTERM interrupts it, workers whose warm shutdown does not end
    are SIGKILLed with their process groups after the timeout, and this process's signal
    handlers are its own again afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start_workers(log_dir: Path) -> list[subprocess.Popen[bytes]]:
        started.append(stubborn())
        started.append(stubborn())
        return list(started)

    def run_api() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(300):
            time.sleep(0.1)
        raise AssertionError("SIGTERM did not stop the API")

    monkeypatch.setattr(embedded, "start_workers", start_workers)
    handlers = {sig: signal.getsignal(sig) for sig in embedded.STOP_SIGNALS}
    began = time.monotonic()
    try:
        embedded.serve_with_workers(run_api, tmp_path, timeout=1)
        assert time.monotonic() - began < 15
        assert [proc.returncode for proc in started] == [-signal.SIGKILL] * 2
        assert not any(group(proc.pid) for proc in started)
        assert {sig: signal.getsignal(sig) for sig in embedded.STOP_SIGNALS} == handlers
    finally:
        for proc in started:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()


def test_a_worker_whose_parent_died_kills_itself_when_its_warm_shutdown_hangs() -> None:
    """`watch_parent`'s last resort: SIGTERM to itself is not enough (a task that does not
    end), so after its timeout it SIGKILLs its process group, pool processes included."""
    # A parent that starts the worker, says which it is, and dies.
    parent = dedent(
        """
        import os, subprocess, sys
        child = subprocess.Popen(
            [sys.executable, "-c", sys.argv[1], str(os.getpid())],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        print(child.pid, flush=True)
        sys.exit(child.stdout.readline() != b"ready\\n")
        """
    )
    with subprocess.Popen([sys.executable, "-c", parent, STUBBORN], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        try:
            assert proc.wait(60) == 0, "the stand-in worker did not start"
            deadline = time.monotonic() + 20
            while group(worker) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not group(worker)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(worker, signal.SIGKILL)
            proc.kill()
