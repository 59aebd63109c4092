"""A full disk in the middle of a scan, a mixture build and a training verification: the
job fails with a `DiskFull` error naming the file and the space, no file is left under a
final name with partial content, what was complete stays, and once space is freed the job
run again resumes to the result of an undisturbed run.

The filesystem is real: a small tmpfs mounted by the test over the folder the job writes
to (so this needs root, or CAP_SYS_ADMIN; in CI that is required). The disk is filled at a
chosen moment (after the first scan rank, after two mixture shards, after the first
checkpoint of a run) by a ballast file written until the kernel answers ENOSPC, as another
process filling the disk would; freeing space deletes the ballast. Jobs run in process
(`runner.execute`) against PostgreSQL; "run again" is the API's retry
(`POST /v1/jobs/{id}/retry`) and then the same job run here.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from curation.atomic import DiskFull, atomic_file, free_bytes
from curation.synthetic_corpus import Plant, generate_corpus
from service.api.app import create_app
from service.cli.embedded import refresh_settings
from service.db import session_scope
from service.models import Job
from service.settings import get_settings
from service.worker import runner
from tests.conftest import missing
from tests.service.conftest import CMP, auth, new_key

pytestmark = pytest.mark.usefixtures("pg_db")


class Disk:
    """A tmpfs of `size` mounted over `where` for the test; `fill` it, `free` it."""

    def __init__(self, where: Path, size: str) -> None:
        self.where, self.size = where, size
        self.ballast = where / "ballast"

    def mount(self) -> None:
        self.where.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            missing(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.where)], check=True)

    def fill(self) -> None:
        """Write the ballast until the filesystem is full (page by page at the end)."""
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (1 << 16, 1 << 12):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * chunk)
        finally:
            os.close(fd)
        assert free_bytes(self.where) == 0, free_bytes(self.where)

    def free(self) -> None:
        self.ballast.unlink()


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Disk]:
    disk = Disk(where, size)
    disk.mount()
    try:
        yield disk
    finally:
        disk.unmount()


@pytest.fixture
def api(pg_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(), headers=auth(new_key("acme"))) as client:
        yield client


def corpus(api: TestClient, docs: int, files: int) -> tuple[str, str]:
    """(corpus id, skill id): a synthetic jsonl.gz corpus and the comparison skill."""
    root = get_settings().resolved_data_dir / "corpora" / "web"
    generate_corpus(
        str(root),
        n_docs=docs,
        seed=3,
        format="jsonl.gz",
        n_files=files,
        plants=[Plant("cmp", CMP, every=4, offset=2)],
    )
    made = api.post(
        "/v1/corpora", json={"name": "web", "format": "jsonl.gz", "uri": f"{root}/*.jsonl.gz"}
    )
    assert made.status_code == 201, made.text
    skill = api.post(
        "/v1/skills",
        json={
            "name": "cmp",
            "detector": {"kind": "builtin"},
            "generator": {"family": "number_comparison", "params": {}},
        },
    )
    assert skill.status_code == 201, skill.text
    return made.json()["id"], skill.json()["id"]


def scan(api: TestClient, corpus_id: str, skill_id: str) -> dict[str, Any]:
    r = api.post(
        "/v1/scans", json={"corpus_id": corpus_id, "skill_ids": [skill_id], "batch_tokens": 1024}
    )
    assert r.status_code == 202, r.text
    return r.json()


def job_row(job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return {"state": job.state, "error": job.error, "attempts": job.attempts}


def run_again(api: TestClient, job_id: str) -> str:
    """Retry the failed job through the API, and run it here (with its training units)."""
    retried = api.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 202, retried.text
    job = retried.json()
    assert (job["state"], job["attempts"], job["error"]) == ("queued", 0, None), job
    return runner.execute_all(job_id)


def assert_disk_full_error(error: str | None, path: Path) -> None:
    assert error is not None and error.startswith("DiskFull: disk full writing "), error
    assert str(path) in error, error
    assert "free there" in error and "run it again" in error, error


def no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob("*.tmp")]
    assert left == [], left


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def without(report: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in keys}


# --- the writer ------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_write_into_a_full_disk_keeps_the_old_file_and_names_the_space(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "256k") as disk:
        target = disk.where / "big.bin"
        target.write_bytes(b"previous")
        with pytest.raises(DiskFull) as raised, atomic_file(target, size_hint=400_000) as f:
            f.write(b"x" * 400_000)
        err = raised.value
        assert err.errno == errno.ENOSPC and err.filename == str(target)
        # The free space after the failed write's temporary file was deleted: what a retry
        # finds (256 KiB less the old file's page).
        assert err.needed == 400_000 and err.free == free_bytes(target) == 256 * 1024 - 4096
        assert f"disk full writing {target}: it needs at least 400.0 kB" in str(err)
        assert "258.0 kB are free there" in str(err)
        # The old content stays under the name; the temporary file is gone.
        assert target.read_bytes() == b"previous"
        assert sorted(p.name for p in disk.where.iterdir()) == ["big.bin"]
        # It crosses a process pool whole (datatrove's ranks, training's runs).
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is DiskFull and str(again) == str(err)


# --- a scan ----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_scan_on_a_full_disk_fails_naming_it_and_resumes_once_space_is_freed(
    api: TestClient, env: pytest.MonkeyPatch
) -> None:
    from datatrove.executor import LocalPipelineExecutor

    env.setenv("SKILLMIX_SCAN_TASKS", "3")
    refresh_settings()
    corpus_id, skill_id = corpus(api, docs=600, files=6)
    with small_disk(get_settings().work_dir, "4m") as disk:
        first = scan(api, corpus_id, skill_id)
        job_id = first["job"]["id"]
        work = get_settings().work_dir / job_id
        mark = LocalPipelineExecutor.mark_rank_as_completed

        def fill_after_rank_0(self: LocalPipelineExecutor, rank: int) -> None:
            mark(self, rank)
            if rank == 0 and self.logging_dir.path.startswith(str(work)):
                disk.fill()

        env.setattr(LocalPipelineExecutor, "mark_rank_as_completed", fill_after_rank_0)
        assert runner.execute(job_id) == "failed"
        env.setattr(LocalPipelineExecutor, "mark_rank_as_completed", mark)

        job = job_row(job_id)
        print(job["error"])
        assert_disk_full_error(job["error"], work)
        # Rank 0 is complete and kept; rank 1 did not complete; nothing half-written.
        completions = work / "logs" / "completions"
        assert sorted(p.name for p in completions.iterdir()) == ["00000"]
        assert sorted(p.name for p in (work / "partials").iterdir()) == ["00000.json"]
        for path in [*(work / "partials").glob("*.json"), *(work / "state").glob("*.json")]:
            json.loads(path.read_text())  # whole
        assert not (work / "report.json").exists()
        no_temporaries(work)
        rank0 = mtime(completions / "00000")

        disk.free()
        assert run_again(api, job_id) == "succeeded"
        assert job_row(job_id)["attempts"] == 1  # a retry counts its attempts from 0
        assert mtime(completions / "00000") == rank0  # reused, not scanned again

        clean = scan(api, corpus_id, skill_id)
        assert runner.execute(clean["job"]["id"]) == "succeeded"
        resumed = api.get(f"/v1/scans/{first['id']}").json()["report"]
        reference = api.get(f"/v1/scans/{clean['id']}").json()["report"]
        assert resumed["skills"] == reference["skills"]
        assert resumed["corpus"] == reference["corpus"]
        assert without(resumed, "skills", "corpus") == without(reference, "skills", "corpus")
        assert resumed["skills"][skill_id]["docs_scanned"] == 600


# --- a mixture build -------------------------------------------------------------------

SHARD_BATCHES = 10


def mixture_body(corpus_id: str, scan_id: str, skill_id: str) -> dict[str, Any]:
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
    """sha256 of a mixture's data files (not the audit, which names its plots' paths)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.iterdir())
        if p.is_file() and p.suffix != ".png" and p.name != "audit.json"
    }


