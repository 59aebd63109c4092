"""The scan job on the engine SKILLMIX_SCAN_EXECUTOR names: on a real Ray cluster it reports
what the local executor reports; an unreachable cluster, a missing Slurm or a misspelt
option fail with a message that says what to do."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.cli.embedded import refresh_settings
from service.settings import Settings, get_settings
from service.worker import runner
from tests.clusters import RayCluster
from tests.conftest import need_module
from tests.service.conftest import auth, register_scan


def new_scan(client: TestClient, key: str, uri: str, like: dict | None = None) -> dict:
    """A queued scan of the `cmp` skill on a jsonl.gz corpus at `uri` (registered with it), or
    of the same corpus and skill as the scan `like`."""
    if like is None:
        return register_scan(client, uri, auth(key))["scan"]
    r = client.post(
        "/v1/scans",
        headers=auth(key),
        json={
            "corpus_id": like["corpus_id"],
            "skill_ids": [s["id"] for s in like["skills"]],
            "batch_tokens": like["batch_tokens"],
        },
    )
    assert r.status_code == 202, r.text
    return r.json()


def scan_of(client: TestClient, key: str, scan: dict) -> dict:
    return client.get(f"/v1/scans/{scan['id']}", headers=auth(key)).json()


def test_a_scan_job_on_ray_reports_what_the_local_one_does(
    ray_engine: RayCluster, client: TestClient, key_a: str, planted: dict
) -> None:
    local = new_scan(client, key_a, planted["uri"])
    assert runner.execute(local["job"]["id"]) == "succeeded"
    on_ray = new_scan(client, key_a, planted["uri"], like=local)
    settings = get_settings()
    # A worker process as `skillmix worker` runs it, with the executor set in its
    # environment, inside the cluster's namespace (the only place its address answers).
    done = ray_engine.ns.run(
        [
            sys.executable,
            "-c",
            "import sys; from service.worker import runner; print(runner.execute(sys.argv[1]))",
            on_ray["job"]["id"],
        ],
        timeout=240,
        extra_env={
            "SKILLMIX_DATA_DIR": str(settings.resolved_data_dir),
            "SKILLMIX_ALLOWED_ROOTS": ",".join(settings.allowed_roots),
            "SKILLMIX_SCAN_WORKERS": "2",
            "SKILLMIX_SCAN_EXECUTOR": "ray",
            "SKILLMIX_SCAN_EXECUTOR_OPTIONS": json.dumps(
                {"address": ray_engine.address, "mem_per_cpu_gb": 0.25}
            ),
        },
    )
    assert done.stdout.strip().splitlines()[-1:] == ["succeeded"], done.stderr[-3000:]
    want, got = scan_of(client, key_a, local), scan_of(client, key_a, on_ray)
    assert got["job"]["state"] == "succeeded"
    assert got["report"] == want["report"]
    assert got["report"]["skills"][on_ray["skills"][0]["id"]]["instances"] > 0
    logs = settings.work_dir / on_ray["job"]["id"] / "logs"
    assert json.loads((logs / "executor.json").read_text())["address"] == ray_engine.address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_cluster_fails_the_job_with_its_address(
    env: pytest.MonkeyPatch, client: TestClient, key_a: str, planted: dict
) -> None:
    need_module("ray", "pip install 'skillmix[ray]'")
    address = f"127.0.0.1:{free_port()}"
    env.setenv("SKILLMIX_SCAN_EXECUTOR", "ray")
    env.setenv("SKILLMIX_SCAN_EXECUTOR_OPTIONS", json.dumps({"address": address}))
    refresh_settings()
    scan = new_scan(client, key_a, planted["uri"])
    assert runner.execute(scan["job"]["id"]) == "failed"
    error = scan_of(client, key_a, scan)["job"]["error"]
    assert error.startswith(f"ExecutorUnavailable: cannot reach the Ray cluster at {address}")
    assert "ray start --head" in error


def test_a_missing_slurm_fails_the_job_saying_what_to_install(
    env: pytest.MonkeyPatch, client: TestClient, key_a: str, planted: dict, tmp_path: Path
) -> None:
    env.setenv("SKILLMIX_SCAN_EXECUTOR", "slurm")
    env.setenv("SKILLMIX_SCAN_EXECUTOR_OPTIONS", '{"partition": "cpu", "time": "01:00:00"}')
    refresh_settings()
    scan = new_scan(client, key_a, planted["uri"])
    empty = tmp_path / "bin"
    empty.mkdir()
    env.setenv("PATH", str(empty))  # a worker machine without Slurm's commands
    assert runner.execute(scan["job"]["id"]) == "failed"
    error = scan_of(client, key_a, scan)["job"]["error"]
    assert error.startswith("ExecutorUnavailable: the scan executor is slurm but sbatch"), error
    assert "slurm-client" in error


@pytest.mark.parametrize(
    ("executor", "options", "message"),
    [
        ("slurm", '{"partition": "cpu"}', "the slurm executor needs time"),
        ("ray", '{"adress": "head:6379"}', "unknown option.*adress"),
        ("local", '{"workers": 4}', "SKILLMIX_SCAN_WORKERS"),
    ],
)
def test_executor_options_are_checked_when_the_settings_load(
    env: pytest.MonkeyPatch, executor: str, options: str, message: str
) -> None:
    env.setenv("SKILLMIX_SCAN_EXECUTOR", executor)
    env.setenv("SKILLMIX_SCAN_EXECUTOR_OPTIONS", options)
    with pytest.raises(ValidationError, match=f"SKILLMIX_SCAN_EXECUTOR_OPTIONS: .*{message}"):
        Settings()
