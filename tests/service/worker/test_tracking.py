"""Experiment tracking (service/worker/tracking.py): a real verification and its mixtures
logged to a local MLflow store and read back; a resumed run logs no step twice; tracking
that cannot work (MLflow missing, a store that cannot be written) never fails a job."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.cli.embedded import refresh_settings
from service.settings import Settings, get_settings
from service.worker import runner
from service.worker.tracking import VerificationTracker, flatten, track_mixture
from tests.conftest import need_module
from tests.service.api.test_mixtures import body, scanned  # noqa: F401  (fixture)
from tests.service.api.test_verifications import treatment  # noqa: F401  (fixture)
from tests.service.conftest import auth
from training.events import Evaluated, RunFinished, RunKey, StepDone


def needs_mlflow() -> Any:
    # `make install` brings the tracking extra (in `all`): in CI a missing MLflow fails.
    return need_module("mlflow", "pip install 'skillmix[tracking]'")


def store(root: Path) -> str:
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def runs_by_role(client: Any) -> dict[str, list[Any]]:
    experiments = [e for e in client.search_experiments() if e.name.startswith("skillmix/")]
    assert len(experiments) == 1, [e.name for e in experiments]
    out: dict[str, list[Any]] = {}
    for run in client.search_runs([experiments[0].experiment_id], max_results=1000):
        out.setdefault(run.data.tags["skillmix.role"], []).append(run)
    return out


def test_a_verification_and_its_mixtures_are_logged(
    client: TestClient,
    key_a: str,
    treatment: dict,  # noqa: F811
    env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    mlflow = needs_mlflow()
    env.setenv("SKILLMIX_MLFLOW_TRACKING_URI", store(tmp_path / "mlflow"))
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
            "seeds": [0],
            "token_budget": 8 * 4096,
            "eval_every": 4,
            "device": "cpu",
        },
    )
    assert r.status_code == 202, r.text
    ver = r.json()
    arms = ver["arms"]
    baseline = client.get(f"/v1/mixtures/{arms['baseline']}", headers=auth(key_a)).json()
    assert runner.execute(treatment["mixture"]["job"]["id"]) == "succeeded"
    assert runner.execute(baseline["job"]["id"]) == "succeeded"
    assert runner.execute_all(ver["job"]["id"]) == "succeeded"
    report = client.get(f"/v1/verifications/{ver['id']}", headers=auth(key_a)).json()["report"]

    ml = mlflow.MlflowClient(get_settings().mlflow_tracking_uri)
    runs = runs_by_role(ml)
    (parent,) = runs["verification"]
    children = runs["training"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["skillmix.verification_id"] == ver["id"]
    assert parent.data.tags["skillmix.job_id"] == ver["job"]["id"]
    assert parent.data.tags[f"skillmix.skill.{sid}"] == "1"
    assert {parent.data.tags[f"skillmix.mixture.{arm}"] for arm in arms} == set(arms.values())
    assert parent.data.params["token_budget"] == str(8 * 4096)
    assert parent.data.params["train.lr"] == "0.003"
    assert parent.data.params["arms.upweighted.mixture_id"] == arms["upweighted"]

    # One child run per (arm, size, seed), under the parent, with its steps.
    assert sorted(c.data.tags["skillmix.arm"] for c in children) == ["baseline", "upweighted"]
    for child in children:
        tags, params = child.data.tags, child.data.params
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert (tags["skillmix.size"], tags["skillmix.seed"]) == ("nano", "0")
        assert tags["skillmix.mixture_id"] == arms[tags["skillmix.arm"]]
        assert params["mixture_id"] == arms[tags["skillmix.arm"]]
        assert params["eval_every"] == "4" and params["size"] == "nano"
        assert child.info.status == "FINISHED"
        steps = [m.step for m in ml.get_metric_history(child.info.run_id, "general_loss")]
        assert steps == [0, 4, 8]
        acc = ml.get_metric_history(child.info.run_id, f"skills/{sid}/heldout_acc")
        assert [m.step for m in acc] == [0, 4, 8]
        tokens = ml.get_metric_history(child.info.run_id, "tokens")  # StepDone's, each 1%
        assert [m.step for m in tokens] == list(range(1, 9))
        # The verdicts' inputs: each run's final readouts.
        (summary,) = [
            s for s in report["runs"] if s["arm"] == tags["skillmix.arm"] and s["seed"] == 0
        ]
        final = child.data.metrics
        assert (
            final[f"final/skills/{sid}/heldout_acc"]
            == summary["final"]["skills"][sid]["heldout_acc"]
        )
        assert final["final/general_loss"] == pytest.approx(summary["final"]["general_loss"])
        assert final["run/steps"] == 8 and final["run/tokens"] == 8 * 4096

    # The verdicts on the parent, and the report as an artifact.
    for row in report["verdicts"]:
        name = f"{row['arm']}/nano/{sid}"
        assert parent.data.metrics[f"verdict/{name}/p_retained"] == row["p_retained"]
        assert parent.data.metrics[f"verdict/{name}/ci95_lo"] == row["ci95"][0]
        assert parent.data.tags[f"skillmix.verdict.{name}"] == row["verdict"]
    names = {a.path for a in ml.list_artifacts(parent.info.run_id)}
    assert "report.json" in names

    # Each mixture build: a run with its manifest and audit.
    mixture_runs = {r.data.tags["skillmix.mixture_id"]: r for r in runs["mixture"]}
    assert set(mixture_runs) == set(arms.values())
    for mixture_id, run in mixture_runs.items():
        assert run.info.status == "FINISHED"
        artifacts = {a.path for a in ml.list_artifacts(run.info.run_id)}
        assert {"manifest.json", "audit.json"} <= artifacts, artifacts
        path = ml.download_artifacts(run.info.run_id, "manifest.json", str(tmp_path / mixture_id))
        manifest = json.loads(Path(path).read_text())
        assert run.data.params["seq_len"] == str(manifest["seq_len"])
        if mixture_id == arms["upweighted"]:
            assert run.data.params[f"skills.{sid}"] == "1"

    # A second attempt (every run finished: each reports RunFinished alone) adds no run.
    from service.worker.handlers.verification import run_verification_job

    class Again:
        job_id, project_id = ver["job"]["id"], parent.data.tags["skillmix.project_id"]
        params = {"verification_id": ver["id"]}
        artifact_dir = tmp_path / "again"

        def progress(self, fraction: float, message: str = "") -> None: ...

        def add_artifact(self, name: str, path: Path, media_type: str) -> None: ...

    Again.artifact_dir.mkdir()
    run_verification_job(Again())
    again = runs_by_role(ml)
    assert len(again["verification"]) == 1 and len(again["training"]) == 2
    for child in again["training"]:
        steps = [m.step for m in ml.get_metric_history(child.info.run_id, "general_loss")]
        assert steps == [0, 4, 8]


def test_a_resumed_run_continues_its_mlflow_run_without_logging_a_step_twice(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mlflow = needs_mlflow()
    settings = Settings(mlflow_tracking_uri=store(tmp_path), mlflow_experiment="resume")
    key = RunKey("upweighted", "nano", 0)
    mixtures = {"upweighted": ("mix_1", {"seq_len": 64, "batch_tokens": 1024})}

    def attempt(job_id: str) -> VerificationTracker:
        tracker = VerificationTracker(settings, "prj_1", job_id)
        tracker.start("ver_1", mixtures, [{"id": "sk_1", "version": 2}], {"seeds": [0]}, {})
        return tracker

    first = attempt("job_1")
    for step in (4, 8):
        first(Evaluated(key, step, {"step": step, "train_loss": 1.0 / step}))
        first(StepDone(key, step, 16, step * 1024, 100))
    # The worker is lost here; the next attempt resumes from a checkpoint at step 4.
    second = attempt("job_1")
    assert second.parent == first.parent and second.children == first.children
    for step in (8, 12, 16):
        second(Evaluated(key, step, {"step": step, "train_loss": 1.0 / step}))
        second(StepDone(key, step, 16, step * 1024, 100))
    second(RunFinished(key, {"steps": 16, "final": {"train_loss": 1 / 16}}))
    second.finish({"verdicts": [], "settings": {"steps": 16}}, [])
    assert second.uri, "tracking stayed on"

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    run_id = first.children[key]
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [4, 8, 12, 16]
    assert [m.step for m in client.get_metric_history(run_id, "tokens")] == [4, 8, 12, 16]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_run(first.parent).info.status == "FINISHED"
    experiment = client.get_experiment_by_name("resume")
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_tracking_that_cannot_write_warns_and_the_job_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    needs_mlflow()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = Settings(mlflow_tracking_uri=f"sqlite:///{blocker / 'mlflow.db'}")
    caplog.set_level(logging.WARNING, "skillmix.tracking")
    tracker = VerificationTracker(settings, "prj_1", "job_1")
    tracker.start("ver_1", {}, [], {}, {})
    tracker(RunFinished(RunKey("a", "nano", 0), {"steps": 1}))
    tracker.finish({"verdicts": []}, [])
    tracker.stop("FAILED")
    track_mixture(settings, "prj_1", "job_2", "mix_1", {"seq_len": 64}, [])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings  # one a job: then tracking is off for it
    assert "job job_1" in warnings[0] and "the job goes on without it" in warnings[0]


def test_without_mlflow_the_warning_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow: ImportError
    caplog.set_level(logging.WARNING, "skillmix.tracking")
    settings = Settings(mlflow_tracking_uri="http://127.0.0.1:9")
    track_mixture(settings, "prj_1", "job_1", "mix_1", None, [])
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "pip install 'skillmix[tracking]'" in warning


def test_unset_tracks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    tracker = VerificationTracker(Settings(), "prj_1", "job_1")
    assert not tracker.on
    tracker.start("ver_1", {}, [], {}, {})
    tracker(RunFinished(RunKey("a", "nano", 0), {"steps": 1}))
    tracker.finish({"verdicts": []}, [])
    tracker.stop("FAILED")
    track_mixture(Settings(), "prj_1", "job_1", "mix_1", None, [])
    assert tracker.client is None


def test_flatten_keeps_numbers_and_names_intervals() -> None:
    row = {"p_retained": 0.5, "ci95": [0.1, 0.9], "accuracies": [1, 0.5], "verdict": "x"}
    nested = {"skills": {"sk a": {"acc": 1, "loss": None}}, "ok": True, "nan": float("nan")}
    assert flatten(row) == {
        "p_retained": 0.5, "ci95_lo": 0.1, "ci95_hi": 0.9, "accuracies/0": 1.0,
        "accuracies/1": 0.5,
    }  # fmt: skip
    assert flatten(nested, "final/") == {"final/skills/sk a/acc": 1.0}
