"""Optional experiment tracking: with SKILLMIX_MLFLOW_TRACKING_URI set, the worker logs each
verification's runs (what training reports, training.events) and each mixture's manifest and
audit to MLflow. Every MLflow call of the service is in this module; MLflow is imported only
when the setting is set (`pip install 'skillmix[tracking]'`).

Tracking never fails a job: the first error (MLflow missing, a store that cannot be written,
a server that does not answer) is logged as a warning and the job goes on without tracking.

What lands where: one experiment per project (`skillmix/<project id>`, or
SKILLMIX_MLFLOW_EXPERIMENT for all), holding one run per mixture build and, per verification,
a parent run with one child run per (arm, size, seed). Runs carry `skillmix.*` tags (project,
job, verification or mixture, arm, size, seed) and are found again by them: a job attempt
that resumes after a lost worker continues the runs the earlier attempt started, logs no
step twice (the steps a resumed run trains again, after its last checkpoint, are dropped),
and a run that had finished is left as it was.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.extras import EXTRAS
from service.settings import Settings
from training.events import Evaluated, Event, RunFinished, RunKey, StepDone

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("skillmix.tracking")

TAG = "skillmix."
"""Prefix of the tags that name a run's project, job and subject."""
STEP_METRICS = ("tokens", "train_loss")
"""Metrics logged at every step a run reports: a resumed run starts after the last of them."""
ARTIFACTS = "sqlite:///"
"""A local store's artifacts go next to its database, in `mlartifacts/` (a tracking server
decides for itself)."""


class TrackingUnavailable(RuntimeError):
    """The setting is set but MLflow is not installed."""


def experiment_name(settings: Settings, project_id: str) -> str:
    return settings.mlflow_experiment or f"skillmix/{project_id}"


def _artifact_location(uri: str) -> str | None:
    if not uri.startswith(ARTIFACTS):
        return None
    return (Path(uri[len(ARTIFACTS) :]).resolve().parent / "mlartifacts").as_uri()


def _metric_key(name: str) -> str:
    """MLflow keys take letters, digits and `_-. /:` only."""
    return re.sub(r"[^\w.\- /:]", "_", name)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers in nested dicts as `a/b/c` keys; an interval (`*ci95`) as `_lo` and
    `_hi`, another list as `name/0`, `name/1`, ...; None, text and booleans are left out."""
    out: dict[str, float] = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{key}/")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                out[_metric_key(key)] = float(value)
        elif isinstance(value, list | tuple) and name.endswith("ci95") and len(value) == 2:
            out |= flatten({f"{name}_lo": value[0], f"{name}_hi": value[1]}, prefix)
        elif isinstance(value, list | tuple):
            out |= flatten({str(i): v for i, v in enumerate(value)}, f"{key}/")
    return out


def _params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Scalars (and lists of scalars) of nested dicts as `a.b` params."""
    out: dict[str, str] = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            out |= _params(value, f"{key}.")
        elif value is None or isinstance(value, str | int | float | bool):
            out[_metric_key(key)] = str(value)[:500]
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | int | float) for v in value
        ):
            out[_metric_key(key)] = ",".join(map(str, value))[:500]
    return out


