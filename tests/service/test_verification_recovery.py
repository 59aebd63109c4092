"""A training worker SIGKILLed in the middle of a verification: a new worker finishes it
with the same results as an uninterrupted verification (CPU, deterministic), and runs that
had finished are not trained again. PostgreSQL + Redis, real worker processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from curation.synthetic_corpus import Plant, generate_corpus
from service import runner
from service.embedded import refresh_settings, run_api, start_worker
from service.settings import get_settings
from tests.service.conftest import CMP, auth, new_key
from tests.service.stack import kill, stop_process, wait_final, wait_for
from tests.service.test_worker import FAST_RECOVERY


@pytest.fixture
def api(
    pg_db: str, redis_url: str, env: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[httpx.Client]:
    env.setenv("SKILLMIX_BROKER_URL", redis_url)
    env.setenv("SKILLMIX_TRAINING_WORKERS", "1")
    for k, v in FAST_RECOVERY.items():
        env.setenv(k, v)
    refresh_settings()
    with (
        run_api() as base_url,
        httpx.Client(base_url=base_url, timeout=30, headers=auth(new_key("acme"))) as client,
    ):
        yield client


def arms(client: httpx.Client) -> tuple[str, str]:
    """A scanned corpus and an upweighted mixture, built in this process."""
    root = get_settings().resolved_data_dir / "corpora"
    generate_corpus(
        str(root / "web"),
        n_docs=240,
        seed=3,
        format="jsonl.gz",
        n_files=2,
        plants=[Plant("cmp", CMP, every=4, offset=2)],
    )
    corpus = client.post(
        "/v1/corpora",
        json={"name": "web", "format": "jsonl.gz", "uri": str(root / "web" / "*.jsonl.gz")},
    ).json()
    skill = client.post(
        "/v1/skills",
        json={
            "name": "cmp",
            "detector": {"kind": "builtin"},
            "generator": {"family": "number_comparison", "params": {}},
        },
    ).json()
    scan = client.post(
        "/v1/scans",
        json={"corpus_id": corpus["id"], "skill_ids": [skill["id"]], "batch_tokens": 1024},
    ).json()
    assert runner.execute(scan["job"]["id"]) == "succeeded"
    mixture = client.post(
        "/v1/mixtures",
        json={
            "corpus_id": corpus["id"],
            "scan_id": scan["id"],
            "batch_tokens": 1024,
            "seq_len": 64,
            "max_batches": 200,
            "plan": {skill["id"]: {"target": {"per_batch": 4}, "source": "synthesize"}},
        },
    ).json()
    assert runner.execute(mixture["job"]["id"]) == "succeeded"
    return mixture["id"], skill["id"]


def verify(client: httpx.Client, mixture_id: str, skill_id: str) -> dict:
    r = client.post(
        "/v1/verifications",
        json={
            "arms": {"upweighted": mixture_id},
            "skill_ids": [skill_id],
            "sizes": ["nano"],
            "seeds": [0, 1],
            "token_budget": 120 * 1024,
            "eval_every": 40,
            "checkpoint_every": 20,
            "device": "cpu",
        },
    )
    assert r.status_code == 202, r.text
    return r.json()


def finals(report: dict) -> list:
    return [(run["seed"], run["steps"], run["final"]) for run in report["runs"]]


def test_killed_training_worker_resumes_to_the_same_results(
    api: httpx.Client, tmp_path: Path
) -> None:
    mixture_id, skill_id = arms(api)
    ver = verify(api, mixture_id, skill_id)
    workdir = get_settings().work_dir / ver["job"]["id"] / "upweighted" / "nano"
    first = start_worker("training", log_path=tmp_path / "w1.log")
    # Kill once seed 0 is done and seed 1 has written a checkpoint.
    wait_for(
        lambda: (
            (workdir / "0" / "result.json").exists() and (workdir / "1" / "checkpoint.pt").exists()
        ),
        300,
        "one run done, one mid-way",
    )
    kill(first)
    done_before = (workdir / "0" / "result.json").stat().st_mtime_ns
    second = start_worker("training", log_path=tmp_path / "w2.log")
    try:
        resumed = wait_final(api, ver["job"]["id"], timeout=300)
        assert resumed["state"] == "succeeded", resumed
        assert resumed["attempts"] == 2
        # The finished run was reused, not trained again; the other resumed from a checkpoint.
        assert (workdir / "0" / "result.json").stat().st_mtime_ns == done_before
        assert json.loads((workdir / "1" / "result.json").read_text())["resumes"] >= 1

        clean = verify(api, mixture_id, skill_id)
        assert wait_final(api, clean["job"]["id"], timeout=300)["state"] == "succeeded"
    finally:
        stop_process(second)
    a = api.get(f"/v1/verifications/{ver['id']}").json()
    b = api.get(f"/v1/verifications/{clean['id']}").json()
    assert finals(a["report"]) == finals(b["report"])
    assert [v["accuracies"] for v in a["report"]["verdicts"]] == [
        v["accuracies"] for v in b["report"]["verdicts"]
    ]
    assert {run["state"] for run in a["runs"]} == {"done"}
