"""The datatrove executors a scan can run on: local processes, a Ray cluster, a Slurm cluster.

`executor_factory(kind, options)` checks the options and returns what
`curation.scan.run_scan(executor_factory=...)` calls. The options are the datatrove
executor's own keyword arguments (`LocalPipelineExecutor`, `RayPipelineExecutor`,
`SlurmPipelineExecutor`), plus, for Ray, where the cluster is:

- `address`: the cluster's GCS address (`head-node:6379`), `auto` (the cluster this
  machine is a node of) or unset (`RAY_ADDRESS`, else a Ray instance of this process's own);
- `runtime_env`: Ray's runtime environment for the scan's tasks (`{"py_modules": [...]}`,
  `{"env_vars": {...}}`): how the cluster's workers get `curation` if it is not installed there.

Both cluster executors need storage that the submitting process and every worker see at
the same path: the corpus files, the scan's work directory (datatrove's `logging_dir`,
the per-rank partials and state files) and, on Slurm, the virtualenv that runs the tasks.
Unlike datatrove's own classes, these executors' `run()` returns once every rank is done and
raises if one failed, naming its log, so a failed or unreachable cluster fails the scan
with a message instead of leaving it waiting.
"""

from __future__ import annotations

import inspect
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from datatrove.executor import (
    LocalPipelineExecutor,
    RayPipelineExecutor,
    SlurmPipelineExecutor,
)
from datatrove.executor.base import PipelineExecutor

KINDS = ("local", "slurm", "ray")
# Given by run_scan itself (executor_factory(pipeline=, tasks=, workers=, logging_dir=)).
RESERVED = frozenset({"pipeline", "tasks", "workers", "logging_dir"})
# Options that make no sense for a scan: it runs alone, and completed ranks are how a
# retried scan resumes (run_scan checks the work directory belongs to the same scan).
UNSUPPORTED = frozenset({"depends", "depends_job_id", "skip_completed"})
RAY_OWN = ("address", "runtime_env")
CONNECT_TIMEOUT = 5.0
LOG_TAIL_LINES = 15


class ExecutorOptionsError(ValueError):
    """The executor's options are wrong (an unknown, missing or reserved name)."""


class ExecutorUnavailable(RuntimeError):
    """The engine cannot be used from here: not installed, or its cluster cannot be reached."""


class ExecutorFailed(RuntimeError):
    """Ranks of the scan failed on the engine; the message names their logs."""


def _tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def _failed(executor: PipelineExecutor, engine: str, logs: list[str]) -> ExecutorFailed:
    """The error for ranks that did not complete, with the end of the first log there is."""
    incomplete = executor.get_incomplete_ranks()
    shown = next(((p, t) for p in logs if (t := _tail(p))), None)
    detail = f"; the end of {shown[0]}:\n{shown[1]}" if shown else ""
    return ExecutorFailed(
        f"{len(incomplete)} of {executor.world_size} scan tasks did not complete on {engine} "
        f"(ranks {incomplete[:10]}){detail}"
    )


