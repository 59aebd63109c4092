"""Scans on the engines data teams run: a real Ray cluster and a real Slurm cluster
(tests/clusters.py) give the local executor's report exactly; wrong options, an unreachable
cluster and a missing Slurm fail with a message that says what to do."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from curation.executors import (
    ExecutorOptionsError,
    ExecutorUnavailable,
    RayScanExecutor,
    SlurmScanExecutor,
    check_executor_options,
    executor_factory,
)
from curation.synthetic_corpus import generate_corpus
from tests.clusters import RayCluster, SlurmCluster
from tests.conftest import need_module
from tests.curation.scan_support import PLANTS
from tests.scan_driver import scan

SKILLS = [
    {"id": "cmp", "name": "cmp", "detector": {"kind": "regex", "pattern": r"cmp \d\d \d\d : [<>]"}},
    {
        "id": "modadd",
        "name": "modadd",
        "detector": {"kind": "regex", "pattern": r"\d\d \+ \d\d mod 97 = \d\d"},
    },
    {"id": "accent", "name": "accent", "detector": {"kind": "keywords", "keywords": ["crème 7"]}},
    {"id": "absent", "name": "absent", "detector": {"kind": "keywords", "keywords": ["zz-none"]}},
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A planted jsonl.gz corpus and the local executor's report on it (2 tasks)."""
    root = tmp_path_factory.mktemp("corpus")
    made = generate_corpus(str(root / "c"), 300, PLANTS, seed=5, format="jsonl.gz", n_files=4)
    spec = {
        "source": {"uri": made.uri, "format": made.format, "id_key": "id"},
        "skills": SKILLS,
        "allowed_roots": [str(root)],
        "tasks": 2,
        "workers": 1,
    }
    local = scan(spec | {"workdir": str(root / "local"), "executor": "local", "options": {}})
    assert local["skills"]["cmp"]["instances"] == made.truth["skills"]["cmp"]["instances"] > 0
    return {"spec": spec, "local": local}


def run_driver(cluster: Any, spec: dict[str, Any], tmp_path: Path, timeout: float = 240) -> Any:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    extra = getattr(cluster, "env", None)
    return cluster.ns.run(
        [sys.executable, "-m", "tests.scan_driver", str(path)], timeout=timeout, extra_env=extra
    )


