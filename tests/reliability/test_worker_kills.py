"""SIGKILL the worker's process group in the middle of real work (a scan, a mixture build,
a training verification): a new worker finishes the job in a second attempt, resuming
from what the first one completed, and the results equal those of an undisturbed run of
the same input. And SIGKILL only the pool process running a job, as the OOM killer would.
PostgreSQL, a private Redis, real worker processes."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from curation.synthetic_corpus import Plant, generate_corpus
from service.cli.embedded import refresh_settings
from service.settings import get_settings
from service.worker import runner
from tests.reliability.conftest import (
    Stack,
    db_job,
    executions,
    kill_group,
    runs_overlap,
    slow_reads,
)
from tests.service.conftest import CMP
from tests.service.stack import wait_for


def make_corpus(name: str, docs: int, copies: int) -> str:
    """A synthetic corpus of `copies` files, each the same `docs` documents (copying a
    file is much cheaper than generating more text); returns its glob."""
    root = get_settings().resolved_data_dir / "corpora"
    generate_corpus(
        str(root / "base"),
        n_docs=docs,
        seed=3,
        format="jsonl.gz",
        n_files=1,
        plants=[Plant("cmp", CMP, every=4, offset=2)],
    )
    (base,) = glob.glob(str(root / "base" / "*.jsonl.gz"))
    (root / name).mkdir()
    for i in range(copies):
        shutil.copyfile(base, root / name / f"part-{i:03d}.jsonl.gz")
    return str(root / name / "*.jsonl.gz")


def register(stack: Stack, uri: str) -> tuple[str, str]:
    """(corpus id, skill id) of a registered corpus and a comparison skill."""
    corpus = stack.client.post(
        "/v1/corpora", json={"name": "web", "format": "jsonl.gz", "uri": uri}
    )
    assert corpus.status_code == 201, corpus.text
    skill = stack.client.post(
        "/v1/skills",
        json={
            "name": "cmp",
            "detector": {"kind": "builtin"},
            "generator": {"family": "number_comparison", "params": {}},
        },
    )
    assert skill.status_code == 201, skill.text
    return corpus.json()["id"], skill.json()["id"]


def start_scan(stack: Stack, corpus_id: str, skill_id: str) -> dict[str, Any]:
    r = stack.client.post(
        "/v1/scans",
        json={"corpus_id": corpus_id, "skill_ids": [skill_id], "batch_tokens": 1024},
    )
    assert r.status_code == 202, r.text
    return r.json()


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def without(report: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in keys}


# --- scans ---------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_a_killed_scan_resumes_to_the_same_report(stack: Stack, env: pytest.MonkeyPatch) -> None:
    # Three datatrove ranks of two files each, run one after the other by the worker, which
    # reads a record a millisecond: 1.4 seconds a rank.
    env.setenv("SKILLMIX_SCAN_TASKS", "3")
    slow_reads(env, 0.001)
    refresh_settings()
    corpus_id, skill_id = register(stack, make_corpus("web", docs=700, copies=6))
    scan = start_scan(stack, corpus_id, skill_id)
    job_id = scan["job"]["id"]
    work = get_settings().work_dir / job_id
    first = stack.worker()

    def rank_done(rank: int) -> bool:
        return (work / "logs" / "completions" / f"{rank:05d}").exists()

    def reading(rank: int) -> bool:
        try:
            state = json.loads((work / "state" / f"{rank:05d}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return state["units_done"] > 0 and not state.get("finished")

    # Rank 0 is complete and rank 1 is reading its files: kill it there.
    wait_for(lambda: rank_done(0) and reading(1), 120, "rank 0 done, rank 1 under way")
    kill_group(first)
    hit = db_job(job_id)
    assert hit["state"] == "running" and 0 < hit["progress"] < 1, hit
    assert not rank_done(1)
    rank0 = mtime(work / "logs" / "completions" / "00000")

    second = stack.worker()
    job = stack.wait_final(job_id, timeout=120)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2, job
    # The second attempt skipped the rank the first one completed.
    assert mtime(work / "logs" / "completions" / "00000") == rank0

    kill_group(second)  # the reference scan runs here, at full speed
    clean = start_scan(stack, corpus_id, skill_id)
    assert runner.execute(clean["job"]["id"]) == "succeeded"
    resumed = stack.client.get(f"/v1/scans/{scan['id']}").json()["report"]
    reference = stack.client.get(f"/v1/scans/{clean['id']}").json()["report"]
    assert resumed["skills"] == reference["skills"]
    assert resumed["corpus"] == reference["corpus"]
    assert without(resumed, "skills", "corpus") == without(reference, "skills", "corpus")
    assert resumed["skills"][skill_id]["docs_scanned"] == 6 * 700


# --- mixtures --------------------------------------------------------------------------

SHARD_BATCHES = 500


def build_body(corpus_id: str, scan_id: str, skill_id: str) -> dict[str, Any]:
    return {
        "corpus_id": corpus_id,
        "scan_id": scan_id,
        "batch_tokens": 1024,
        "seq_len": 64,
        "seed": 7,
        "max_batches": 6 * SHARD_BATCHES,
        "plan": {skill_id: {"target": {"per_batch": 2}, "source": "synthesize"}},
    }


def data_files(out: Path) -> dict[str, str]:
    """sha256 of every data file of a mixture (not the audit, which names its plots' paths,
    nor the plots)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.iterdir())
        if p.is_file() and p.suffix != ".png" and p.name != "audit.json"
    }