def _host_port(address: str) -> tuple[str, str]:
    """A Ray GCS address's host and port, or ExecutorOptionsError."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorOptionsError(
            f"the Ray address {address!r} is not host:port (the head node's GCS "
            "address, e.g. 10.0.0.5:6379, as `ray start --head` prints it) or 'auto'"
        )
    return host, port


class RayScanExecutor(RayPipelineExecutor):
    """datatrove's RayPipelineExecutor that connects to its cluster and fails loudly.

    address: the cluster's GCS address (host:port), "auto", or None (RAY_ADDRESS, else
    a local Ray instance). runtime_env: Ray's runtime environment for the tasks.
    Other arguments: RayPipelineExecutor's.
    """

    def __init__(
        self,
        *args: Any,
        address: str | None = None,
        runtime_env: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.address = address
        self.runtime_env = runtime_env

    def connect(self) -> None:
        """Connect this process to the cluster (once; again if the address changed)."""
        try:
            import ray
        except ImportError as exc:
            raise ExecutorUnavailable(
                "the scan executor is ray but Ray is not installed here: "
                "pip install 'skillmix[ray]'"
            ) from exc
        if ray.is_initialized():
            current = ray.get_runtime_context().gcs_address
            if self.address in (None, "auto", current):
                return
            ray.shutdown()
        address = self.address
        if address and address != "auto" and "://" not in address:
            host, port = _host_port(address)
            try:
                socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
            except OSError as exc:
                raise ExecutorUnavailable(
                    f"cannot reach the Ray cluster at {address} ({exc}): start it with "
                    f"`ray start --head --port {port}` on {host}, or fix the executor's "
                    "`address` option"
                ) from exc
        try:
            ray.init(
                address=address,
                runtime_env=self.runtime_env,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorUnavailable(
                f"cannot connect to the Ray cluster at {address or 'RAY_ADDRESS/local'}: {exc}"
            ) from exc

    def run(self) -> None:
        self.connect()
        super().run()
        if self.get_incomplete_ranks():
            logs = [
                self.logging_dir.resolve_paths(f"logs/task_{rank:05d}.log")
                for rank in self.get_incomplete_ranks()
            ]
            raise _failed(self, f"Ray ({self.address or 'RAY_ADDRESS/local'})", logs)


def _slurm_ids(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines() if line.strip()]


class SlurmScanExecutor(SlurmPipelineExecutor):
    """datatrove's SlurmPipelineExecutor whose run() waits for its job and fails loudly.

    Submits the same sbatch script datatrove does (checked first with `sbatch
    --test-only`, so a wrong partition, time or qos is refused with Slurm's words), then
    waits until the job has left the queue. Without env_command, condaenv or venv_path
    the tasks run with this process's Python environment first on PATH (sbatch passes
    this process's environment on, PYTHONPATH included): the cluster must see that
    virtualenv at the same path. poll_seconds: how often squeue is asked.
    """

    def __init__(self, *args: Any, poll_seconds: float = 2.0, **kwargs: Any) -> None:
        if not any(kwargs.get(k) for k in ("env_command", "condaenv", "venv_path")):
            bindir = os.path.dirname(sys.executable)
            kwargs["env_command"] = f"export PATH={shlex.quote(bindir)}:$PATH"
        super().__init__(*args, **kwargs)
        self.poll_seconds = poll_seconds
        self.merge_job_id: str | None = None

    def check_slurm(self) -> None:
        """Slurm is installed and accepts this job (`sbatch --test-only`), or a clear error."""
        missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
        if missing:
            raise ExecutorUnavailable(
                f"the scan executor is slurm but {', '.join(missing)} is not on PATH: install "
                "Slurm's client commands (Debian: slurm-client) and point them at the cluster "
                "(SLURM_CONF or /etc/slurm/slurm.conf)"
            )
        script = self.get_launch_file_contents(self.get_sbatch_args(), "true")
        done = subprocess.run(
            ["sbatch", "--test-only"],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            said = "; ".join(
                line.removeprefix("sbatch: error: ").strip()
                for line in (done.stderr or done.stdout).splitlines()
                if line.strip()
            )
            raise ExecutorUnavailable(f"Slurm refuses the scan's job (sbatch --test-only): {said}")

    def launch_merge_stats(self) -> None:
        # datatrove's, keeping the merge job's id so a failed scan can cancel it (it waits
        # on afterok and would otherwise stay pending for ever).
        from datatrove.executor.slurm import launch_slurm_job

        self.merge_job_id = launch_slurm_job(
            self.get_launch_file_contents(
                {
                    **self.get_sbatch_args(),
                    "cpus-per-task": 1,
                    "mem-per-cpu": "1G",
                    "dependency": f"afterok:{self.job_id}",
                },
                f"merge_stats {self.logging_dir.resolve_paths('stats')} "
                f"-o {self.logging_dir.resolve_paths('stats.json')}",
            ),
            self.job_id_retriever,
        )

    def _queued(self) -> list[str]:
        done = subprocess.run(
            ["squeue", "-h", "-j", str(self.job_id), "-o", "%i %T"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:  # squeue forgets a finished job id after MinJobAge
            if "Invalid job id" in done.stderr:
                return []
            raise ExecutorUnavailable(f"squeue failed: {done.stderr.strip()}")
        return _slurm_ids(done.stdout)

    def cancel(self) -> None:
        """Cancel the scan's jobs (the scan was cancelled)."""
        ids = [str(i) for i in (self.job_id, self.merge_job_id) if i not in (None, -1)]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60, check=False)

    def run(self) -> None:
        if "SLURM_ARRAY_TASK_ID" in os.environ:  # inside the job: run this task's ranks
            super().run()
            return
        self.check_slurm()
        try:
            self.launch_job()
        except subprocess.CalledProcessError as exc:
            raise ExecutorUnavailable(f"sbatch failed ({exc}); see this process's stderr") from exc
        if self.job_id in (None, -1):  # every rank was complete already
            return
        while self._queued():
            time.sleep(self.poll_seconds)
        if self.get_incomplete_ranks():
            self.cancel()
            logs = sorted(
                os.path.join(self.slurm_logs_folder, name)
                for name in os.listdir(self.slurm_logs_folder)
                if name.startswith(f"{self.job_id}_")
            )
            raise _failed(self, f"Slurm (job {self.job_id})", logs)


