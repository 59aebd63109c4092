"""Mixtures over HTTP: planning answers at once (plan, warnings, or a 422), the build job
writes the contract's files and an audit that meets the plan."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.worker import runner
from tests.service.conftest import auth, register_scan


@pytest.fixture
def scanned(client: TestClient, key_a: str, planted: dict) -> dict:
    return register_scan(client, planted["uri"], auth(key_a))


def body(scanned: dict, **extra: object) -> dict:
    return {
        "corpus_id": scanned["corpus"]["id"],
        "scan_id": scanned["scan"]["id"],
        "batch_tokens": 4096,
        "seq_len": 256,
        "seed": 0,
        **extra,
    }


def test_a_mixture_needs_a_finished_scan(client: TestClient, key_a: str, scanned: dict) -> None:
    r = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned))
    assert r.status_code == 409 and r.json()["type"].endswith("scan-not-ready")


def test_dry_run_plans_and_build_meets_the_plan(
    client: TestClient, key_a: str, scanned: dict
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    sid = scanned["skill"]["id"]
    plan = {sid: {"target": {"per_batch": 2.5}, "source": "synthesize", "spacing": "uniform"}}
    dry = client.post(
        "/v1/mixtures", headers=auth(key_a), json=body(scanned, plan=plan, dry_run=True)
    )
    assert dry.status_code == 201, dry.text
    assert dry.json()["job"] is None and dry.json()["plan"]["n_batches"] > 10
    r = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned, plan=plan))
    assert r.status_code == 202, r.text
    mixture = r.json()
    assert runner.execute(mixture["job"]["id"]) == "succeeded"
    done = client.get(f"/v1/mixtures/{mixture['id']}", headers=auth(key_a)).json()
    assert done["audit"]["passed"] is True
    placed = done["audit"]["skills"][sid]
    manifest = done["manifest"]
    assert manifest["n_batches"] == dry.json()["plan"]["n_batches"]
    out = Path(done["output"]["uri"])
    for name in ("manifest.json", "composition.jsonl", "instances.jsonl"):
        assert (out / name).is_file()
    assert list(out.glob("tokens-*.bin")) and list(out.glob("shard-*.jsonl.gz"))
    names = {a["name"] for a in done["job"]["artifacts"]}
    assert {"manifest.json", "audit.json"} <= names
    assert placed["passed"] is True


def test_infeasible_plans_and_bad_outputs_are_4xx(
    client: TestClient, key_a: str, scanned: dict, tmp_path: Path
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    sid = scanned["skill"]["id"]
    too_much = {sid: {"target": {"per_batch": 50}, "source": "repeat", "max_repeats": 1}}
    r = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned, plan=too_much))
    assert r.status_code == 422 and r.json()["type"].endswith("plan-infeasible"), r.text
    assert "max_repeats" in r.json()["detail"]
    small_pool = {sid: {"target": {"per_batch": 2}, "pool_size": 2, "max_repeats": 3}}
    r = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned, plan=small_pool))
    assert r.status_code == 422 and r.json()["type"].endswith("plan-infeasible"), r.text
    assert "a pool of pool_size=2 unique instances" in r.json()["detail"]
    assert "can place at most 6; raise max_repeats to at least" in r.json()["detail"]
    r = client.post(
        "/v1/mixtures",
        headers=auth(key_a),
        json=body(scanned, plan={"skill_nope": {"target": {"per_batch": 1}}}),
    )
    assert r.status_code == 422 and r.json()["type"].endswith("skill-not-scanned")
    r = client.post(
        "/v1/mixtures",
        headers=auth(key_a),
        json=body(scanned, output={"uri": str(tmp_path / "elsewhere")}),
    )
    assert r.status_code == 422 and r.json()["type"].endswith("source-rejected")
    r = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned, seq_len=1000))
    assert r.status_code == 422 and "multiple of seq_len" in r.json()["detail"]
    r = client.post(
        "/v1/mixtures",
        headers=auth(key_a),
        json=body(scanned, plan={sid: {"target": {"per_batch": 1, "fraction": 0.1}}}),
    )
    assert r.status_code == 422
    assert client.get("/v1/mixtures", headers=auth(key_a)).json()["data"] == []


def test_plan_warnings_and_errors_name_the_skill(
    client: TestClient, key_a: str, scanned: dict
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    sid = scanned["skill"]["id"]
    repeat = {sid: {"target": {"per_batch": 1}, "source": "repeat", "max_repeats": 100}}
    r = client.post(
        "/v1/mixtures", headers=auth(key_a), json=body(scanned, plan=repeat, dry_run=True)
    )
    assert r.status_code == 201, r.text
    [warning] = [w for w in r.json()["warnings"] if w["kind"] == "repeated_exposures"]
    assert warning["skill_id"] == sid  # the id for programs, the name for people
    assert warning["message"].startswith("skill 'cmp': ") and sid not in warning["message"]
    repeat[sid]["max_repeats"] = 1
    r = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned, plan=repeat))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("skill 'cmp': ") and sid not in r.json()["detail"]


def test_mixtures_are_project_scoped(
    client: TestClient, key_a: str, key_b: str, scanned: dict
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    m = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned, dry_run=True))
    assert m.status_code == 201, m.text
    assert client.get(f"/v1/mixtures/{m.json()['id']}", headers=auth(key_b)).status_code == 404
    r = client.post("/v1/mixtures", headers=auth(key_b), json=body(scanned))
    assert r.status_code == 404


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_registrations_of_one_skill_give_the_same_mixture(
    client: TestClient, key_a: str, scanned: dict
) -> None:
    """Placements are seeded by the mixture seed and the skill's definition, not its id."""
    definition = {
        "detector": {"kind": "builtin"},
        "generator": {"family": "number_comparison", "params": {}},
    }
    again = client.post(
        "/v1/skills", headers=auth(key_a), json={"name": "cmp again", **definition}
    ).json()
    scan = client.post(
        "/v1/scans",
        headers=auth(key_a),
        json={
            "corpus_id": scanned["corpus"]["id"],
            "skill_ids": [again["id"]],
            "batch_tokens": 4096,
        },
    ).json()
    outputs = []
    for sid, scan_id in (
        (scanned["skill"]["id"], scanned["scan"]["id"]),
        (again["id"], scan["id"]),
    ):
        scan_job = client.get(f"/v1/scans/{scan_id}", headers=auth(key_a)).json()["job"]["id"]
        assert runner.execute(scan_job) == "succeeded"
        plan = {sid: {"target": {"per_batch": 3}, "source": "synthesize", "spacing": "random"}}
        r = client.post(
            "/v1/mixtures",
            headers=auth(key_a),
            json={**body(scanned, plan=plan), "scan_id": scan_id, "seed": 7},
        )
        assert r.status_code == 202, r.text
        assert runner.execute(r.json()["job"]["id"]) == "succeeded"
        done = client.get(f"/v1/mixtures/{r.json()['id']}", headers=auth(key_a)).json()
        outputs.append((sid, Path(done["output"]["uri"]), done["manifest"]))
    (first, a, ma), (second, b, mb) = outputs
    assert first != second
    names = sorted(p.name for p in a.glob("tokens-*.bin"))
    assert names and names == sorted(p.name for p in b.glob("tokens-*.bin"))
    for name in names:
        assert sha256(a / name) == sha256(b / name)
        assert {s["sha256"] for m in (ma, mb) for s in m["shards"] if s["path"] == name} == {
            sha256(a / name)
        }
    composition = (a / "composition.jsonl").read_text()
    assert first in composition  # the composition names the skill by id: rename to compare
    assert composition.replace(first, second) == (b / "composition.jsonl").read_text()
    stream = {s["placement_stream"] for m in (ma, mb) for s in m["plan"]["skills"].values()}
    assert len(stream) == 1


