"""SQLAlchemy 2.0 models: the database is the record of every job's state."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from service.ids import new_id


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class JobState(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("proj"))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """Only a SHA-256 of the key is stored; the key itself is shown once, at creation.

    A key is live while it is neither revoked nor expired. `role` is `member` (the
    project's resources) or `admin` (also its keys: `/v1/keys`)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    # Nullable: rows from before names existed have none (shown as "default").
    name: Mapped[str | None] = mapped_column(String(100), default="default")
    role: Mapped[str] = mapped_column(String(16), default="member", server_default="member")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Job(Base):
    """The shared lifecycle of scans, mixtures and verifications.

    `lease_owner`/`lease_expires_at` fence a running attempt: only the holder of an
    unexpired lease may write progress or results, so a redelivered copy of the task
    cannot run the same work beside it.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    queue: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default=JobState.queued.value, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(default=0.0)
    progress_message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    artifacts: Mapped[list[Any]] = mapped_column(default=list)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # A job started for another (a study's mixtures and verification): cancelled with it.
    parent_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)

    __table_args__ = (Index("ix_jobs_state_lease", "state", "lease_expires_at"),)


class JobDependency(Base):
    """Job `job_id` waits for job `needs_job_id` to succeed before it is sent to a worker
    (a verification for its arms' mixtures). The waiting job stays `queued` and unsent; it
    is sent when the last job it needs succeeds, and failed when one of them fails."""

    __tablename__ = "job_dependencies"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    needs_job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class IdempotencyRecord(Base):
    """The first response to a POST with an Idempotency-Key, replayed for its retries."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column()
    # Indexed: the sweeper deletes expired keys by age.
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (UniqueConstraint("project_id", "key", name="uq_idempotency_project_key"),)


class Skill(Base):
    """A project's skill. Its definition lives in append-only `SkillVersion` rows: PATCH
    adds a version, so a version a scan or mixture used can never change."""

    __tablename__ = "skills"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("skill"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    # `name` while the skill is live, NULL once deleted: unique per project, so two live
    # skills never share a name, while a deleted one frees it.
    active_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (UniqueConstraint("project_id", "active_name", name="uq_skills_name"),)


class SkillVersion(Base):
    __tablename__ = "skill_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    skill_id: Mapped[str] = mapped_column(ForeignKey("skills.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # The definition: name, description, detector, generator, probe (curation SkillSpec).
    spec: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("skill_id", "version", name="uq_skill_versions"),)


class Corpus(Base):
    """A registered source, validated at registration; `fingerprint` lets a later scan tell
    whether its files changed."""

    __tablename__ = "corpora"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("corpus"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    uri: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    text_key: Mapped[str] = mapped_column(String(200))
    id_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    files: Mapped[list[Any]] = mapped_column(default=list)
    fingerprint: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Scan(Base):
    """A corpus profiled against skill versions; the report is the job's result."""

    __tablename__ = "scans"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("scan"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    corpus_id: Mapped[str] = mapped_column(ForeignKey("corpora.id"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    # [{"id": skill id, "version": n}]: the exact versions scanned.
    skills: Mapped[list[Any]] = mapped_column()
    batch_tokens: Mapped[int] = mapped_column(Integer)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set by a delete (its job's files removed; see service/store/retention.py).
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Mixture(Base):
    """A dataset built from a corpus, its scan and a dosing plan. The manifest and audit are
    the job's result; `plan` is what planning computed when the mixture was created."""

    __tablename__ = "mixtures"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("mix"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    corpus_id: Mapped[str] = mapped_column(ForeignKey("corpora.id"))
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    # The request's dosing plan (curation DosingPlan JSON) and where the output goes.
    dosing: Mapped[dict[str, Any]] = mapped_column()
    output_uri: Mapped[str] = mapped_column(Text)
    plan: Mapped[dict[str, Any]] = mapped_column()
    dry_run: Mapped[bool] = mapped_column(default=False)
    # Set when a study built this mixture as one of its points (a child of the study).
    study_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Verification(Base):
    """Small models trained on mixtures (arms) across sizes and seeds; the report and
    verdicts are the job's result, each run is a `VerificationRun`."""

    __tablename__ = "verifications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ver"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    arms: Mapped[dict[str, Any]] = mapped_column()  # arm name -> mixture id
    skills: Mapped[list[Any]] = mapped_column()  # [{"id", "version", "name"}]
    params: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    study_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)


class Study(Base):
    """Many mixtures (the points: doses, schedules) trained by one verification, and the
    analysis across them (analysis.study): the job's result is the study's report."""

    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("stu"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column()  # the request, defaults filled
    skills: Mapped[list[Any]] = mapped_column()  # [{"id", "version", "name"}]
    # arm name -> {"mixture_id", "dose" | "schedule"}; and the verification that trains them
    # (an adaptive design's latest look's)
    points: Mapped[dict[str, Any]] = mapped_column()
    verification_id: Mapped[str] = mapped_column(String(40))
    # adaptive: one entry per look started, the decision that started it and its verification
    looks: Mapped[list[Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class VerificationRun(Base):
    """One (arm, size, seed) training run: its own resumable unit, recorded as it ends."""

    __tablename__ = "verification_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    verification_id: Mapped[str] = mapped_column(
        ForeignKey("verifications.id", ondelete="CASCADE"), index=True
    )
    arm: Mapped[str] = mapped_column(String(100))
    size: Mapped[str] = mapped_column(String(40))
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    summary: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    # The unit (TrainingRun) that trains this seed; None before the job planned its units.
    training_run_id: Mapped[str | None] = mapped_column(
        ForeignKey("training_runs.id", ondelete="SET NULL"), nullable=True
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("verification_id", "arm", "size", "seed", name="uq_verification_run"),
    )


class TrainingRun(Base):
    """A unit of a verification's training: one (arm, size, group of seeds), sent on its own
    to the verification job's queue (`training`), so that any number of training workers
    share one verification. It has a job's lifecycle and lease (service/store/jobs.py, the
    same functions with `table=TrainingRun`): `queued -> running -> succeeded | failed |
    cancelled`, claimed by one worker at a time, fenced by `lease_owner`, sent again by the
    sweeper when its lease runs out. Its seeds' results are files in their run folders
    (training.trainer.run_dir); each seed's progress is its `VerificationRun` row.

    `look`: the sequential design's look (0 for the seeds a verification was created with;
    a later look adds seeds, see service/worker/handlers/verification.py)."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("run"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    verification_id: Mapped[str] = mapped_column(
        ForeignKey("verifications.id", ondelete="CASCADE"), index=True
    )
    look: Mapped[int] = mapped_column(Integer, default=0)
    arm: Mapped[str] = mapped_column(String(100))
    size: Mapped[str] = mapped_column(String(40))
    seeds: Mapped[list[Any]] = mapped_column()
    queue: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default=JobState.queued.value)
    progress: Mapped[float] = mapped_column(default=0.0)
    progress_message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_training_runs_state_lease", "state", "lease_expires_at"),)
