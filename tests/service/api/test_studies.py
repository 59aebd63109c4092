"""Studies over HTTP: a design becomes point mixtures and one verification (children that
point back with study_id), the study job analyses the runs, cancel reaches the children,
and apply builds the recommended mixture or says why it cannot. An adaptive design runs
look by look, each look's children the study job's."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from curation.mixture.models import MAX_REPEATS_LIMIT
from service.cli.embedded import refresh_settings
from service.db import session_scope
from service.models import Job, Study
from service.settings import get_settings
from service.store import studies, verifications
from service.worker import runner
from tests.service.api.test_mixtures import scanned  # noqa: F401  (fixture)
from tests.service.conftest import auth


def study_body(scanned: dict, **extra: object) -> dict:  # noqa: F811
    return {
        "kind": "dose_response",
        "skill_ids": [scanned["skill"]["id"]],
        "corpus_id": scanned["corpus"]["id"],
        "scan_id": scanned["scan"]["id"],
        "sizes": ["nano"],
        "seeds_per_point": 2,
        "batch_tokens": 4096,
        "seq_len": 256,
        "token_budget": 6 * 4096,
        "eval_every": 3,
        "device": "cpu",
        "design": {"doses": [1, 4]},
        **extra,
    }


def train_and_analyse(client: TestClient, key: str, study: dict) -> dict:
    """Train the study's (built) verification and run its analysis; the study then."""
    ver = client.get(f"/v1/verifications/{study['verification_id']}", headers=auth(key)).json()
    assert runner.execute_all(ver["job"]["id"]) == "succeeded"
    assert runner.execute(study["job"]["id"]) == "succeeded"
    return client.get(f"/v1/studies/{study['id']}", headers=auth(key)).json()


def apply_nano(client: TestClient, key: str, study: dict, scanned: dict) -> httpx.Response:  # noqa: F811
    """POST /v1/studies/{id}/apply for nano, on the scanned corpus."""
    body = {"size": "nano", "corpus_id": scanned["corpus"]["id"], "scan_id": scanned["scan"]["id"]}
    return client.post(f"/v1/studies/{study['id']}/apply", headers=auth(key), json=body)


