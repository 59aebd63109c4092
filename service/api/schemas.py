"""Pydantic schemas for the API, in families per entity (Create / Public / ...Public)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.mixture.models import DosingPlan, SkillDose
from curation.skills.preview import MAX_PREVIEW_MATCHES
from curation.skills.spec import SkillDefinition as SkillDefinition  # a skill create's body
from service.models import Job

MAX_INT32 = 2**31 - 1  # the largest value an INTEGER column holds


def refuse_nul(value: Any) -> Any:
    """`value`, or ValueError when a string in it (a key or a value, at any depth) holds a
    NUL character: PostgreSQL text cannot store one."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL (\\u0000) characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key)
            refuse_nul(item)
    elif isinstance(value, list):
        for item in value:
            refuse_nul(item)
    return value


class StrictModel(BaseModel):
    """A request body: unknown fields refused, and no NUL characters anywhere (unless
    `nul_allowed`: text that is only matched, never stored)."""

    model_config = ConfigDict(extra="forbid")
    nul_allowed: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return data if cls.nul_allowed else refuse_nul(data)


class Progress(BaseModel):
    fraction: float = Field(ge=0, le=1)
    message: str = ""


class ArtifactPublic(BaseModel):
    name: str
    media_type: str
    size: int
    url: str


class JobPublic(BaseModel):
    id: str
    kind: str
    queue: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: Progress
    attempts: int
    max_attempts: int
    error: str | None = None
    result: dict[str, Any] | None = None
    artifacts: list[ArtifactPublic] = []
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls(
            id=job.id,
            kind=job.kind,
            queue=job.queue,
            state=job.state,  # type: ignore[arg-type]
            progress=Progress(fraction=job.progress, message=job.progress_message),
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            error=job.error,
            result=job.result,
            artifacts=[
                ArtifactPublic(
                    name=a["name"],
                    media_type=a["media_type"],
                    size=a["size"],
                    url=f"/v1/jobs/{job.id}/artifacts/{a['name']}",
                )
                for a in job.artifacts or []
            ],
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
        )


class JobsPublic(BaseModel):
    data: list[JobPublic]
    has_more: bool
    next_after: str | None = None


class ArtifactsPublic(BaseModel):
    data: list[ArtifactPublic]


class SleepParams(StrictModel):
    seconds: float = Field(default=0.0, ge=0, le=3600)
    steps: int = Field(default=1, ge=1, le=10_000)
    fail: str | None = Field(
        default=None, max_length=500, description="Fail with this message at the end (for tests)."
    )


