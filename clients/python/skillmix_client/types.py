"""Response models. They accept fields this SDK does not know yet (`extra="allow"`), so a
newer server never breaks an older client; unknown fields are attributes all the same."""

from datetime import datetime
from typing import Any, Generic, Optional, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Page(Model, Generic[T]):
    """One page of a list: `data`, and `next_after` to pass as `after` for the next page."""

    data: list[T]
    has_more: bool = False
    next_after: Optional[str] = None


class Progress(Model):
    fraction: float = 0.0
    message: str = ""


class Artifact(Model):
    name: str
    media_type: str
    size: int
    url: str


class Job(Model):
    """The shared lifecycle of scans, mixtures and verifications:
    `queued -> running -> succeeded | failed | cancelled`."""

    id: str
    kind: str
    queue: Optional[str] = None
    state: str
    progress: Progress = Progress()
    attempts: int = 0
    max_attempts: Optional[int] = None
    error: Optional[str] = None
    result: Optional[dict[str, Any]] = None
    artifacts: list[Artifact] = []
    created_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class Skill(Model):
    id: str
    name: str
    description: Optional[str] = None
    version: Optional[int] = None
    latest_version: Optional[int] = None
    detector: Optional[dict[str, Any]] = None
    generator: Optional[dict[str, Any]] = None
    probe: Optional[dict[str, Any]] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


class SkillPreview(Model):
    """Matches of the skill's detector in a given text (`start`, `end`, `text`, `key`,
    `in_probe`), and sample train-split (`samples`) and held-out (`probe`) instances.
    `matches` are the first ones only (at most 100); `matches_truncated` says more may follow."""

    skill_id: Optional[str] = None
    version: Optional[int] = None
    matches: list[dict[str, Any]] = []
    matches_truncated: bool = False
    samples: list[dict[str, Any]] = []
    probe: list[dict[str, Any]] = []


class SkillFamily(Model):
    """A built-in generator family and the JSON schema of its parameters."""

    family: str
    description: Optional[str] = None
    params_schema: Optional[dict[str, Any]] = None
    example: Optional[dict[str, Any]] = None


class Corpus(Model):
    id: str
    name: str
    uri: str
    format: Optional[str] = None
    text_key: Optional[str] = None
    id_key: Optional[str] = None
    files: int = 0
    total_bytes: int = 0
    fingerprint: Optional[Any] = None
    created_at: Optional[datetime] = None


class JobBacked(Model):
    """A resource whose creation starts a job (scans, mixtures, verifications)."""

    id: str
    job: Optional[Job] = None
    created_at: Optional[datetime] = None


class Scan(JobBacked):
    corpus_id: Optional[str] = None
    skills: list[dict[str, Any]] = []
    batch_tokens: Optional[int] = None
    report: Optional[dict[str, Any]] = None


class Mixture(JobBacked):
    corpus_id: Optional[str] = None
    scan_id: Optional[str] = None
    dry_run: bool = False
    output: Optional[dict[str, Any]] = None
    warnings: list[dict[str, Any]] = []
    plan: Optional[dict[str, Any]] = None
    manifest: Optional[dict[str, Any]] = None
    audit: Optional[dict[str, Any]] = None


class Verification(JobBacked):
    arms: Optional[dict[str, Any]] = None
    skills: list[dict[str, Any]] = []
    params: Optional[dict[str, Any]] = None
    runs: list[dict[str, Any]] = []
    report: Optional[dict[str, Any]] = None


__all__ = [
    "Artifact",
    "Corpus",
    "Job",
    "JobBacked",
    "Mixture",
    "Page",
    "Progress",
    "Scan",
    "Skill",
    "SkillFamily",
    "SkillPreview",
    "Verification",
]