CLASSES: dict[str, type[PipelineExecutor]] = {
    "local": LocalPipelineExecutor,
    "slurm": SlurmScanExecutor,
    "ray": RayScanExecutor,
}


def _parameters(kind: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments the kind's executor takes (its own and datatrove's)."""
    cls = CLASSES[kind]
    params: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for name, param in inspect.signature(init).parameters.items():
            if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                params[name] = param
    return params


def check_executor_options(kind: str, options: Mapping[str, Any]) -> None:
    """Raise ExecutorOptionsError, saying what to change, unless `options` fit `kind`."""
    if kind not in KINDS:
        raise ExecutorOptionsError(f"unknown scan executor {kind!r}; one of {', '.join(KINDS)}")
    params = _parameters(kind)
    allowed = sorted(set(params) - RESERVED - UNSUPPORTED)
    given = set(options)
    if given & RESERVED:
        raise ExecutorOptionsError(
            f"{', '.join(sorted(given & RESERVED))}: set by the scan itself (tasks and workers "
            "by SKILLMIX_SCAN_TASKS and SKILLMIX_SCAN_WORKERS), not an executor option"
        )
    if given & UNSUPPORTED:
        raise ExecutorOptionsError(
            f"{', '.join(sorted(given & UNSUPPORTED))}: not supported for scans (a scan runs "
            "alone, and a retried scan resumes from its completed ranks)"
        )
    unknown = sorted(given - set(params))
    if unknown:
        raise ExecutorOptionsError(
            f"unknown option(s) for the {kind} executor: {', '.join(unknown)}; "
            f"it takes {', '.join(allowed)}"
        )
    required = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty and name not in RESERVED and name not in given
    ]
    if required:
        example = {"partition": "cpu", "time": "04:00:00"} if kind == "slurm" else {}
        raise ExecutorOptionsError(
            f"the {kind} executor needs {', '.join(required)}"
            + (f", e.g. {example}" if example else "")
        )
    for name in ("runtime_env", "sbatch_args", "srun_args", "ray_remote_kwargs"):
        if options.get(name) is not None and not isinstance(options[name], Mapping):
            raise ExecutorOptionsError(f"{name} must be a JSON object, not {options[name]!r}")
    address = options.get("address")
    if address is not None and not isinstance(address, str):
        raise ExecutorOptionsError(f"address must be a string such as 'head:6379', not {address!r}")
    if address and address != "auto" and "://" not in address:
        _host_port(address)


def executor_factory(
    kind: str = "local", options: Mapping[str, Any] | None = None
) -> Callable[..., PipelineExecutor]:
    """What run_scan(executor_factory=...) calls: the kind's executor with `options`.

    kind: "local", "slurm" or "ray". options: the executor's keyword arguments (see the
    module's docstring). Raises ExecutorOptionsError for options that do not fit.
    """
    options = dict(options or {})
    check_executor_options(kind, options)
    cls: Callable[..., PipelineExecutor] = CLASSES[kind]
    return partial(cls, **options)