class JobCreate(StrictModel):
    """Create a diagnostic job. Real work (scans, mixtures, verifications) has its own
    resources; this exercises the job machinery end to end."""

    kind: Literal["sleep"] = "sleep"
    params: SleepParams = SleepParams()
    queue: Literal["curation", "training"] | None = Field(
        default=None,
        description="Run on this queue instead of the kind's own (to check "
        "that a worker pool is consuming).",
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


class SkillPublic(BaseModel):
    """One version of a skill (the latest unless a version was asked for)."""

    id: str
    name: str
    version: int
    latest_version: int
    description: str
    detector: dict[str, Any]
    generator: dict[str, Any] | None = None
    probe: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SkillsPublic(BaseModel):
    data: list[SkillPublic]
    has_more: bool
    next_after: str | None = None


class SkillUpdate(StrictModel):
    """Fields to change; the result is a new version. Omitted fields keep their value."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = None
    detector: dict[str, Any] | None = None
    generator: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None


class PreviewRequest(StrictModel):
    nul_allowed: ClassVar[bool] = True  # the text is only matched

    text: str = Field(default="", description="Text to run the skill's detector on.")
    samples: int = Field(default=5, ge=0, le=100, description="Train-split instances.")
    probe_samples: int = Field(default=5, ge=0, le=100, description="Held-out instances.")
    seed: int = 0
    version: int | None = Field(
        default=None, ge=1, le=MAX_INT32, description="Default: the latest."
    )


class InstancePublic(BaseModel):
    prompt: str
    answer: str
    text: str
    key: str


class MatchPublic(BaseModel):
    start: int
    end: int
    text: str
    key: str
    in_probe: bool = Field(description="The matched instance belongs to the held-out set.")


class PreviewPublic(BaseModel):
    skill_id: str
    version: int
    matches: list[MatchPublic] = Field(
        description=f"The first matches in the text, at most {MAX_PREVIEW_MATCHES}: "
        "those a scan of the text would find first."
    )
    matches_truncated: bool = Field(
        description=f"More matches may follow: there are over {MAX_PREVIEW_MATCHES}, or the "
        "keywords hit the text so densely (nested keywords) that the preview stopped early."
    )
    samples: list[InstancePublic]
    probe: list[InstancePublic]


class FamilyPublic(BaseModel):
    family: str
    description: str
    params_schema: dict[str, Any]
    finite_limit: int
    example: dict[str, Any] | None = None


class FamiliesPublic(BaseModel):
    data: list[FamilyPublic]


def example(body: dict[str, Any]) -> ConfigDict:
    """Unknown fields refused, and a request example for the OpenAPI document."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [body]})


class CorpusCreate(StrictModel):
    model_config = example(
        {
            "name": "web-sample",
            "uri": "/data/web/*.jsonl.gz",
            "format": "jsonl.gz",
            "text_key": "text",
            "id_key": "id",
        }
    )

    name: str = Field(min_length=1, max_length=200)
    uri: str = Field(
        min_length=1,
        max_length=4096,
        description="A path or glob under SKILLMIX_ALLOWED_ROOTS, or an fsspec "
        "URL of an allowed protocol.",
    )
    format: Literal["jsonl", "jsonl.gz", "parquet", "hf_disk"]
    text_key: str = Field(default="text", min_length=1, max_length=200)
    id_key: str | None = Field(default=None, max_length=200)


class CorpusPublic(BaseModel):
    id: str
    name: str
    uri: str
    format: str
    text_key: str
    id_key: str | None
    files: int = Field(description="Number of files.")
    total_bytes: int
    fingerprint: str = Field(description="Digest of the files' paths, sizes and mtimes.")
    created_at: datetime


class CorporaPublic(BaseModel):
    data: list[CorpusPublic]
    has_more: bool
    next_after: str | None = None


class ScanCreate(StrictModel):
    model_config = example(
        {"corpus_id": "corpus_...", "skill_ids": ["skill_..."], "batch_tokens": 262144}
    )

    corpus_id: str = Field(max_length=64)
    skill_ids: list[str] = Field(min_length=1, max_length=200)
    batch_tokens: int = Field(
        default=262_144,
        ge=1,
        le=MAX_INT32,  # stored in an INTEGER column
        description="Tokens per training batch, for `per_batch` and gaps in batches.",
    )
    on_bad_record: Literal["fail", "skip"] = Field(
        default="fail",
        description="`skip` drops and counts malformed records instead of failing the scan.",
    )


class SkillRef(BaseModel):
    id: str
    version: int
    name: str


class ScanPublic(BaseModel):
    id: str
    corpus_id: str
    skills: list[SkillRef]
    batch_tokens: int
    on_bad_record: str
    created_at: datetime
    job: JobPublic
    report: dict[str, Any] | None = Field(
        default=None, description="The frequency report, once the job succeeded."
    )


class ScansPublic(BaseModel):
    data: list[ScanPublic]
    has_more: bool
    next_after: str | None = None


class MixtureOutput(StrictModel):
    uri: str | None = Field(
        default=None,
        max_length=4096,
        description="An absolute folder under SKILLMIX_ALLOWED_ROOTS; default: "
        "<data dir>/mixtures/<mixture id>.",
    )
    format: Literal["jsonl.gz", "parquet"] = Field(
        default="jsonl.gz", description="Text shards; tokenized shards are always written."
    )


class MixtureCreate(StrictModel):
    model_config = example(
        {
            "corpus_id": "corpus_...",
            "scan_id": "scan_...",
            "batch_tokens": 262144,
            "seq_len": 512,
            "seed": 0,
            "output": {"uri": "/data/mixes/m1", "format": "jsonl.gz"},
            "plan": {
                "skill_...": {
                    "target": {"per_batch": 4},
                    "source": "synthesize",
                    "max_repeats": 4,
                    "spacing": "uniform",
                }
            },
            "dry_run": False,
        }
    )

    corpus_id: str = Field(max_length=64)
    scan_id: str = Field(max_length=64, description="A succeeded scan of the corpus.")
    batch_tokens: int = Field(default=262_144, ge=1, le=2**32)
    seq_len: int = Field(default=512, ge=2, le=2**20)
    seed: int = Field(default=0, ge=0)
    max_batches: int | None = Field(
        default=None, ge=1, description="Cap on length; default: the whole corpus."
    )
    output: MixtureOutput = MixtureOutput()
    plan: dict[str, SkillDose] = Field(
        default_factory=dict,
        description="Dose per skill id; empty for a baseline mixture "
        "(the corpus at its natural frequency).",
    )
    dry_run: bool = Field(default=False, description="Return the plan without building.")

    def dosing(self) -> DosingPlan:
        """The library's plan input (the body less its output folder and dry-run flag)."""
        return DosingPlan(
            skills=self.plan,
            batch_tokens=self.batch_tokens,
            seq_len=self.seq_len,
            seed=self.seed,
            max_batches=self.max_batches,
            format=self.output.format,
        )


class MixturePublic(BaseModel):
    id: str
    corpus_id: str
    scan_id: str
    dry_run: bool
    output: dict[str, Any]
    plan: dict[str, Any] = Field(
        description="What planning computed: schedule summary, "
        "repeats, token shares, displaced corpus text."
    )
    warnings: list[dict[str, Any]]
    created_at: datetime
    job: JobPublic | None = None
    manifest: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None


class MixturesPublic(BaseModel):
    data: list[MixturePublic]
    has_more: bool
    next_after: str | None = None


class VerificationCreate(StrictModel):
    model_config = example(
        {
            "arms": {"upweighted": "mix_...", "baseline": "auto"},
            "skill_ids": ["skill_..."],
            "sizes": ["nano"],
            "seeds": [0, 1, 2, 3, 4],
            "token_budget": 2000000,
            "eval_every": 50,
            "device": "auto",
        }
    )

    arms: dict[
        Annotated[str, Field(min_length=1, max_length=100)],  # VARCHAR(100) per run
        Annotated[str, Field(min_length=1, max_length=64)],
    ] = Field(
        min_length=1,
        max_length=8,
        description='Arm name -> mixture id. `"baseline": "auto"` builds the corpus at its '
        "natural frequency with the other arms' batch shape.",
    )
    skill_ids: list[str] = Field(min_length=1, max_length=20)
    sizes: list[str] = Field(
        default=["nano"],
        min_length=1,
        max_length=5,
        description="Model sizes from the ladder (GET the docs of "
        "training.model) e.g. nano, micro, tiny, small, base.",
    )
    seeds: list[Annotated[int, Field(ge=0, le=MAX_INT32)]] = Field(  # an INTEGER column
        default=[0, 1, 2, 3, 4], min_length=1, max_length=200
    )
    token_budget: int | None = Field(
        default=None,
        ge=1,
        description="Training tokens per run; default: the whole (shortest) mixture.",
    )
    eval_every: int = Field(default=200, ge=1, description="Steps between evaluations.")
    checkpoint_every: int = Field(
        default=500,
        ge=1,
        description="Steps between checkpoints: a lost worker costs at most this much of one run.",
    )
    threshold: float | dict[str, float] | None = Field(
        default=None,
        description="Held-out accuracy a seed must reach to count as retained; "
        "default: halfway between chance and 1 for each skill's family.",
    )
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        default=None, description="Default: SKILLMIX_DEVICE."
    )


