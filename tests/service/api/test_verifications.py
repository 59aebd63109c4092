"""Verifications over HTTP: arms are checked before anything runs; an automatic baseline is
built beside the treatment; each run is recorded; the report carries verdicts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.cli.embedded import refresh_settings
from service.worker import runner
from tests.service.api.test_mixtures import body, scanned  # noqa: F401  (fixture)
from tests.service.conftest import auth


@pytest.fixture
def treatment(client: TestClient, key_a: str, scanned: dict) -> dict:  # noqa: F811
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    sid = scanned["skill"]["id"]
    plan = {sid: {"target": {"per_batch": 3}, "source": "synthesize"}}
    r = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned, plan=plan))
    assert r.status_code == 202, r.text
    return {**scanned, "mixture": r.json()}


def test_verification_with_auto_baseline_records_runs_and_verdicts(
    client: TestClient, key_a: str, treatment: dict, env: pytest.MonkeyPatch
) -> None:
    """The job hands its training to one unit per (arm, size, seed) and ends its attempt
    (`detached`); the units run here one after another (runner.execute_all), and the last
    one writes the report. The design is sequential (min_seeds 1, max_seeds 2: looks at 1
    and 2 seeds): one seed cannot decide a verdict (its interval spans 0.5), so
    training.verdict.next_look asks for the second look, whose units are planned and
    trained as the first look's were, and the report covers both."""
    env.setenv("SKILLMIX_TRAINING_WORKERS", "1")
    refresh_settings()
    sid = treatment["skill"]["id"]
    r = client.post(
        "/v1/verifications",
        headers=auth(key_a),
        json={
            "arms": {"upweighted": treatment["mixture"]["id"], "baseline": "auto"},
            "skill_ids": [sid],
            "sizes": ["nano"],
            "min_seeds": 1,
            "max_seeds": 2,
            "token_budget": 8 * 4096,
            "eval_every": 4,
            "device": "cpu",
            "lr_schedule": "constant",
        },
    )
    assert r.status_code == 202, r.text
    ver = r.json()
    # a run row for every seed up to max_seeds; the first look's units are seed 0's
    assert len(ver["runs"]) == 4 and {run["state"] for run in ver["runs"]} == {"pending"}
    baseline_id = ver["arms"]["baseline"]
    baseline = client.get(f"/v1/mixtures/{baseline_id}", headers=auth(key_a)).json()
    assert runner.execute(treatment["mixture"]["job"]["id"]) == "succeeded"
    assert runner.execute(baseline["job"]["id"]) == "succeeded"
    assert runner.execute(ver["job"]["id"]) == "detached"
    running = client.get(f"/v1/verifications/{ver['id']}", headers=auth(key_a)).json()
    assert running["job"]["state"] == "running" and running["job"]["progress"]["fraction"] == 0
    first = [run for run in running["runs"] if run["unit"]]
    assert {run["seed"] for run in first} == {0} and len(first) == 2
    assert {run["unit"]["state"] for run in first} == {"queued"}
    assert runner.execute_all(ver["job"]["id"]) == "succeeded"
    done = client.get(f"/v1/verifications/{ver['id']}", headers=auth(key_a)).json()
    assert "runs" in done, done
    assert sorted((run["seed"], run["unit"]["look"]) for run in done["runs"]) == [
        (0, 0), (0, 0), (1, 1), (1, 1)
    ]  # fmt: skip
    assert done["report"]["settings"]["seeds"] == [0, 1] and len(done["report"]["runs"]) == 4
    assert done["report"]["settings"]["sequential"]["looks"] == [1, 2]
    assert {run["state"] for run in done["runs"]} == {"done"}
    assert {run["unit"]["state"] for run in done["runs"]} == {"succeeded"}
    for run in done["runs"]:
        assert run["unit"]["progress"]["fraction"] == 1 and run["unit"]["seeds"] == [run["seed"]]
        assert run["unit"]["attempts"] == 1
        assert run["summary"]["tokens_per_second"] > 0
    verdicts = done["report"]["verdicts"]
    assert {(v["arm"], v["size"]) for v in verdicts} == {
        ("upweighted", "nano"),
        ("baseline", "nano"),
    }
    for v in verdicts:
        assert v["skill_id"] == sid and v["verdict"] in ("retained", "not_retained", "inconclusive")
        assert v["metric"] == "forced_choice" and "metric: forced_choice" in v["rule"]
        assert "equal_leading_digit" in v["strata"] and v["readouts"]["format_rate"]
        lo, hi = v["ci95"]
        assert 0 <= lo <= v["p_retained"] <= hi <= 1
    # seed_scope defaults to both: each upweighted seed trained on its own draw of the
    # mixture, built in the job's work folder; the baseline places nothing to draw.
    assert done["params"]["seed_scope"] == "both"
    assert done["report"]["settings"]["seed_scope"] == "both"
    draws = {(run["arm"], run["seed"]): run["data_draw"] for run in done["report"]["runs"]}
    assert draws["upweighted", 0]["tokens_sha256"] != draws["upweighted", 1]["tokens_sha256"]
    assert draws["upweighted", 0]["variant_of"] and draws["baseline", 0]["variant_of"] is None
    assert draws["baseline", 0]["mixture_dir"] == draws["baseline", 1]["mixture_dir"]
    assert [draws["upweighted", s]["init_seed"] for s in (0, 1)] == [0, 1]
    assert done["report"]["settings"]["train"]["lr_schedule"] == "constant"
    names = {a["name"] for a in done["job"]["artifacts"]}
    assert "report.json" in names and any(n.endswith(".png") for n in names)
    assert done["job"]["attempts"] == 1  # planned, then finished by the last unit's worker