def manifest_identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What names a mixture's contents: its shape, seed, corpus fingerprint and skill
    versions (not its plan or shards)."""
    keep = ("format_version", "batch_tokens", "seq_len", "n_batches", "tokens", "seed")
    identity: dict[str, Any] = {k: manifest[k] for k in keep if k in manifest}
    corpus = manifest.get("corpus") or {}
    identity["corpus"] = corpus.get("fingerprint") or {}
    identity["skills"] = {sid: s.get("version") for sid, s in manifest.get("skills", {}).items()}
    return identity


class Tracker:
    """One job's connection to MLflow, or nothing: every method is a no-op while the setting
    is unset and after the first failure (logged once, as a warning)."""

    def __init__(self, settings: Settings, project_id: str, job_id: str) -> None:
        self.uri = settings.mlflow_tracking_uri
        self.experiment = experiment_name(settings, project_id)
        self.tags = {f"{TAG}project_id": project_id, f"{TAG}job_id": job_id}
        self.job_id = job_id
        self.client: MlflowClient | None = None
        self.experiment_id = ""

    @property
    def on(self) -> bool:
        return bool(self.uri)

    def _connect(self) -> MlflowClient:
        if self.client is None:
            try:
                from mlflow import MlflowClient
            except ImportError as exc:
                raise TrackingUnavailable(
                    f"SKILLMIX_MLFLOW_TRACKING_URI is set but MLflow is not installed "
                    f"({', '.join(EXTRAS['tracking'])}): pip install 'skillmix[tracking]'"
                ) from exc
            client = MlflowClient(tracking_uri=self.uri)
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    self.experiment_id = client.create_experiment(
                        self.experiment, artifact_location=_artifact_location(str(self.uri))
                    )
                except Exception:  # another worker created it meanwhile
                    found = client.get_experiment_by_name(self.experiment)
                    if found is None:
                        raise
            if found is not None:
                self.experiment_id = found.experiment_id
            self.client = client
        return self.client

    def _failed(self, what: str, exc: Exception) -> None:
        self.uri = None
        log.warning(
            "experiment tracking stopped for job %s: %s failed (%s: %s); the job goes on "
            "without it",
            self.job_id,
            what,
            type(exc).__name__,
            exc,
        )

    def _runs(self, tag: str, value: str) -> list[Any]:
        """The experiment's runs whose tag `skillmix.<tag>` is `value` (an id)."""
        return self._connect().search_runs(
            [self.experiment_id], f"tags.`{TAG}{tag}` = '{value}'", max_results=50_000
        )

    def _create(
        self, name: str, tags: dict[str, str], params: dict[str, str], parent: str | None = None
    ) -> str:
        from mlflow.entities import Param

        client = self._connect()
        all_tags = {**self.tags, **tags}
        if parent is not None:
            all_tags["mlflow.parentRunId"] = parent
        run_id: str = client.create_run(
            self.experiment_id, tags=all_tags, run_name=name
        ).info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            client.log_batch(run_id, params=items[i : i + 100])
        return run_id

    def _log(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self._connect().log_batch(run_id, metrics=items[i : i + 1000])

    def _artifacts(self, run_id: str, paths: Iterable[Path]) -> None:
        for path in paths:
            self._connect().log_artifact(run_id, str(path))


class VerificationTracker(Tracker):
    """A verification's parent run and its runs' child runs; pass it training's events."""

    def __init__(self, settings: Settings, project_id: str, job_id: str) -> None:
        super().__init__(settings, project_id, job_id)
        self.parent = ""
        self.children: dict[RunKey, str] = {}
        self.resume_after: dict[RunKey, int] = {}
        """Per run: the last step an earlier attempt logged (-1: none); missing: finished."""
        self.child_params: dict[str, str] = {}
        self.mixtures: dict[str, tuple[str, dict[str, Any]]] = {}

    def start(
        self,
        verification_id: str,
        mixtures: Mapping[str, tuple[str, Mapping[str, Any]]],
        skills: list[Mapping[str, Any]],
        params: Mapping[str, Any],
        train: Mapping[str, Any],
    ) -> None:
        """Find or open the parent run. mixtures: arm -> (mixture id, its manifest); skills:
        the pinned `{"id", "version"}`; params: the verification's; train: the training
        settings every run shares."""
        if not self.on:
            return
        try:
            self._start(verification_id, mixtures, skills, params, train)
        except Exception as exc:
            self._failed("opening the verification's run", exc)

    def _start(
        self,
        verification_id: str,
        mixtures: Mapping[str, tuple[str, Mapping[str, Any]]],
        skills: list[Mapping[str, Any]],
        params: Mapping[str, Any],
        train: Mapping[str, Any],
    ) -> None:
        client = self._connect()
        self.tags[f"{TAG}verification_id"] = verification_id
        self.mixtures = {arm: (mid, manifest_identity(m)) for arm, (mid, m) in mixtures.items()}
        self.child_params = _params({**params, "train": train})
        for run in self._runs("verification_id", verification_id):
            tags = run.data.tags
            if tags.get(f"{TAG}role") == "verification":
                self.parent = run.info.run_id
            elif tags.get(f"{TAG}role") == "training":
                key = RunKey(tags[f"{TAG}arm"], tags[f"{TAG}size"], int(tags[f"{TAG}seed"]))
                self.children[key] = run.info.run_id
                if run.info.status != "FINISHED":
                    self.resume_after[key] = self._last_step(run.info.run_id)
        if self.parent:
            client.update_run(self.parent, status="RUNNING")
            return
        skill_tags = {f"{TAG}skill.{s['id']}": str(s.get("version")) for s in skills}
        mixture_tags = {f"{TAG}mixture.{arm}": mid for arm, (mid, _) in self.mixtures.items()}
        arms = {arm: {"mixture_id": mid, **m} for arm, (mid, m) in self.mixtures.items()}
        self.parent = self._create(
            f"verification {verification_id}",
            {f"{TAG}role": "verification", **skill_tags, **mixture_tags},
            {**self.child_params, **_params({"arms": arms})},
        )

    def _last_step(self, run_id: str) -> int:
        client = self._connect()
        steps = [m.step for name in STEP_METRICS for m in client.get_metric_history(run_id, name)]
        return max(steps, default=-1)

    def _child(self, key: RunKey) -> str:
        if key not in self.children:
            mixture_id, identity = self.mixtures.get(key.arm, ("", {}))
            tags = {
                f"{TAG}role": "training",
                f"{TAG}arm": key.arm,
                f"{TAG}size": key.size,
                f"{TAG}seed": str(key.seed),
                f"{TAG}mixture_id": mixture_id,
            }
            params = {
                **self.child_params,
                **_params({"arm": key.arm, "size": key.size, "seed": key.seed}),
                **_params({"mixture_id": mixture_id, "mixture": identity}),
            }
            self.children[key] = self._create(str(key), tags, params, parent=self.parent)
            self.resume_after[key] = -1
        return self.children[key]

    def __call__(self, event: Event) -> None:
        """Log one of training's events; never raises."""
        if not self.on or not self.parent:
            return
        try:
            self._event(event)
        except Exception as exc:
            self._failed(f"logging {type(event).__name__} of run {event.key}", exc)

    def _event(self, event: Event) -> None:
        run_id = self._child(event.key)
        after = self.resume_after.get(event.key)
        if after is None:
            return  # finished in an earlier attempt: logged then
        match event:
            case StepDone(step=step) if step > after:
                self._log(
                    run_id,
                    {"tokens": event.tokens, "tokens_per_second": event.tokens_per_second},
                    step,
                )
            case Evaluated(step=step) if step > after:
                readouts = {k: v for k, v in event.results.items() if k not in ("step", "tokens")}
                self._log(run_id, flatten(readouts), step)
            case RunFinished(summary=summary):
                final = summary.get("final") or {}
                metrics = flatten({k: v for k, v in summary.items() if k != "final"}, "run/")
                metrics |= flatten({k: v for k, v in final.items() if k != "step"}, "final/")
                self._log(run_id, metrics, int(summary.get("steps") or 0))
                self._connect().set_terminated(run_id, "FINISHED")
                del self.resume_after[event.key]

    def finish(self, report: Mapping[str, Any], artifacts: Iterable[Path]) -> None:
        """The verdicts (and what they were judged from) on the parent run, which ends."""
        if not self.on or not self.parent:
            return
        try:
            metrics: dict[str, float] = {}
            tags = {}
            for row in report.get("verdicts", []):
                name = f"{row['arm']}/{row['size']}/{row['skill_id']}"
                metrics |= flatten(row, f"verdict/{name}/")
                tags[_metric_key(f"{TAG}verdict.{name}")] = str(row.get("verdict"))
            self._log(self.parent, metrics, int(report.get("settings", {}).get("steps") or 0))
            client = self._connect()
            for key, value in tags.items():
                client.set_tag(self.parent, key, value)
            self._artifacts(self.parent, artifacts)
            client.set_terminated(self.parent, "FINISHED")
        except Exception as exc:
            self._failed("logging the verdicts", exc)

    def stop(self, status: str, *, parent: bool = True) -> None:
        """End the runs left unfinished (FAILED, KILLED) when the job stops early, and the
        parent run unless `parent` is False (a training unit stops its own runs only); an
        attempt that resumes them sets them running again."""
        if not self.on or not self.parent:
            return
        try:
            client = self._connect()
            for key in self.resume_after:
                client.set_terminated(self.children[key], status)
            if parent:
                client.set_terminated(self.parent, status)
        except Exception as exc:
            self._failed("ending the verification's runs", exc)


def track_mixture(
    settings: Settings,
    project_id: str,
    job_id: str,
    mixture_id: str,
    manifest: Mapping[str, Any] | None,
    artifacts: Iterable[Path],
    failed: bool = False,
) -> None:
    """One run for a mixture build: its identity as params, manifest and audit (with its
    plots) as artifacts. A build retried after a lost worker logs into the same run."""
    tracker = Tracker(settings, project_id, job_id)
    if not tracker.on:
        return
    try:
        found = tracker._runs("mixture_id", mixture_id)
        if found:
            run_id = found[0].info.run_id
        else:
            params = _params(manifest_identity(manifest)) if manifest else {}
            tags = {f"{TAG}role": "mixture", f"{TAG}mixture_id": mixture_id}
            run_id = tracker._create(f"mixture {mixture_id}", tags, params)
        tracker._artifacts(run_id, artifacts)
        tracker._connect().set_terminated(run_id, "FAILED" if failed else "FINISHED")
    except Exception as exc:
        tracker._failed(f"logging mixture {mixture_id}", exc)