class RunPublic(BaseModel):
    arm: str
    size: str
    seed: int
    state: str
    summary: dict[str, Any] | None = None


class VerificationPublic(BaseModel):
    id: str
    arms: dict[str, str]
    skills: list[SkillRef]
    params: dict[str, Any]
    created_at: datetime
    job: JobPublic
    runs: list[RunPublic]
    report: dict[str, Any] | None = Field(
        default=None, description="Verdicts per skill x size x arm, run summaries; once done."
    )


class VerificationsPublic(BaseModel):
    data: list[VerificationPublic]
    has_more: bool
    next_after: str | None = None


MAX_KEY_LIFETIME = 10 * 366 * 86_400  # ten years, in seconds


class KeyCreate(StrictModel):
    model_config = example({"name": "ci", "expires_in_seconds": 2_592_000, "role": "member"})

    name: str = Field(default="default", min_length=1, max_length=100)
    expires_in_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_KEY_LIFETIME,
        description="The key expires this many seconds after creation (default: never).",
    )
    role: Literal["member", "admin"] = Field(
        default="member",
        description="`member`: the project's resources; `admin`: also its keys (/v1/keys).",
    )


class KeyRotate(StrictModel):
    grace_seconds: int = Field(
        default=3600,
        ge=0,
        le=MAX_KEY_LIFETIME,
        description="The old key keeps working this long (0: revoked at once).",
    )


class KeyPublic(BaseModel):
    """An API key as listed: never its secret, only the first characters (`prefix`)."""

    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    role: Literal["member", "admin"]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = Field(
        default=None, description="Updated at most once a minute per API process."
    )
    revoked_at: datetime | None = None
    live: bool = Field(description="Neither revoked nor expired.")


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    has_more: bool
    next_after: str | None = None


class KeyCreated(KeyPublic):
    key: str = Field(description="The key itself (`sk_...`): shown this once, never again.")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, the body of every error (`application/problem+json`)."""

    type: str = Field(
        examples=["urn:skillmix:problem:not-found"],
        description="Stable per error kind: urn:skillmix:problem:<kind>.",
    )
    title: str = Field(examples=["Skill not found"])
    status: int = Field(examples=[404])
    detail: str | None = Field(
        default=None, examples=["No skill with id 'skill_x' in this project."]
    )
    instance: str | None = Field(default=None, examples=["/v1/skills/skill_x"])
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For validation errors: where and what."
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems a route can answer with."""
    described = {
        400: "Malformed request",
        401: "Missing or invalid API key",
        403: "Not allowed for this API key (an admin key is required)",
        404: "Not found in this project",
        409: "Conflict with the current state",
        413: "Request body too large",
        422: "Invalid request",
        429: "Rate limit exceeded, or the project's cap on active jobs reached",
        503: "The database cannot be reached right now (retry after Retry-After seconds)",
    }
    headers = {
        401: {
            "WWW-Authenticate": {
                "description": "`Bearer` (RFC 6750): send the API key as a bearer token.",
                "required": True,
                "schema": {"type": "string"},
            }
        },
        429: {
            "Retry-After": {
                "description": "Whole seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        },
    }
    headers[503] = headers[429]
    return {
        status: {
            "model": ProblemDetails,
            "description": described[status],
            "content": {"application/problem+json": {}},
            **({"headers": headers[status]} if status in headers else {}),
        }
        for status in statuses
    }
