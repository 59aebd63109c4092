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
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from curation.synthetic_corpus import Plant, generate_corpus
from service.cli.embedded import refresh_settings
from service.db import session_scope
from service.models import TrainingRun
from service.settings import get_settings
from service.store import training_runs
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


# --- training units shared by several workers -------------------------------------------

SEEDS = list(range(6))


def shared_body(mixture_id: str, skill_id: str, baseline: str = "auto") -> dict[str, Any]:
    return {
        "arms": {"upweighted": mixture_id, "baseline": baseline},
        "skill_ids": [skill_id],
        "sizes": ["nano"],
        "seeds": SEEDS,
        "token_budget": 48 * 1024,
        "eval_every": 24,
        "checkpoint_every": 6,
        "device": "cpu",
    }


def held_units(job_id: str) -> dict[str, int]:
    """Running units of the job -> the pid that holds each (lease owners are pid@host:...)."""
    with session_scope() as session:
        return {
            u.id: int(u.lease_owner.split("@")[0])
            for u in training_runs.units_of(session, job_id)
            if u.state == "running" and u.lease_owner
        }


def kill_a_checkpointed_unit(job_id: str, workers: list, what: str) -> tuple[str, set[str]]:
    """Wait until a held unit of the verification job has a checkpoint and no result yet,
    then SIGKILL its worker's process group: (that unit, every unit the worker held)."""
    work = get_settings().work_dir / job_id

    def checkpointed_and_held() -> dict[str, int]:
        with session_scope() as session:
            units = {u.id: u for u in training_runs.units_of(session, job_id)}
        out = {}
        for unit_id, pid in held_units(job_id).items():
            unit = units[unit_id]
            run = work / unit.arm / unit.size / str(unit.seeds[0])
            if (run / "checkpoint.pt").exists() and not (run / "result.json").exists():
                out[unit_id] = pid
        return out

    wait_for(lambda: bool(checkpointed_and_held()), 300, what)
    unit_id, pid = next(iter(checkpointed_and_held().items()))
    (victim,) = [w for w in workers if os.getpgid(pid) == w.pid]
    lost = {u for u, p in held_units(job_id).items() if os.getpgid(p) == victim.pid}
    kill_group(victim)
    assert unit_id in lost
    return unit_id, lost


def trained_lines(stack: Stack) -> list[str]:
    """The run each "trained N steps" line names: one per run trained to its end."""
    text = "".join(p.read_text(errors="replace") for p in stack.logs.glob("worker-*.log"))
    return re.findall(r"trained \d+ steps in [\d.]+s \[.*?[ \[]run=(\S+?)[\] ]", text)


def by_run(report: dict[str, Any]) -> dict[tuple[str, int], Any]:
    return {(r["arm"], r["seed"]): (r["steps"], r["final"]) for r in report["runs"]}