def test_an_output_folder_another_mixture_will_write_is_refused(
    client: TestClient, key_a: str, scanned: dict
) -> None:
    """Before its build runs, a mixture's folder does not exist yet (or is empty): another
    mixture must not take it, nor a folder inside or around it (a project could otherwise
    write into another's default output, `<data>/mixtures/<id>`)."""
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    first = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned))
    assert first.status_code == 202, first.text
    taken = Path(first.json()["output"]["uri"])
    assert not taken.exists()  # queued: nothing written yet
    for uri in (taken, taken / "inside", taken.parent):
        r = client.post(
            "/v1/mixtures", headers=auth(key_a), json=body(scanned, output={"uri": str(uri)})
        )
        assert r.status_code == 409, (uri, r.text)
        assert r.json()["type"].endswith("output-claimed"), r.text
    # A dry run claims nothing: its folder stays free.
    dry = client.post("/v1/mixtures", headers=auth(key_a), json=body(scanned, dry_run=True))
    free = taken.parent / "free"
    for dry_run in (True, False):
        r = client.post(
            "/v1/mixtures",
            headers=auth(key_a),
            json=body(scanned, dry_run=dry_run, output={"uri": str(free)}),
        )
        assert r.status_code in (201, 202), r.text
    assert dry.status_code == 201
