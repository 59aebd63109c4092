"""Real Ray and Slurm clusters for tests, each in a network namespace of its own.

Neither engine can be told to listen on the loopback interface only: Ray 2.60's GCS and
raylet bind every interface (`*:port`) whatever `--node-ip-address` says (and it turns
127.0.0.1 into the machine's outward address), and slurmctld/slurmd bind INADDR_ANY. So
each cluster runs in a fresh network namespace (`unshare --net`, root) whose only interface
is `lo`, with 127.0.0.2 added to it (Ray refuses 127.0.0.1 as a node address, and glibc's
AI_ADDRCONFIG, which Slurm uses, needs an IPv4 address other than 127.0.0.1 to resolve
anything). Nothing in there is reachable from outside, and the fixed ports cannot collide
with anything on the machine. A test's driver (the process that calls `ray.init` or
`sbatch`) runs inside the same namespace: `cluster.run([...])`.

Every process a cluster starts carries SKILLMIX_TEST_CLUSTER=<id> in its environment
(daemons, Ray workers, Slurm job steps inherit it); teardown kills each daemon's process
group, then any process still carrying the marker, by pid. A watchdog does the same
sweep after LIFETIME seconds if the test process died before its teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing, need_module

NODE_IP = "127.0.0.2"
RAY_PORT = 6379
LIFETIME = 5400  # seconds, CI's own bound: a session cluster outliving it is killed
ROOT = Path(__file__).resolve().parents[1]


def _ours(marker: str, netns: str | None) -> list[int]:
    """Pids of processes whose environment carries SKILLMIX_TEST_CLUSTER=marker, or that
    live in the network namespace `netns` (e.g. "net:[4026532321]"): slurmstepd overwrites
    its environment with its title, but stays in the namespace slurmd started it in."""
    needle = f"SKILLMIX_TEST_CLUSTER={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if netns is not None and os.readlink(f"/proc/{entry}/ns/net") == netns:
                found.append(int(entry))
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


class Namespace:
    """A network namespace with `lo` up and NODE_IP on it, held by a sleeping process."""

    def __init__(self, workdir: Path) -> None:
        if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
            missing("a network namespace for a test cluster needs root, unshare and nsenter")
        if not shutil.which("ip"):
            missing("the `ip` command (iproute2) is needed to set up the test cluster's lo")
        self.marker = uuid.uuid4().hex
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        script = f"ip link set lo up && ip addr add {NODE_IP}/8 dev lo && exec sleep {LIFETIME}"
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--fork", "--kill-child", "--", "sh", "-c", script],
            env=self.env(),
            start_new_session=True,
        )
        self.procs: list[subprocess.Popen] = [self.holder]
        self.folders: list[Path] = []  # removed at stop()
        try:
            self.netns = self._netns_path()
        except BaseException:
            _kill(-self.holder.pid)
            raise
        self.netns_id = os.readlink(self.netns)
        # Killed at teardown; otherwise kills every process of the cluster (marked, or in
        # its namespace) after LIFETIME seconds.
        sweep = (
            f"sleep {LIFETIME}; for p in /proc/[0-9]*; do "
            f'if [ "$(readlink "$p/ns/net")" = "{self.netns_id}" ] || '
            f'grep -qzx SKILLMIX_TEST_CLUSTER={self.marker} "$p/environ"; then '
            'kill -KILL "${p#/proc/}"; fi; done 2>/dev/null'
        )
        self.watchdog = subprocess.Popen(
            ["sh", "-c", sweep],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _netns_path(self) -> str:
        """The namespace of the holder's child (unshare --fork), once `lo` is set up."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.holder.poll() is not None:
                raise RuntimeError(f"unshare --net failed (exit {self.holder.returncode})")
            children = Path(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids:
                path = f"/proc/{pids[0]}/ns/net"
                probe = subprocess.run(
                    ["nsenter", f"--net={path}", "--", "ip", "-o", "addr", "show", "lo"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if NODE_IP in probe.stdout:
                    return path
            time.sleep(0.1)
        raise RuntimeError("the test cluster's network namespace did not come up in 20 s")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """This process's environment, marked, with the worktree first on PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKILLMIX_")}
        path = [str(ROOT), str(ROOT / "clients" / "python"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        env["SKILLMIX_TEST_CLUSTER"] = self.marker
        return env | (extra or {})

    def command(self, args: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.netns}", "--", *args]

    def start(
        self, args: Sequence[str], log: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """A daemon in the namespace (a session of its own, stopped with the namespace)."""
        proc = subprocess.Popen(
            self.command(args),
            env=self.env(extra_env),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def run(
        self, args: Sequence[str], timeout: float, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the namespace (a test's driver) and wait for it."""
        return subprocess.run(
            self.command(args),
            env=self.env(extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):  # each leads its own process group
            _kill(-proc.pid)
        for proc in self.procs:
            proc.wait(timeout=30)
        for _ in range(5):  # what left those groups (Ray workers, Slurm steps) is ours
            pids = _ours(self.marker, self.netns_id)
            if not pids:
                break
            for pid in pids:
                _kill(pid)
            time.sleep(0.5)
        _kill(-self.watchdog.pid)
        self.watchdog.wait(timeout=30)
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


def _wait_for(what: str, ready: Any, daemons: dict[str, subprocess.Popen], logs: Path) -> None:
    """Until ready() (90 s at most); a daemon that exits first fails with its log's end."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for name, proc in daemons.items():
            if proc.poll() is not None:
                log = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited ({proc.returncode}) starting {what}: {log}")
        if ready():
            return
        time.sleep(0.25)
    raise RuntimeError(f"{what} did not come up in 90 s (logs in {logs})")


class RayCluster:
    """`ray start --head` (2 CPUs) in a namespace of its own; `address` for ray.init."""

    @staticmethod
    def _tmpdir(workdir: Path) -> Path:
        (workdir / "tmp").mkdir(exist_ok=True)
        return workdir / "tmp"

    def __init__(self, ns: Namespace, workdir: Path) -> None:
        self.ns = ns
        self.address = f"{NODE_IP}:{RAY_PORT}"
        # Ray's sockets live under its temp dir (session_<date>_<pid>/sockets/plasma_store):
        # the path must stay under the 107-byte limit of a unix socket's.
        self.temp = workdir / "t"
        if len(str(self.temp)) > 40:
            self.temp = Path(tempfile.mkdtemp(prefix="skr-", dir="/tmp"))
            ns.folders.append(self.temp)
        self.log = workdir / "head.log"
        head = self.ns.start(
            [
                str(Path(sys.executable).parent / "ray"),
                "start",
                "--head",
                "--block",
                "--node-ip-address",
                NODE_IP,
                "--port",
                str(RAY_PORT),
                # Fixed ports: nothing else lives in the namespace.
                "--node-manager-port",
                str(RAY_PORT + 1),
                "--object-manager-port",
                str(RAY_PORT + 2),
                "--dashboard-agent-grpc-port",
                str(RAY_PORT + 3),
                "--dashboard-agent-listen-port",
                str(RAY_PORT + 4),
                "--runtime-env-agent-port",
                str(RAY_PORT + 5),
                "--metrics-export-port",
                str(RAY_PORT + 6),
                "--min-worker-port",
                "20000",
                "--max-worker-port",
                "20999",
                "--num-cpus",
                "2",
                "--object-store-memory",
                str(100 * 2**20),
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
                "--no-monitor",
                "--temp-dir",
                str(self.temp),
            ],
            self.log,
            # datatrove's Ray tasks log to tempfile.gettempdir()/ray_logs first: keep it here.
            {"TMPDIR": str(self._tmpdir(workdir))},
        )
        _wait_for(
            "the Ray cluster",
            lambda: "Ray runtime started" in self.log.read_text(errors="replace"),
            {"head": head},
            workdir,
        )


SLURM_CONF = """\
ClusterName=skillmix-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge.sock
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=30
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=60 State=UP
"""


class SlurmCluster:
    """munged + slurmctld + slurmd for one 2-CPU node (this machine), partition `debug`.

    The node is this machine under its own hostname (slurmd insists), at 127.0.0.1 in
    the namespace. Commands see the cluster through SLURM_CONF (`env`)."""

    def __init__(self, ns: Namespace, workdir: Path) -> None:
        self.ns = ns
        self.dir = workdir
        for sub in ("state", "spool"):
            (workdir / sub).mkdir()
        key = workdir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        conf = workdir / "slurm.conf"
        host = os.uname().nodename
        conf.write_text(SLURM_CONF.format(host=host, dir=workdir))
        self.conf = conf
        self.env = {"SLURM_CONF": str(conf)}
        daemons = {
            "munged": self.ns.start(
                [
                    "munged",
                    "--foreground",
                    "--force",
                    f"--socket={workdir}/munge.sock",
                    f"--key-file={key}",
                    f"--pid-file={workdir}/munged.pid",
                    f"--seed-file={workdir}/munged.seed",
                    f"--log-file={workdir}/munged-file.log",
                ],
                workdir / "munged.log",
            )
        }
        _wait_for("munged", lambda: (workdir / "munge.sock").exists(), daemons, workdir)
        daemons["slurmctld"] = self.ns.start(
            ["slurmctld", "-D", "-f", str(conf)], workdir / "slurmctld.out.log", self.env
        )
        daemons["slurmd"] = self.ns.start(
            ["slurmd", "-D", "-f", str(conf)], workdir / "slurmd.out.log", self.env
        )

        def idle() -> bool:
            out = self.ns.run(["sinfo", "-h", "-o", "%T"], timeout=30, extra_env=self.env)
            return out.stdout.strip() == "idle"

        _wait_for("the Slurm cluster", idle, daemons, workdir)


@contextmanager
def _cluster(ns: Namespace, start: Any) -> Iterator[Any]:
    """start() the cluster in `ns`; stop the namespace however that ends."""
    try:
        yield start()
    finally:
        ns.stop()


@contextmanager
def ray_cluster(workdir: Path, attempts: int = 3) -> Iterator[RayCluster]:
    """A Ray cluster; started again (up to twice) if a start fails. `ray start` gives its
    raylet 30 s to register, and the raylet gives Ray's Python agents ~15 s to write their
    ports (neither is configurable in Ray 2.60): on a 2-core machine that other work loads
    (load average ~18 here), the agents' imports alone can take longer."""
    for attempt in range(1, attempts + 1):
        ns = Namespace(workdir / f"attempt{attempt}")
        try:
            cluster = RayCluster(ns, ns.workdir)
        except RuntimeError:
            ns.stop()
            if attempt == attempts:
                raise
            continue
        try:
            yield cluster
        finally:
            ns.stop()
        return


@contextmanager
def slurm_cluster(workdir: Path) -> Iterator[SlurmCluster]:
    ns = Namespace(workdir)
    with _cluster(ns, lambda: SlurmCluster(ns, workdir)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def ray_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """One real Ray cluster for the test session (starting one takes ~10-20 s)."""
    need_module("ray", "pip install 'skillmix[ray]'")
    with ray_cluster(tmp_path_factory.mktemp("ray")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def slurm_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One real single-node Slurm cluster for the test session."""
    needed = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
    absent = [c for c in needed if shutil.which(c) is None]
    if absent:
        missing(
            f"Slurm is not installed ({', '.join(absent)} missing): "
            "apt-get install slurmctld slurmd slurm-client munge"
        )
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