@pytest.mark.timeout(600)
def test_three_training_workers_share_a_verification_and_survive_a_kill(stack: Stack) -> None:
    """2 arms x 6 seeds, one unit each, shared by three training worker processes; one of
    them is SIGKILLed while its unit trains: its unit's lease runs out, the sweeper sends it
    again, another worker resumes it from its checkpoint. Every run is trained to its end
    exactly once, and the report equals an undisturbed verification's."""
    mixture_id, skill_id = trained_arms(stack)
    r = stack.client.post("/v1/verifications", json=shared_body(mixture_id, skill_id))
    assert r.status_code == 202, r.text
    ver = r.json()
    job_id, baseline_id = ver["job"]["id"], ver["arms"]["baseline"]
    baseline = stack.client.get(f"/v1/mixtures/{baseline_id}").json()
    assert runner.execute(baseline["job"]["id"]) == "succeeded"  # sends the verification
    workers = [stack.worker("training") for _ in range(3)]
    work = get_settings().work_dir / job_id
    unit_id, lost = kill_a_checkpointed_unit(job_id, workers, "a unit mid-way, checkpointed")
    with session_scope() as session:
        unit = session.get(TrainingRun, unit_id)
        assert unit is not None and unit.state == "running"
        killed_run = work / unit.arm / unit.size / str(unit.seeds[0])
    assert not (killed_run / "result.json").exists()

    job = stack.wait_final(job_id, timeout=400)
    assert job["state"] == "succeeded", (job, stack.log_tails())
    done = stack.client.get(f"/v1/verifications/{ver['id']}").json()
    units = {run["unit"]["id"]: run["unit"] for run in done["runs"]}
    assert len(done["runs"]) == len(units) == 12
    assert {u["state"] for u in units.values()} == {"succeeded"}
    # The killed worker's unit ran a second attempt; any other a single one.
    assert {u for u, unit in units.items() if unit["attempts"] > 1} == lost, units
    assert json.loads((killed_run / "result.json").read_text())["resumes"] >= 1
    assert {run["state"] for run in done["runs"]} == {"done"}
    assert all(run["summary"]["tokens_per_second"] > 0 for run in done["runs"])
    # Every run was trained to its end once: one "trained" line each, across all workers.
    trained = trained_lines(stack)
    expected = {f"{arm}/nano/{seed}" for arm in ("upweighted", "baseline") for seed in SEEDS}
    assert sorted(trained) == sorted(expected), trained

    # The reference: the same verification, undisturbed, by the two surviving workers.
    clean = stack.client.post(
        "/v1/verifications", json=shared_body(mixture_id, skill_id, baseline_id)
    ).json()
    assert stack.wait_final(clean["job"]["id"], timeout=400)["state"] == "succeeded"
    reference = stack.client.get(f"/v1/verifications/{clean['id']}").json()["report"]
    report = done["report"]
    assert by_run(report) == by_run(reference)
    assert [v["accuracies"] for v in report["verdicts"]] == [
        v["accuracies"] for v in reference["verdicts"]
    ]
    assert [v["verdict"] for v in report["verdicts"]] == [
        v["verdict"] for v in reference["verdicts"]
    ]


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


# --- a study ---------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_study_survives_a_killed_training_worker(stack: Stack) -> None:
    """A dose-response study on real workers (one curation, two training): its child
    mixtures build, its verification's units train, and the training worker holding a
    checkpointed unit is SIGKILLed mid-run. The unit's lease runs out, another worker
    resumes it from its checkpoint, and the study still ends with every point's seeds
    analysed, as a verification does."""
    corpus_id, skill_id = register(stack, make_corpus("web", docs=120, copies=2))
    scan = start_scan(stack, corpus_id, skill_id)
    assert runner.execute(scan["job"]["id"]) == "succeeded"
    r = stack.client.post(
        "/v1/studies",
        json={
            "kind": "dose_response", "skill_ids": [skill_id], "corpus_id": corpus_id,
            "scan_id": scan["id"], "sizes": ["nano"], "seeds_per_point": 2,
            "seed_scope": "init", "batch_tokens": 1024, "seq_len": 64, "max_batches": 200,
            "token_budget": 48 * 1024, "eval_every": 24, "checkpoint_every": 6,
            "device": "cpu", "design": {"doses": [1, 4]},
        },
    )  # fmt: skip
    assert r.status_code == 202, r.text
    study = r.json()
    ver_id = study["verification_id"]
    ver_job = stack.client.get(f"/v1/verifications/{ver_id}").json()["job"]["id"]
    stack.worker("curation")
    workers = [stack.worker("training") for _ in range(2)]
    _, lost = kill_a_checkpointed_unit(ver_job, workers, "a study's unit mid-way, checkpointed")

    job = stack.wait_final(study["job"]["id"], timeout=400)
    assert job["state"] == "succeeded", (job, stack.log_tails())
    ver = stack.client.get(f"/v1/verifications/{ver_id}").json()
    units = {run["unit"]["id"]: run["unit"] for run in ver["runs"]}
    assert len(units) == 6 and {u["state"] for u in units.values()} == {"succeeded"}
    assert {u for u, unit in units.items() if unit["attempts"] > 1} == lost, units
    done = stack.client.get(f"/v1/studies/{study['id']}").json()
    body = done["report"]["skills"][skill_id]
    assert sum(p["n_seeds"] for p in body["points"]) == 6  # 2 doses and the baseline x 2
    assert sorted(trained_lines(stack)) == sorted(
        f"{arm}/nano/{seed}" for arm in ("dose_1", "dose_4", "baseline") for seed in (0, 1)
    )