def audit_file(out: Path) -> dict[str, Any]:
    return without(json.loads((out / "audit.json").read_text()), "artifacts")


@pytest.mark.timeout(240)
def test_a_killed_mixture_build_resumes_to_identical_files(
    stack: Stack, env: pytest.MonkeyPatch
) -> None:
    env.setenv("SKILLMIX_MIXTURE_SHARD_BATCHES", str(SHARD_BATCHES))
    slow_reads(env, 0.001)  # about half a second a shard
    refresh_settings()
    corpus_id, skill_id = register(stack, make_corpus("web", docs=2500, copies=2))
    scan = start_scan(stack, corpus_id, skill_id)
    assert runner.execute(scan["job"]["id"]) == "succeeded"
    r = stack.client.post("/v1/mixtures", json=build_body(corpus_id, scan["id"], skill_id))
    assert r.status_code == 202, r.text
    mixture = r.json()
    job_id, out = mixture["job"]["id"], Path(mixture["output"]["uri"])
    first = stack.worker()

    def committed() -> int:
        try:
            state = json.loads((out / ".build" / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return 0
        return len(state["shards"])

    # Two of six shards are written and the build is packing the third: kill it there.
    wait_for(lambda: committed() >= 2, 120, "two shards committed")
    kill_group(first)
    hit = db_job(job_id)
    assert hit["state"] == "running" and 0 < hit["progress"] < 1, hit
    assert committed() < 6 and not (out / "manifest.json").exists()
    kept = {p.name: mtime(p) for p in out.glob("tokens-*.bin")}

    second = stack.worker()
    job = stack.wait_final(job_id, timeout=120)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2, job
    # Shards the first attempt committed were kept, not written again.
    assert {p.name: mtime(p) for p in out.glob("tokens-*.bin") if p.name in kept} == kept

    kill_group(second)  # the reference build runs here, at full speed
    clean = stack.client.post(
        "/v1/mixtures", json=build_body(corpus_id, scan["id"], skill_id)
    ).json()
    assert runner.execute(clean["job"]["id"]) == "succeeded"
    resumed = stack.client.get(f"/v1/mixtures/{mixture['id']}").json()
    reference = stack.client.get(f"/v1/mixtures/{clean['id']}").json()
    assert resumed["manifest"] == reference["manifest"]
    assert len(resumed["manifest"]["shards"]) == 2 * 6  # a tokens and a text file a shard
    assert resumed["audit"] == reference["audit"]
    assert data_files(out) == data_files(Path(clean["output"]["uri"]))
    assert audit_file(out) == audit_file(Path(clean["output"]["uri"]))


# --- verifications ---------------------------------------------------------------------


def trained_arms(stack: Stack) -> tuple[str, str]:
    """(mixture id, skill id): a scanned corpus and an upweighted mixture, built here."""
    corpus_id, skill_id = register(stack, make_corpus("web", docs=120, copies=2))
    scan = start_scan(stack, corpus_id, skill_id)
    assert runner.execute(scan["job"]["id"]) == "succeeded"
    r = stack.client.post(
        "/v1/mixtures",
        json={
            "corpus_id": corpus_id,
            "scan_id": scan["id"],
            "batch_tokens": 1024,
            "seq_len": 64,
            "max_batches": 200,
            "plan": {skill_id: {"target": {"per_batch": 4}, "source": "synthesize"}},
        },
    )
    assert r.status_code == 202, r.text
    assert runner.execute(r.json()["job"]["id"]) == "succeeded"
    return r.json()["id"], skill_id


def verify(stack: Stack, mixture_id: str, skill_id: str) -> dict[str, Any]:
    r = stack.client.post(
        "/v1/verifications",
        json={
            "arms": {"upweighted": mixture_id},
            "skill_ids": [skill_id],
            "sizes": ["nano"],
            "seeds": [0, 1],
            "token_budget": 40 * 1024,
            "eval_every": 20,
            "checkpoint_every": 8,
            "device": "cpu",
        },
    )
    assert r.status_code == 202, r.text
    return r.json()


def finals(report: dict[str, Any]) -> list[Any]:
    return [(run["seed"], run["steps"], run["final"]) for run in report["runs"]]


@pytest.mark.timeout(300)
def test_a_killed_training_worker_resumes_to_the_same_results(stack: Stack) -> None:
    mixture_id, skill_id = trained_arms(stack)
    ver = verify(stack, mixture_id, skill_id)
    job_id = ver["job"]["id"]
    runs = get_settings().work_dir / job_id / "upweighted" / "nano"
    first = stack.worker("training")
    # Seed 0 is done and seed 1 has written a checkpoint: kill it there.
    wait_for(
        lambda: (runs / "0" / "result.json").exists() and (runs / "1" / "checkpoint.pt").exists(),
        240,
        "one run done, one mid-way",
    )
    kill_group(first)
    hit = db_job(job_id)
    assert hit["state"] == "running" and 0 < hit["progress"] < 1, hit
    assert not (runs / "1" / "result.json").exists()
    done_before = mtime(runs / "0" / "result.json")

    stack.worker("training")
    resumed = stack.wait_final(job_id, timeout=240)
    assert resumed["state"] == "succeeded", resumed
    assert resumed["attempts"] == 2, resumed
    # The finished run was reused, not trained again; the other resumed from a checkpoint.
    assert mtime(runs / "0" / "result.json") == done_before
    assert json.loads((runs / "1" / "result.json").read_text())["resumes"] >= 1

    clean = verify(stack, mixture_id, skill_id)
    assert stack.wait_final(clean["job"]["id"], timeout=240)["state"] == "succeeded"
    a = stack.client.get(f"/v1/verifications/{ver['id']}").json()
    b = stack.client.get(f"/v1/verifications/{clean['id']}").json()
    assert finals(a["report"]) == finals(b["report"])
    assert [v["accuracies"] for v in a["report"]["verdicts"]] == [
        v["accuracies"] for v in b["report"]["verdicts"]
    ]
    assert {run["state"] for run in a["runs"]} == {"done"}


# --- a pool process alone ----------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_killed_pool_process_is_replaced_and_its_job_runs_again(stack: Stack) -> None:
    """The kernel's OOM killer picks the pool process running the job, not the worker: the
    worker forks a new one, whose database connections must be its own (its parent's
    sweeper has some open), and the job runs again there."""
    r = stack.client.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 4, "steps": 8}})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    worker = stack.worker()
    stack.wait_running(job_id, 0.1, 0.7, timeout=90)
    (pid,) = {e["pid"] for e in executions(job_id)}
    assert pid != worker.pid
    os.kill(pid, signal.SIGKILL)

    job = stack.wait_final(job_id, timeout=90)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2, job
    records = executions(job_id)
    assert len({e["pid"] for e in records}) == 2 and runs_overlap(records) == [], records
    assert worker.poll() is None  # the same worker, with a new pool process
    log = stack.log_tails(chars=10**6)
    for error in ("OperationalError", "InterfaceError", "sweep failed"):
        assert error not in log, log