def test_a_dose_response_study_runs_its_children_and_analyses_them(
    client: TestClient,
    key_a: str,
    key_b: str,
    scanned: dict,  # noqa: F811
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("SKILLMIX_TRAINING_WORKERS", "1")  # six tiny runs: no process pool
    refresh_settings()
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    r = client.post("/v1/studies", headers=auth(key_a), json=study_body(scanned))
    assert r.status_code == 202, r.text
    study = r.json()
    assert set(study["points"]) == {"dose_1", "dose_4", "baseline"}
    assert study["job"]["state"] == "queued"
    assert "waiting for" in study["job"]["progress"]["message"]
    for arm, point in study["points"].items():
        mixture = client.get(f"/v1/mixtures/{point['mixture_id']}", headers=auth(key_a)).json()
        if arm != "baseline":
            assert mixture["study_id"] == study["id"]
            dosing = mixture["plan"]["skills"][scanned["skill"]["id"]]
            assert dosing["target"]["per_batch"] == point["dose"], dosing
            # no repetition cap: the dose is what varies (a high one repeats instances)
            assert dosing["max_repeats"] == MAX_REPEATS_LIMIT, dosing
        assert runner.execute(mixture["job"]["id"]) == "succeeded"
    ver = client.get(f"/v1/verifications/{study['verification_id']}", headers=auth(key_a)).json()
    assert ver["study_id"] == study["id"] and set(ver["arms"]) == set(study["points"])
    assert ver["params"]["seed_scope"] == "both"  # the study's (default), passed on
    done = train_and_analyse(client, key_a, study)
    body = done["report"]["skills"][scanned["skill"]["id"]]
    # 3 arms x 2 seeds; the baseline sits at the corpus' natural rate
    assert sum(p["n_seeds"] for p in body["points"]) == 6
    assert body["natural_per_batch"] >= 0
    rec = body["recommendation"]["nano"]
    assert "too few runs" in rec["undetermined"]  # 6 runs cannot determine a dose: said so
    names = {a["name"] for a in done["job"]["artifacts"]}
    assert "study.json" in names and any(n.endswith("dose_response_nano.png") for n in names)
    # apply refuses an undetermined recommendation, with its reason
    apply = apply_nano(client, key_a, study, scanned)
    assert apply.status_code == 422 and "too few runs" in apply.json()["detail"]
    # another project sees nothing
    assert client.get(f"/v1/studies/{study['id']}", headers=auth(key_b)).status_code == 404
    listed = client.get("/v1/studies", headers=auth(key_a)).json()
    assert [s["id"] for s in listed["data"]] == [study["id"]]


def test_a_repetition_study_draws_each_point_from_its_pool(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("SKILLMIX_TRAINING_WORKERS", "1")
    refresh_settings()
    sid = scanned["skill"]["id"]
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    # The study's own shape (16 sequences of 64 a batch): its evaluations cost a quarter of
    # 256-token rows'. Seeds vary the initial weights only: no mixture variants to build.
    body = study_body(scanned, kind="repetition", design={"dose": 2, "pool_sizes": [4, None]},
                      seed_scope="init", batch_tokens=1024, seq_len=64,
                      token_budget=4 * 1024, eval_every=4)  # fmt: skip
    r = client.post("/v1/studies", headers=auth(key_a), json=body)
    assert r.status_code == 202, r.text
    study = r.json()
    assert set(study["points"]) == {"fresh", "pool_4", "baseline"}
    assert study["points"]["pool_4"]["pool_size"] == 4
    assert study["points"]["fresh"]["pool_size"] is None
    for arm, point in study["points"].items():
        mixture = client.get(f"/v1/mixtures/{point['mixture_id']}", headers=auth(key_a)).json()
        assert runner.execute(mixture["job"]["id"]) == "succeeded"
        if arm == "baseline":
            continue
        planned = mixture["plan"]["skills"][sid]
        assert planned["target"] == {"per_batch": 2} and planned["source"] == "synthesize"
        done = client.get(f"/v1/mixtures/{point['mixture_id']}", headers=auth(key_a)).json()
        placed = done["audit"]["skills"][sid]["placed"]
        if arm == "pool_4":  # every placement is one of the same 4 instances
            assert planned["pool_size"] == 4 and planned["unique_available"] == 4
            assert placed["unique_instances"] == 4
            assert placed["copies_per_unique"]["mean"] == planned["placements"] / 4
        else:
            assert "pool_size" not in planned and placed["unique_instances"] > 4
    done = train_and_analyse(client, key_a, study)
    report = done["report"]["skills"][sid]
    # 4 steps at 2 a batch: 8 placements, all fresh, or 2 copies of each of the pool's 4
    assert [(p["pool_size"], p["copies"], p["n_seeds"]) for p in report["points"]] == [
        (None, 1.0, 2), (4, 2.0, 2)
    ]  # fmt: skip
    assert all(p["seen_readout"] is not None for p in report["points"])
    assert report["baseline"][0]["n_seeds"] == 2
    trend = report["trend"]["nano"]
    for row in trend["points"]:
        assert row["loss_vs_baseline"]["n_pairs"] == 2  # general loss, paired by seed
        assert row["seen_minus_heldout"]["n_pairs"] == 2
    assert "slope" in trend["heldout_trend"] and "slope" in trend["gap_trend"]
    names = {a["name"] for a in done["job"]["artifacts"]}
    assert any(n.endswith("repetition_nano.png") for n in names)
    apply = apply_nano(client, key_a, study, scanned)
    assert apply.status_code == 422 and "recommends none" in apply.json()["detail"]


def build_look(client: TestClient, key: str, study: dict, look: dict) -> dict:
    """Build the look's new mixtures and train its verification; its verification."""
    ver = client.get(f"/v1/verifications/{look['verification_id']}", headers=auth(key)).json()
    assert ver["study_id"] == study["id"]
    for arm, mixture_id in ver["arms"].items():
        mixture = client.get(f"/v1/mixtures/{mixture_id}", headers=auth(key)).json()
        assert arm == "baseline" or mixture["study_id"] == study["id"]
        if mixture["job"]["state"] == "queued":
            assert runner.execute(mixture["job"]["id"]) == "succeeded"
    assert runner.execute_all(ver["job"]["id"]) == "succeeded"
    return ver


def job_parent(job_id: str) -> str | None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.parent_id


def test_an_adaptive_dose_response_runs_look_by_look_until_its_budget_is_spent(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("SKILLMIX_TRAINING_WORKERS", "1")
    refresh_settings()
    # The general loss over 64k held-out tokens is most of a tiny run's time (read twice a
    # run); the looks are the point here, so a shorter tail.
    env.setattr(verifications, "HELDOUT_TOKENS", 8192)
    sid = scanned["skill"]["id"]
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    # Look 1: the grid's ends (1 and 4, two doublings apart) and the baseline, 2 seeds
    # each: 6 of the 8 runs. The 2 left make one more point (look 2), then the budget is
    # spent. The repetition test's small shape and init-only seeds keep the runs cheap.
    adaptive = {"min": 1, "max": 4, "max_runs": 8}
    body = study_body(scanned, design={"adaptive": adaptive}, seed_scope="init",
                      batch_tokens=1024, seq_len=64, token_budget=4 * 1024,
                      eval_every=4)  # fmt: skip
    r = client.post("/v1/studies", headers=auth(key_a), json=body)
    assert r.status_code == 202, r.text
    study = r.json()
    assert set(study["points"]) == {"dose_1", "dose_4", "baseline"}
    assert study["points"]["dose_4"]["look"] == 1
    [first] = study["looks"]
    assert (first["look"], first["doses"], first["seeds"]) == (1, [1.0, 4.0], [0, 1])
    assert first["reason"].startswith("coarse grid") and first["runs_so_far"] == 0
    assert first["verification_id"] == study["verification_id"]
    build_look(client, key_a, study, first)
    # The study job analyses look 1, starts look 2 and waits for it again.
    assert runner.execute(study["job"]["id"]) == "waiting"
    mid = client.get(f"/v1/studies/{study['id']}", headers=auth(key_a)).json()
    assert mid["job"]["state"] == "queued" and "look 2" in mid["job"]["progress"]["message"]
    second = mid["looks"][1]
    assert second["look"] == 2 and second["runs_so_far"] == 6 and second["seeds"] == [2, 3]
    assert len(second["doses"]) == 1 and 1 <= second["doses"][0] <= 4, second
    assert second["fit"][f"{sid}/nano"]["n_runs"] == 4  # the baseline places none: not fitted
    assert mid["verification_id"] == second["verification_id"] != first["verification_id"]
    ver2 = build_look(client, key_a, mid, second)
    assert ver2["params"]["seed_scope"] == "init"  # the study's, at every look
    assert "baseline" not in ver2["arms"]  # look 1's baseline stands for the study
    with session_scope() as session:  # every look's children are the study job's
        row = session.get(Study, study["id"])
        assert row is not None
        ver_ids = studies.verification_ids(row)
    assert ver_ids == [first["verification_id"], second["verification_id"]]
    for ver_id in ver_ids:
        ver = client.get(f"/v1/verifications/{ver_id}", headers=auth(key_a)).json()
        assert job_parent(ver["job"]["id"]) == study["job"]["id"]
    assert runner.execute(study["job"]["id"]) == "succeeded"
    done = client.get(f"/v1/studies/{study['id']}", headers=auth(key_a)).json()
    report = done["report"]
    looks = report["design"]["looks"]
    assert [look["look"] for look in looks] == [1, 2, None]
    assert looks[-1]["done"] and looks[-1]["reason"] == "budget spent: 8 of 8 runs"
    assert looks[-1]["runs_so_far"] == 8 and report["design"]["reason"] == looks[-1]["reason"]
    assert report["verification_ids"] == ver_ids
    points = report["skills"][sid]["points"]
    assert sum(p["n_seeds"] for p in points) == 8  # both looks' runs in one analysis
    seeds = {s["seed"] for p in points for s in p["seeds"]}
    assert seeds == {0, 1, 2, 3}


def test_an_adaptive_size_transfer_starts_with_the_coarse_grid_for_every_size(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    adaptive = {"min": 1, "max": 16, "max_runs": 24}
    body = study_body(scanned, kind="size_transfer", sizes=["nano", "micro"],
                      design={"adaptive": adaptive})  # fmt: skip
    r = client.post("/v1/studies", headers=auth(key_a), json=body)
    assert r.status_code == 202, r.text
    study = r.json()
    [first] = study["looks"]
    assert first["doses"] == [1.0, 4.0, 16.0] and first["reason"].startswith("coarse grid")
    assert set(study["points"]) == {"dose_1", "dose_4", "dose_16", "baseline"}
    ver = client.get(f"/v1/verifications/{study['verification_id']}", headers=auth(key_a))
    assert ver.json()["params"]["sizes"] == ["nano", "micro"]  # one look trains every size


def test_cancelling_an_adaptive_study_cancels_every_looks_children(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    body = study_body(scanned, design={"adaptive": {"min": 1, "max": 4, "max_runs": 16}})
    study = client.post("/v1/studies", headers=auth(key_a), json=body).json()
    # Look 2 as the study job starts it (here without training look 1: cancel is the point)
    decision = {"doses": [2.0, 4.0], "done": False, "reason": "test", "fit": None}
    with session_scope() as session:
        _, send = studies.start_look(session, study["id"], get_settings(), decision, 6)
        session.commit()
    send()
    mid = client.get(f"/v1/studies/{study['id']}", headers=auth(key_a)).json()
    assert set(mid["points"]) == {"dose_1", "dose_2", "dose_4", "baseline"}
    assert mid["points"]["dose_2"]["look"] == 2 and mid["points"]["dose_4"]["look"] == 1
    r = client.post(f"/v1/jobs/{study['job']['id']}/cancel", headers=auth(key_a))
    assert r.status_code in (200, 202), r.text
    done = client.get(f"/v1/studies/{study['id']}", headers=auth(key_a)).json()
    assert done["job"]["state"] == "cancelled"
    for point in done["points"].values():
        mixture = client.get(f"/v1/mixtures/{point['mixture_id']}", headers=auth(key_a)).json()
        assert mixture["job"]["state"] == "cancelled", point
    for look in done["looks"]:
        ver = client.get(f"/v1/verifications/{look['verification_id']}", headers=auth(key_a))
        assert ver.json()["job"]["state"] == "cancelled", look


def test_cancelling_a_study_cancels_its_children(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    study = client.post("/v1/studies", headers=auth(key_a), json=study_body(scanned)).json()
    r = client.post(f"/v1/jobs/{study['job']['id']}/cancel", headers=auth(key_a))
    assert r.status_code in (200, 202), r.text
    done = client.get(f"/v1/studies/{study['id']}", headers=auth(key_a)).json()
    assert done["job"]["state"] == "cancelled"
    for point in done["points"].values():
        mixture = client.get(f"/v1/mixtures/{point['mixture_id']}", headers=auth(key_a)).json()
        assert mixture["job"]["state"] == "cancelled", point
    ver = client.get(f"/v1/verifications/{study['verification_id']}", headers=auth(key_a)).json()
    assert ver["job"]["state"] == "cancelled"


def test_bad_designs_are_refused_with_a_reason(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    cases = [
        ({"design": {"doses": [1]}}, 422, "validation-error", ""),
        ({"kind": "repetition", "design": {"dose": 2, "pool_sizes": []}}, 422,
         "validation-error", "at least 2 items"),
        ({"kind": "repetition", "design": {"dose": 0, "pool_sizes": [None, 40]}}, 422,
         "validation-error", "greater than 0"),
        ({"kind": "repetition", "design": {"dose": 2, "pool_sizes": [None, 0]}}, 422,
         "validation-error", "pool_sizes.1: Input should be greater than or equal to 1"),
        ({"kind": "repetition", "design": {"dose": 2, "pool_sizes": [40, None, 40]}}, 422,
         "validation-error", "lists 40 more than once"),
        ({"kind": "repetition", "design": {"pool_sizes": [None, 40]}}, 422,
         "validation-error", "needs design.dose"),
        ({"kind": "repetition", "design": {"dose": 2, "pool_sizes": [None, 10**7]}}, 422,
         "plan-infeasible", "pool_size=10,000,000 is larger than the generator's train split"),
        ({"design": {"adaptive": {"min": 16, "max": 0.25}}}, 422, "validation-error",
         "must be below adaptive.max"),
        ({"design": {"adaptive": {"min": 1, "max": 16, "max_runs": 5}}}, 422,
         "validation-error", "need 6 runs"),
        ({"kind": "spacing", "design": {"adaptive": {"min": 1, "max": 16}}}, 422,
         "study-unavailable", "design.adaptive places the doses of a dose_response or"),
        ({"kind": "spacing", "design": {"dose": 2, "schedules": [{"n": 2, "k": 1},
                                                                  {"n": 3, "k": 2}]}},
         422, "validation-error", ""),
        ({"sizes": ["gigantic"]}, 422, "validation-error", ""),
        ({"max_batches": 20, "token_budget": 8 * 4096}, 422, "validation-error",
         "raise max_batches to at least 24"),
        ({"skill_ids": ["skill_nope"]}, 422, "skill-not-scanned", ""),
    ]  # fmt: skip
    for extra, status, slug, says in cases:
        r = client.post("/v1/studies", headers=auth(key_a), json=study_body(scanned, **extra))
        assert r.status_code == status, (extra, r.text)
        assert r.json()["type"].endswith(slug), (extra, r.text)
        assert says in r.json()["detail"], (extra, r.text)
    # nothing was left behind by the refused creates
    assert client.get("/v1/studies", headers=auth(key_a)).json()["data"] == []
