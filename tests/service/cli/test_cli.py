"""The `skillmix` command as a user runs it: keys, db, and the demo end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from service.auth import project_for_key
from service.db import session_scope
from service.migrate import alembic_config


def skillmix(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def test_db_upgrade_then_keys_create_json(env: pytest.MonkeyPatch) -> None:
    up = skillmix("db", "upgrade")
    assert up.returncode == 0, up.stderr
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert f"database at {head}" in up.stdout
    created = skillmix("keys", "create", "--project", "acme", "--json")
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["project"] == "acme" and out["key"].startswith("sk_")
    with session_scope() as session:
        project = project_for_key(session, out["key"])
        assert project is not None and project.name == "acme"


def test_unknown_queue_is_a_usage_error(env: pytest.MonkeyPatch) -> None:
    r = skillmix("worker", "--queues", "curation,gpu-fast")
    assert r.returncode == 2
    assert "unknown queue" in r.stderr


@pytest.mark.timeout(900)  # the subprocess' own limit; the suite's default is 300 s
def test_demo_runs_the_whole_loop(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The demo at a small scale (the full one, 5 seeds x 4000 steps, is `make demo`)."""
    r = skillmix(
        "demo", "--data-dir", str(tmp_path / "demo"), "--seeds", "2", "--steps", "100", timeout=900
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    for name in ("compare-2-digit", "mod-add-97", "token-pair-order"):
        assert name in r.stdout
    assert "frequency: 3,000 docs" in r.stdout
    assert "audit of the built mixture" in r.stdout and ": passed" in r.stdout
    assert "verdicts" in r.stdout and "upweighted" in r.stdout and "baseline" in r.stdout
    assert "demo finished" in r.stdout


@pytest.mark.timeout(900)
def test_study_demo_runs_a_dose_response(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`make study-demo` at a small scale (two doses and the baseline, 2 seeds each, 40
    steps): a study over HTTP with real workers, from the design to the printed answer."""
    r = skillmix(
        "demo", "--data-dir", str(tmp_path / "demo"), "--study", "dose", "--doses", "1,8",
        "--seeds", "2", "--steps", "40", timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "studying the dose" in r.stdout and "nano:" in r.stdout
    assert "study demo finished" in r.stdout


def test_bad_demo_doses_are_a_usage_error(env: pytest.MonkeyPatch) -> None:
    r = skillmix("demo", "--study", "dose", "--doses", "1,two")
    assert r.returncode == 2 and "numbers separated by commas" in r.stderr
    r = skillmix("demo", "--doses", "1,2")
    assert r.returncode == 2 and "--doses needs --study dose" in r.stderr


def test_bad_devices_are_a_usage_error(env: pytest.MonkeyPatch) -> None:
    r = skillmix("worker", "--queues", "training", "--devices", "0,0")
    assert r.returncode == 2 and "distinct device indices" in r.stderr


def children(pid: int) -> dict[int, dict[str, str]]:
    """The processes whose parent is `pid` -> their environment (from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if not entry.isdigit() or int(stat[stat.rindex(")") + 2 :].split()[1]) != pid:
                continue
            raw = Path(f"/proc/{entry}/environ").read_bytes()
        except (OSError, ValueError):
            continue
        found[int(entry)] = dict(
            item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
        )
    return found


@pytest.mark.timeout(120)
def test_devices_run_one_training_worker_per_gpu(sqlite_db: str, tmp_path: Path) -> None:
    """`skillmix worker --queues training --devices 0,1`: a worker process per device, each
    seeing only its own; SIGTERM stops them all and the command exits 0. (No GPU here: the
    workers start and consume all the same.)"""
    log = tmp_path / "devices.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--queues", "training",
             "--devices", "0,1"],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            workers = children(proc.pid)
            if len(workers) == 2 and log.read_text(errors="replace").count(" ready.") == 2:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        else:
            raise AssertionError(f"two device workers did not start: {log.read_text()[-3000:]}")
        assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in workers.values()) == ["0", "1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