def test_arms_are_checked_before_anything_runs(
    client: TestClient, key_a: str, treatment: dict
) -> None:
    sid = treatment["skill"]["id"]
    base = {"skill_ids": [sid], "sizes": ["nano"], "seeds": [0]}
    cases = [
        ({"arms": {"a": "mix_nope"}}, 404, "not-found"),
        ({"arms": {"baseline": "auto"}}, 422, "no-arms"),
        (
            {"arms": {"a": treatment["mixture"]["id"]}, "sizes": ["gigantic"]},
            422,
            "validation-error",
        ),
        (
            {"arms": {"a": treatment["mixture"]["id"]}, "skill_ids": ["skill_x"]},
            422,
            "skill-not-scanned",
        ),
        ({"arms": {"a": treatment["mixture"]["id"]}, "metric": "bleu"}, 422, "validation-error"),
        (
            {"arms": {"a": treatment["mixture"]["id"]}, "lr_schedule": "step"},
            422,
            "validation-error",
        ),
        (
            {"arms": {"a": treatment["mixture"]["id"]}, "seed_scope": "weights"},
            422,
            "validation-error",
        ),
        (
            {"arms": {"a": treatment["mixture"]["id"]}, "min_seeds": 20, "max_seeds": 10},
            422,
            "validation-error",
        ),
    ]
    for extra, status, slug in cases:
        r = client.post("/v1/verifications", headers=auth(key_a), json={**base, **extra})
        assert r.status_code == status, (extra, r.text)
        assert r.json()["type"].endswith(slug)
    dry = client.post("/v1/mixtures", headers=auth(key_a), json=body(treatment, dry_run=True))
    r = client.post(
        "/v1/verifications",
        headers=auth(key_a),
        json={**base, "arms": {"a": treatment["mixture"]["id"], "b": dry.json()["id"]}},
    )
    assert r.status_code == 422 and r.json()["type"].endswith("mixture-not-built")
    other_shape = client.post(
        "/v1/mixtures", headers=auth(key_a), json=body(treatment, batch_tokens=8192)
    )
    r = client.post(
        "/v1/verifications",
        headers=auth(key_a),
        json={**base, "arms": {"a": treatment["mixture"]["id"], "b": other_shape.json()["id"]}},
    )
    assert r.status_code == 422 and "batch_tokens" in r.json()["detail"]
    assert client.get("/v1/verifications", headers=auth(key_a)).json()["data"] == []


def test_min_and_max_seeds_fix_the_looks_in_advance(
    client: TestClient, key_a: str, treatment: dict
) -> None:
    sid = treatment["skill"]["id"]
    r = client.post(
        "/v1/verifications",
        headers=auth(key_a),
        json={"arms": {"a": treatment["mixture"]["id"]}, "skill_ids": [sid], "max_seeds": 20},
    )
    assert r.status_code == 202, r.text
    params = r.json()["params"]
    assert (params["min_seeds"], params["max_seeds"], params["looks"]) == (10, 20, [10, 20])
    assert params["seeds"] == list(range(20)) and len(r.json()["runs"]) == 20
    r = client.post(
        "/v1/verifications",
        headers=auth(key_a),
        json={"arms": {"a": treatment["mixture"]["id"]}, "skill_ids": [sid], "min_seeds": 5},
    )
    assert r.json()["params"]["looks"] == [5, 10, 20, 40]
