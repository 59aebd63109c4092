"""Response models. They accept fields this SDK does not know yet (`extra="allow"`), so a
newer server never breaks an older client; unknown fields are attributes all the same."""

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from skillmix_client.reports import (
    MixtureAudit,
    MixtureManifest,
    ScanReport,
    SkillFrequency,
    Verdict,
    VerificationReport,
)

T = TypeVar("T")

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Page(Model, Generic[T]):
    """One page of a list: `data`, and `next_after` to pass as `after` for the next page."""

    data: list[T]
    has_more: bool = False
    next_after: str | None = None


class Progress(Model):
    fraction: float = 0.0
    message: str = ""


class Artifact(Model):
    name: str
    media_type: str
    size: int | None = None  # None: a plot drawn after the job's result, not yet drawn
    url: str


class Job(Model):
    """The shared lifecycle of scans, mixtures and verifications:
    `queued -> running -> succeeded | failed | cancelled`."""

    id: str
    kind: str
    queue: str | None = None
    state: str
    progress: Progress = Progress()
    attempts: int = 0
    max_attempts: int | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    artifacts: list[Artifact] = []
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class Skill(Model):
    id: str
    name: str
    description: str | None = None
    version: int | None = None
    latest_version: int | None = None
    detector: dict[str, Any] | None = None
    generator: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SkillPreview(Model):
    """Matches of the skill's detector in a given text (`start`, `end`, `text`, `key`,
    `in_probe`), and sample train-split (`samples`) and held-out (`probe`) instances.
    `matches` are the first ones only (at most 100); `matches_truncated` says more may follow."""

    skill_id: str | None = None
    version: int | None = None
    matches: list[dict[str, Any]] = []
    matches_truncated: bool = False
    samples: list[dict[str, Any]] = []
    probe: list[dict[str, Any]] = []


class SkillFamily(Model):
    """A built-in generator family and the JSON schema of its parameters."""

    family: str
    description: str | None = None
    params_schema: dict[str, Any] | None = None
    example: dict[str, Any] | None = None


class Corpus(Model):
    id: str
    name: str
    uri: str
    format: str | None = None
    text_key: str | None = None
    id_key: str | None = None
    files: int = 0
    total_bytes: int = 0
    fingerprint: Any | None = None
    created_at: datetime | None = None


class ApiKey(Model):
    """An API key of the project, as listed: never its secret, only its `prefix`."""

    id: str
    name: str = "default"
    prefix: str = ""
    role: str = "member"
    created_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    live: bool = True


class CreatedApiKey(ApiKey):
    """A new key, with the key itself (`sk_...`): the server shows it this once. Left out
    of the repr, so printing or logging the object does not leak it."""

    key: str = Field(repr=False)


class JobBacked(Model):
    """A resource whose creation starts a job (scans, mixtures, verifications)."""

    id: str
    job: Job | None = None
    created_at: datetime | None = None


class Scan(JobBacked):
    corpus_id: str | None = None
    skills: list[dict[str, Any]] = []
    batch_tokens: int | None = None
    tokenizer: dict[str, Any] | None = None
    report: ScanReport | None = None


class Mixture(JobBacked):
    corpus_id: str | None = None
    scan_id: str | None = None
    dry_run: bool = False
    output: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = []
    plan: dict[str, Any] | None = None
    manifest: MixtureManifest | None = None
    audit: MixtureAudit | None = None


class Verification(JobBacked):
    arms: dict[str, Any] | None = None
    skills: list[dict[str, Any]] = []
    params: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = []
    report: VerificationReport | None = None


class Study(JobBacked):
    kind: str | None = None
    params: dict[str, Any] | None = None
    skills: list[dict[str, Any]] = []
    points: dict[str, dict[str, Any]] = {}
    verification_id: str | None = None
    """The verification of its (latest) look."""
    looks: list[dict[str, Any]] | None = None
    """An adaptive design's looks so far: the decision that started each, its verification."""
    report: dict[str, Any] | None = None
    """Per skill (`report["skills"][skill_id]`): points, fit and recommendation per size."""


__all__ = [
    "Artifact",
    "Corpus",
    "Job",
    "JobBacked",
    "Mixture",
    "MixtureAudit",
    "MixtureManifest",
    "Page",
    "Progress",
    "Scan",
    "ScanReport",
    "Skill",
    "SkillFamily",
    "SkillFrequency",
    "SkillPreview",
    "Study",
    "Verdict",
    "Verification",
    "VerificationReport",
]