@pytest.mark.timeout(120)
def test_a_mixture_build_on_a_full_disk_keeps_its_shards_and_resumes(
    api: TestClient, env: pytest.MonkeyPatch
) -> None:
    from curation.mixture.state import BuildState

    env.setenv("SKILLMIX_MIXTURE_SHARD_BATCHES", str(SHARD_BATCHES))
    refresh_settings()
    corpus_id, skill_id = corpus(api, docs=1500, files=2)
    scanned = scan(api, corpus_id, skill_id)
    assert runner.execute(scanned["job"]["id"]) == "succeeded"
    with small_disk(get_settings().resolved_data_dir / "mixtures", "4m") as disk:
        made = api.post("/v1/mixtures", json=mixture_body(corpus_id, scanned["id"], skill_id))
        assert made.status_code == 202, made.text
        mixture = made.json()
        job_id, out = mixture["job"]["id"], Path(mixture["output"]["uri"])
        commit = BuildState.commit

        def fill_after_two_shards(self: BuildState, index: int, entries: list[Any]) -> None:
            commit(self, index, entries)
            if len(self.shards) == 2 and self.out_dir == str(out):
                disk.fill()

        env.setattr(BuildState, "commit", fill_after_two_shards)
        assert runner.execute(job_id) == "failed"
        env.setattr(BuildState, "commit", commit)

        job = job_row(job_id)
        print(job["error"])
        assert_disk_full_error(job["error"], out / "tokens-00002.bin")
        assert "shard 2 of the mixture" in job["error"]
        # The token files of shards 2..5 (4 x 10 batches x 1024 tokens x 2 bytes).
        assert "needs at least 81.9 kB" in job["error"], job["error"]
        state = json.loads((out / ".build" / "state.json").read_text())
        assert sorted(state["shards"]) == ["0", "1"]
        # Every file under a final name is a committed shard, whole; the rest is not there.
        for entry in [e for entries in state["shards"].values() for e in entries]:
            data = (out / entry["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
        names = {p.name for p in out.iterdir() if p.is_file()} - {"ballast"}
        assert names == {"tokens-00000.bin", "tokens-00001.bin"} | {
            f"shard-0000{i}.jsonl.gz" for i in (0, 1)
        }, names
        no_temporaries(out)
        kept = {p.name: mtime(p) for p in out.glob("tokens-*.bin")}

        disk.free()
        assert run_again(api, job_id) == "succeeded"
        assert {p.name: mtime(p) for p in out.glob("tokens-*.bin") if p.name in kept} == kept

        clean = api.post(
            "/v1/mixtures", json=mixture_body(corpus_id, scanned["id"], skill_id)
        ).json()
        assert runner.execute(clean["job"]["id"]) == "succeeded"
        resumed = api.get(f"/v1/mixtures/{mixture['id']}").json()
        reference = api.get(f"/v1/mixtures/{clean['id']}").json()
        assert resumed["manifest"] == reference["manifest"]
        assert len(resumed["manifest"]["shards"]) == 2 * 6
        assert resumed["audit"] == reference["audit"]
        assert data_files(out) == data_files(Path(clean["output"]["uri"]))
        no_temporaries(out)


# --- a checkpoint write ----------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_checkpoint_write_on_a_full_disk_keeps_the_last_one_and_resumes(
    api: TestClient, env: pytest.MonkeyPatch
) -> None:
    import torch

    from training import checkpoint

    # The runs train in this process, one thread, one after the other.
    env.setenv("SKILLMIX_TRAINING_WORKERS", "1")
    refresh_settings()
    torch.set_num_threads(1)
    corpus_id, skill_id = corpus(api, docs=240, files=2)
    scanned = scan(api, corpus_id, skill_id)
    assert runner.execute(scanned["job"]["id"]) == "succeeded"
    made = api.post(
        "/v1/mixtures",
        json={
            "corpus_id": corpus_id,
            "scan_id": scanned["id"],
            "batch_tokens": 1024,
            "seq_len": 64,
            "max_batches": 200,
            "plan": {skill_id: {"target": {"per_batch": 4}, "source": "synthesize"}},
        },
    )
    assert made.status_code == 202, made.text
    assert runner.execute(made.json()["job"]["id"]) == "succeeded"

    def verify() -> dict[str, Any]:
        r = api.post(
            "/v1/verifications",
            json={
                "arms": {"upweighted": made.json()["id"]},
                "skill_ids": [skill_id],
                "sizes": ["nano"],
                "seeds": [0, 1],
                "token_budget": 24 * 1024,
                "eval_every": 12,
                "checkpoint_every": 6,
                "device": "cpu",
            },
        )
        assert r.status_code == 202, r.text
        return r.json()

    with small_disk(get_settings().work_dir, "64m") as disk:
        ver = verify()
        job_id = ver["job"]["id"]
        runs = get_settings().work_dir / job_id / "upweighted" / "nano"
        save = checkpoint.save
        saved: list[int] = []

        def fill_after_first_checkpoint_of_seed_1(path: Path, *args: Any, **kw: Any) -> None:
            save(path, *args, **kw)
            if path.parent == runs / "1":
                saved.append(args[2]["step"])
                if len(saved) == 1:
                    disk.fill()

        env.setattr(checkpoint, "save", fill_after_first_checkpoint_of_seed_1)
        assert runner.execute_all(job_id) == "failed"
        env.setattr(checkpoint, "save", save)

        job = job_row(job_id)
        print(job["error"])
        # The job names the training unit that failed, and why.
        unit, _, error = job["error"].partition(" failed: ")
        assert unit.startswith("training run upweighted/nano/seeds 1 (run_"), job["error"]
        assert_disk_full_error(error, runs / "1" / "checkpoint.pt")
        assert "it needs at least " in error, error
        # The finished run and the last checkpoint are kept, whole.
        assert (runs / "0" / "result.json").exists()
        assert not (runs / "1" / "result.json").exists()
        assert checkpoint.load(runs / "1" / "checkpoint.pt")["state"]["step"] == saved[0]
        no_temporaries(runs)
        done_before = mtime(runs / "0" / "result.json")

        disk.free()
        assert run_again(api, job_id) == "succeeded"
        assert mtime(runs / "0" / "result.json") == done_before
        assert json.loads((runs / "1" / "result.json").read_text())["resumes"] == 1

        clean = verify()
        assert runner.execute_all(clean["job"]["id"]) == "succeeded"
        a = api.get(f"/v1/verifications/{ver['id']}").json()
        b = api.get(f"/v1/verifications/{clean['id']}").json()
        finals = [(r["seed"], r["steps"], r["final"]) for r in a["report"]["runs"]]
        assert finals == [(r["seed"], r["steps"], r["final"]) for r in b["report"]["runs"]]
        assert [v["accuracies"] for v in a["report"]["verdicts"]] == [
            v["accuracies"] for v in b["report"]["verdicts"]
        ]
        assert {run["state"] for run in a["runs"]} == {"done"}