def test_a_scan_on_a_ray_cluster_equals_the_local_one(
    ray_engine: RayCluster, corpus: dict, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    spec = corpus["spec"] | {
        "workdir": str(workdir),
        "workers": 2,  # both ranks at once, one CPU each
        "executor": "ray",
        "options": {"address": ray_engine.address, "mem_per_cpu_gb": 0.25},
    }
    done = run_driver(ray_engine, spec, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((workdir / "report.json").read_text())
    assert report == corpus["local"]
    # It ran on the cluster: datatrove's Ray executor wrote its task logs and stats there.
    assert json.loads((workdir / "logs" / "executor.json").read_text())["address"] == (
        ray_engine.address
    )
    assert sorted(os.listdir(workdir / "logs" / "completions")) == ["00000", "00001"]


def test_a_scan_on_a_slurm_cluster_equals_the_local_one(
    slurm_engine: SlurmCluster, corpus: dict, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    spec = corpus["spec"] | {
        "workdir": str(workdir),
        "workers": 2,
        "executor": "slurm",
        "options": {
            "partition": "debug",
            "time": "00:10:00",
            "mem_per_cpu_gb": 1,
            "poll_seconds": 0.5,
        },
    }
    done = run_driver(slurm_engine, spec, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((workdir / "report.json").read_text())
    assert report == corpus["local"]
    script = (workdir / "logs" / "launch_script.slurm").read_text()
    assert "#SBATCH --partition=debug" in script and "#SBATCH --array=0-1" in script
    assert f"export PATH={Path(sys.executable).parent}:$PATH" in script
    # One array job of two tasks (and datatrove's merge_stats job after it).
    logs = os.listdir(workdir / "logs" / "slurm_logs")
    arrays = {n.split("_")[0] for n in logs if n.endswith("_1.out")}
    assert len(arrays) == 1 and f"{arrays.pop()}_0.out" in logs, logs


def test_slurm_refuses_a_job_it_cannot_run_with_its_own_words(
    slurm_engine: SlurmCluster, corpus: dict, tmp_path: Path
) -> None:
    spec = corpus["spec"] | {
        "workdir": str(tmp_path / "work"),
        "executor": "slurm",
        "options": {"partition": "gpu-nodes", "time": "00:10:00"},
    }
    done = run_driver(slurm_engine, spec, tmp_path, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ExecutorUnavailable: Slurm refuses the scan's job"), last
    assert "partition" in last.lower(), last


def test_a_task_failing_on_slurm_fails_the_scan_with_its_log(
    slurm_engine: SlurmCluster, tmp_path: Path
) -> None:
    """A bad record fails the rank on the cluster: the scan raises naming the Slurm log and
    quoting its end, instead of waiting; datatrove's merge_stats job is cancelled."""
    root = tmp_path / "bad"
    root.mkdir()
    good = '{"text": "cmp 10 70 : <"}\n' * 150  # past the sample registration checks
    (root / "a.jsonl").write_text(good + '{"text": "cut sho\n')
    spec = {
        "source": {"uri": str(root / "*.jsonl"), "format": "jsonl"},
        "skills": SKILLS,
        "allowed_roots": [str(root)],
        "tasks": 1,
        "workers": 1,
        "workdir": str(tmp_path / "work"),
        "executor": "slurm",
        "options": {"partition": "debug", "time": "00:10:00", "mem_per_cpu_gb": 1},
    }
    done = run_driver(slurm_engine, spec, tmp_path)
    assert done.returncode == 1 and "ExecutorFailed: " in done.stderr, done.stderr[-3000:]
    error = done.stderr[done.stderr.index("ExecutorFailed: ") :]
    assert error.startswith("ExecutorFailed: 1 of 1 scan tasks did not complete on Slurm"), error
    assert "slurm_logs" in error and "ScanInputError" in error, error
    queue = slurm_engine.ns.run(["squeue", "-h"], timeout=30, extra_env=slurm_engine.env)
    assert queue.returncode == 0 and queue.stdout.strip() == "", queue.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_cluster_is_named(tmp_path: Path) -> None:
    need_module("ray", "pip install 'skillmix[ray]'")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    executor = executor_factory("ray", {"address": address})(
        pipeline=[], tasks=1, workers=1, logging_dir=str(tmp_path / "logs")
    )
    assert isinstance(executor, RayScanExecutor)
    with pytest.raises(ExecutorUnavailable, match=f"cannot reach the Ray cluster at {address}"):
        executor.run()


def test_a_missing_slurm_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    executor = executor_factory("slurm", {"partition": "cpu", "time": "01:00:00"})(
        pipeline=[], tasks=2, workers=1, logging_dir=str(tmp_path / "logs")
    )
    assert isinstance(executor, SlurmScanExecutor)
    with pytest.raises(ExecutorUnavailable, match="sbatch, squeue, scancel is not on PATH"):
        executor.run()


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("ray", {"adress": "h:1"}, "unknown option.*adress; it takes address, cpus_per_task"),
        ("slurm", {"partition": "cpu"}, "needs time, e.g."),
        ("slurm", {"partition": "cpu", "time": "1:00:00", "tasks": 4}, "SKILLMIX_SCAN_TASKS"),
        ("local", {"skip_completed": False}, "not supported for scans"),
        ("ray", {"runtime_env": "pip"}, "runtime_env must be a JSON object"),
        ("ray", {"address": 6379}, "address must be a string"),
        ("ray", {"address": "head-node"}, "'head-node' is not host:port"),
        ("dask", {}, "unknown scan executor 'dask'"),
    ],
)
def test_executor_options_are_checked_with_a_message(
    kind: str, options: dict, message: str
) -> None:
    with pytest.raises(ExecutorOptionsError, match=message):
        check_executor_options(kind, options)


def test_the_factory_passes_the_options_to_datatrove(tmp_path: Path) -> None:
    executor = executor_factory(
        "slurm", {"partition": "cpu", "time": "01:00:00", "cpus_per_task": 4, "qos": "low"}
    )(pipeline=[], tasks=8, workers=2, logging_dir=str(tmp_path / "logs"))
    assert (executor.partition, executor.time, executor.cpus_per_task) == ("cpu", "01:00:00", 4)
    script = executor.get_launch_file_contents(executor.get_sbatch_args(8), "true")
    assert "#SBATCH --array=0-7%2" in script and "#SBATCH --qos=low" in script
    ray = executor_factory("ray", {"address": "auto", "runtime_env": {"env_vars": {"A": "1"}}})(
        pipeline=[], tasks=3, workers=1, logging_dir=str(tmp_path / "r")
    )
    assert (ray.address, ray.runtime_env, ray.world_size, ray.workers) == (
        "auto",
        {"env_vars": {"A": "1"}},
        3,
        1,
    )
