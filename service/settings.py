"""The one reader of the environment: every knob is a `SKILLMIX_*` variable."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKILLMIX_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".skillmix"),
        description="Where the embedded database, broker folders and artifacts live.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file under data_dir."
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker URL (redis://...); default: kombu's filesystem transport "
        "under data_dir, which needs no server.",
    )
    allowed_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated roots that corpora and outputs may live under: local "
        "folders, or fsspec URLs (memory://bucket, s3://bucket/prefix) for the protocols in "
        "allowed_protocols.",
    )
    allowed_protocols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["file"],
        description="Comma-separated fsspec protocols a corpus URI or a mixture's output.uri "
        "may use (an output under an allowed root of that protocol).",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"

    # Logs of `skillmix serve` and `skillmix worker` (service/logs.py).
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json`: one JSON object per line, for log collectors."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # prometheus_client's own variable (read by the library at import): where API worker
    # processes keep their request metrics so that /metrics can add them up.
    prometheus_multiproc_dir: Path | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )

    # Scans: datatrove tasks (ranks) and worker processes per scan job.
    scan_tasks: int = Field(default=2, ge=1)
    scan_workers: int = Field(default=1, ge=1)
    # Large corpora: run scans on datatrove's Slurm or Ray executor instead of the local one.
    # Options are the executor's own keyword arguments as JSON, e.g. for slurm
    # {"partition": "cpu", "time": "04:00:00", "cpus_per_task": 4}; for ray also the
    # cluster's `address` and a `runtime_env` (curation/executors.py). Checked at load, so
    # a misspelt option stops the worker at start rather than failing every scan.
    scan_executor: Literal["local", "slurm", "ray"] = "local"
    scan_executor_options: dict[str, Any] = Field(default_factory=dict)
    # Mixtures: batches per output shard (default: about 2**27 tokens). A killed build
    # resumes from its last whole shard, so smaller shards lose less work.
    mixture_shard_batches: int | None = Field(default=None, ge=1)

    # Job execution: a lease that a running task renews; a job whose lease has run out
    # is taken to have lost its worker and is run again, up to max_attempts times.
    max_attempts: int = Field(default=3, ge=1)
    job_lease_seconds: float = Field(default=60.0, gt=0)
    sweep_interval_seconds: float = Field(default=15.0, gt=0)
    requeue_queued_after_seconds: float = Field(default=600.0, gt=0)
    # Redis redelivers an unacknowledged message after this long (kombu's default is an
    # hour, far too long to notice a dead worker).
    visibility_timeout_seconds: float = Field(default=300.0, gt=0)
    idempotency_ttl_seconds: float = Field(
        default=86_400.0, gt=0, description="How long a POST's Idempotency-Key is remembered."
    )
    # Processes of `skillmix worker --queues training` on CPU, each training one unit of a
    # verification at a time, one torch thread each when there are several (on 2 CPU cores
    # two single-thread runs beat one two-thread run). `--devices` runs one per GPU instead.
    training_workers: int = Field(default=2, ge=1)
    seed_group: int | None = Field(
        default=None,
        ge=1,
        description="Seeds of one arm and size that train together as one grouped model "
        "(training.batched), at most this many (1: every run alone). Unset: automatic, "
        "from the device and the model size (training.batched.auto_seed_group).",
    )
    worker_concurrency: int = Field(default=2, ge=1)

    # API limits.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_page_size: int = Field(default=200, ge=1)
    rate_limit_per_minute: int = Field(
        default=6000,
        ge=0,
        description="Requests per minute each API key may make, sustained (0: no limit); "
        "more answer 429 with Retry-After. The default (100/s a key) leaves room for a load "
        "test of a few hundred requests a second across a few keys and still stops a "
        "runaway loop. Counted in Redis when the broker is redis://, so every API process "
        "shares the count; in the process otherwise.",
    )
    rate_limit_burst: int | None = Field(
        default=None,
        ge=1,
        description="Requests a key may make at once, on top of nothing used recently; "
        "default: a tenth of rate_limit_per_minute (six seconds' worth).",
    )
    auth_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long an API process trusts a key it has verified before asking "
        "the database again (0: every request). A revoked key keeps working for up to this "
        "long; in exchange most requests authenticate without a query.",
    )
    max_active_jobs_per_project: int = Field(
        default=16,
        ge=0,
        description="Queued plus running jobs a project may have at once (0: no cap); a "
        "create that would start one more answers 429 with Retry-After.",
    )

    # The /ui pages (service/api/ui): the API key of a signed-in browser lives in a signed
    # session cookie. Every API process must share one secret for a session to work on all.
    ui_secret: SecretStr | None = Field(
        default=None,
        description="Signs the /ui session cookie; default: random per process (a warning "
        "says so): sessions end with the process and work on that process only.",
    )
    ui_session_seconds: int = Field(
        default=28_800, ge=1, description="How long a /ui sign-in lasts."
    )

    # Experiment tracking (service/worker/tracking.py; the `tracking` extra).
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI (http://host:5000, or sqlite:///path/mlflow.db for a "
        "local store): workers log each verification's runs and each mixture's manifest and "
        "audit there. Unset: no tracking. Needs `pip install 'skillmix[tracking]'`.",
    )
    mlflow_experiment: str | None = Field(
        default=None,
        description="The MLflow experiment every project logs to; default: one per project, "
        "`skillmix/<project id>`.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("allowed_roots", "allowed_protocols", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_executor_options(self) -> Settings:
        if self.scan_executor == "local" and not self.scan_executor_options:
            return self  # the default needs no check (and no datatrove import, ~1 s)
        from curation.executors import ExecutorOptionsError, check_executor_options

        try:
            check_executor_options(self.scan_executor, self.scan_executor_options)
        except ExecutorOptionsError as exc:
            raise ValueError(f"SKILLMIX_SCAN_EXECUTOR_OPTIONS: {exc}") from None
        return self

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'skillmix.db'}"

    @property
    def effective_rate_limit_burst(self) -> int:
        if self.rate_limit_burst is not None:
            return self.rate_limit_burst
        return max(1, self.rate_limit_per_minute // 10)

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def work_dir(self) -> Path:
        """Job working directories: kept across attempts so a retried job can resume."""
        return self.resolved_data_dir / "work"

    @property
    def broker_folder(self) -> Path:
        return self.resolved_data_dir / "broker"

    @property
    def artifacts_dir(self) -> Path:
        return self.resolved_data_dir / "artifacts"

    @property
    def effective_allowed_roots(self) -> list[Path | str]:
        """Allowed roots, local ones resolved, URL ones as given (a Path would turn
        memory://x into memory:/x); the data directory is always one of them."""
        roots: list[Path | str] = [
            r if "://" in r else Path(r).expanduser().resolve() for r in self.allowed_roots
        ]
        data = self.resolved_data_dir
        return roots if data in roots else [*roots, data]


@lru_cache
def get_settings() -> Settings:
    return Settings()
