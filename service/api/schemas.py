"""Pydantic schemas for the API, in families per entity (Create / Public / ...Public)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from curation.mixture.models import DosingPlan, Every, SkillDose
from curation.mixture.tokenizer import TokenizerSpec
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
    size: int | None = Field(
        description="Bytes; null for a plot still to be drawn after the job's result (a "
        "scan's): a download draws it first."
    )
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


# Reports: what the libraries produce, typed for the OpenAPI document and generated clients.
# A report model describes the dict a library function returns (the source named on each
# class); the API passes that dict through, so a response carries exactly the keys the
# library wrote. Unknown keys are kept (`extra="allow"`): a newer library field never breaks
# the API. Fields the library always writes are required; a field only some reports carry
# (added by a later version, or only in some cases) has a default. tests/service/
# test_report_schemas.py checks, on a real scan, mixture and verification, that every key the
# libraries write is declared here.


class Report(BaseModel):
    """A library's report: unknown keys kept, and serialized with only the keys it was given
    (a declared field the report did not carry is not added as null)."""

    model_config = ConfigDict(extra="allow")

    # No return annotation: with one, the schema would be that annotation's (a bare object).
    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler):
        data = handler(self)
        return {key: value for key, value in data.items() if key in self.model_fields_set}


class GapSummary(Report):
    """Distances between consecutive instances (curation.stats.summarize); absent (null)
    for fewer than two instances."""

    mean: float
    median: float
    p90: float = Field(description="90th percentile (linear interpolation).")
    max: float
    cv: float | None = Field(
        description="Coefficient of variation (population std / mean); null when the mean is 0."
    )


class LogHistogram(Report):
    """Gaps over log-spaced bins (curation.stats.log_histogram), for plots."""

    edges: list[float] = Field(description="Bin edges, one more than `counts`.")
    counts: list[int]
    zeros: int = Field(description="Gaps of 0 (instances at one position): a log axis has no 0.")


class CorpusSourceRef(Report):
    """A corpus as registered (curation.corpus.CorpusSource)."""

    uri: str
    format: str
    text_key: str
    id_key: str | None


class FileFingerprint(Report):
    path: str
    size: int
    mtime_ns: int | str | None = Field(
        description="Modification time in ns; a string or null for remote files without one."
    )
    etag: str | None = Field(default=None, description="Remote files only, when known.")


class CorpusFingerprint(Report):
    """Which files, how big, when modified (curation.sources.fingerprint.fingerprint)."""

    files: list[FileFingerprint] = Field(description="In corpus order.")
    total_bytes: int
    digest: str = Field(description="sha256 of the file list: any change changes it.")


class CorpusChange(Report):
    """What changed between the corpus as registered and as scanned."""

    changed: bool
    added: list[str]
    removed: list[str]
    modified: list[str] = Field(description="Size or modification time changed.")
    reordered: bool
    summary: str = Field(description="The same in one line, for a person.")


class TokenUnit(Report):
    """What a token is in this report (curation.sources.tokens.token_unit)."""

    mode: str = Field(description="`bytes` (1 token per UTF-8 byte) or `tokenizer`.")
    bytes_per_token: float = Field(description="1.0 for bytes; calibrated on a sample else.")
    stderr: float = Field(description="Standard error of `bytes_per_token`.")
    tokenizer: str | None = Field(default=None, description="Tokenizer mode: which one.")
    sample_docs: int | None = Field(default=None, description="Tokenizer mode: sample size.")
    sha256: str | None = Field(
        default=None,
        description="Tokenizer mode: sha256 of the tokenizer.json; a mixture in that "
        "tokenizer is planned only from a scan with the same file.",
    )


class FileFrequency(Report):
    """One corpus file's share of a skill's frequency."""

    file: str
    docs_scanned: int
    tokens_scanned: int
    matched_docs: int
    instances: int
    probe_collisions: int
    per_million_tokens: float


class RateInterval(Report):
    """How `per_million_tokens_ci95` was made (curation.scan_report._rate_interval)."""

    method: str = Field(
        description="`cluster_robust_gamma`: the Garwood interval of the effective count "
        "instances / dispersion_applied, scaled back by dispersion_applied."
    )
    unit: str = Field(description="The clusters the dispersion is measured over: `document`.")
    dispersion: float | None = Field(
        description="Variance of the count over its Poisson variance with documents as "
        "clusters (cluster-robust, document length as exposure): 1 for independent "
        "instances, about the mean clump size when they clump; null without instances."
    )
    dispersion_applied: float = Field(description="max(1, dispersion); 1 when null.")
    effective_instances: float = Field(description="instances / dispersion_applied.")
    file_dispersion: float | None = Field(
        description="The same with files as clusters: reported, not applied."
    )
    files: int = Field(description="Files with text: the clusters of `file_dispersion`.")


class SkillFrequency(Report):
    """How often one skill occurs in the corpus and how far apart (the frequency report of
    DESIGN.md; curation.scan_report). Positions and gaps are in tokens of `corpus.token_unit`."""

    name: str | None = Field(default=None, description="The skill's name, when it has one.")
    docs_scanned: int
    tokens_scanned: int
    matched_docs: int = Field(description="Documents with at least one instance.")
    instances: int = Field(description="Matches of the skill's detector (exact count).")
    unique_instances: int = Field(description="Distinct instances, by instance key.")
    max_repeats: int = Field(description="Most copies of one unique instance.")
    doc_fraction: float = Field(description="matched_docs / docs_scanned.")
    token_fraction: float = Field(description="Share of the corpus' bytes inside instances.")
    instance_tokens: float = Field(description="Tokens inside instances, all together.")
    per_million_tokens: float
    per_million_tokens_ci95: list[float] = Field(
        description="[lo, hi]: 95% interval of `per_million_tokens` allowing for instances "
        "clustering within documents (see `rate_interval`)."
    )
    per_million_tokens_poisson_ci95: list[float] | None = Field(
        default=None,
        description="[lo, hi]: 95% Garwood (Poisson) interval, which assumes independent "
        "instances; too narrow when they cluster.",
    )
    rate_interval: RateInterval | None = Field(
        default=None, description="How `per_million_tokens_ci95` was made."
    )
    per_batch: float = Field(description="Expected instances per batch of `batch_tokens`.")
    per_batch_ci95: list[float] = Field(
        description="[lo, hi] of `per_batch`, from `per_million_tokens_ci95`."
    )
    gap_tokens: GapSummary | None = Field(
        description="Start-to-start distance of consecutive instances, in tokens."
    )
    gap_batches: GapSummary | None = Field(description="The same gaps in batches (fractional).")
    gap_histogram: LogHistogram | None = Field(description="Gaps in tokens; null without gaps.")
    probe_collisions: int = Field(
        description="Instances of the skill's held-out (probe) set found in the corpus."
    )
    by_file: list[FileFrequency] = Field(description="The same per corpus file, in corpus order.")


class ScanCorpus(Report):
    """Corpus totals of a scan, and what the corpus was."""

    files: int
    docs_scanned: int
    bytes_scanned: int
    tokens_scanned: int
    batch_tokens: int
    tasks: int = Field(description="Scan tasks (datatrove ranks) that wrote a partial.")
    source: CorpusSourceRef | None = None
    token_unit: TokenUnit | None = None
    bad_records: int | None = Field(
        default=None, description="Malformed records skipped (on_bad_record=skip)."
    )
    bad_examples: list[str] | None = Field(
        default=None, description="The first skipped records: file, line or row, reason."
    )
    fingerprint: CorpusFingerprint | None = Field(
        default=None, description="The corpus as scanned."
    )
    changed_since_registration: CorpusChange | None = Field(
        default=None, description="The corpus as scanned against the corpus as registered."
    )


class ScanReport(Report):
    """A scan's frequency report (curation.scan.run_scan, with the scan job's `warnings` and
    `corpus.changed_since_registration`)."""

    skills: dict[str, SkillFrequency] = Field(description="Per skill id.")
    corpus: ScanCorpus
    warnings: list[str] = Field(default=[], description="E.g. the corpus changed since.")


class DoseEvery(Report):
    n: int = Field(description="Instances placed in each dosed batch.")
    k: int = Field(description="Dose every k-th batch.")


class DoseTarget(Report):
    """A dose's target as given: exactly one of the three."""

    per_batch: float | None = None
    fraction: float | None = None
    every: DoseEvery | None = None


class PlanWarning(Report):
    """A plan entering a danger zone (curation.mixture.danger.warning), with its numbers."""

    kind: str = Field(description="Stable, e.g. `repeated_exposures`, `repeated_token_share`.")
    skill_id: str | None = None
    message: str = Field(description="For a person: what and what to change.")
    value: float | None = Field(default=None, description="The measured number.")
    threshold: float | None = Field(default=None, description="The number it crossed.")
    unique_instances: int | None = None


class NaturalFrequency(Report):
    """The corpus' own instances of a skill, in the mixture's tokens (with EOS)."""

    instances: int
    unique_instances: int
    max_repeats: int
    per_batch: float
    token_fraction: float
    probe_collisions: int
    gap_tokens: GapSummary | None
    gap_histogram: LogHistogram | None


class CopiesPerUnique(Report):
    mean: float
    max: int


class PlannedSkill(Report):
    """The resolved dose of one skill (curation.mixture.skill_plan.SkillPlan)."""

    target: DoseTarget
    source: str = Field(description="What is placed: `repeat` or `synthesize`.")
    source_requested: str = Field(description="As asked (`auto` resolves to one of the two).")
    spacing: str = Field(description="`uniform`, `random`, `clustered`, or `every`.")
    max_repeats: int
    version: int = Field(description="The skill version planned with.")
    per_batch: float = Field(description="Target rate in instances per batch.")
    placements: int = Field(description="Instances placed in the whole mixture.")
    planned_per_batch: float
    batches_dosed: int
    max_per_batch: int
    mean_instance_tokens: float
    placement_tokens: float = Field(description="Tokens one placement takes (with its EOS).")
    unique_available: int = Field(description="Unique instances the source can supply.")
    unique_available_exact: bool = Field(description="False when `unique_available` is a bound.")
    capacity: int = Field(description="unique_available x max_repeats.")
    unique_used: int
    new_instances: int = Field(description="Freshly generated instances (synthesize).")
    copies_per_unique: CopiesPerUnique
    exposures_per_unique: float = Field(
        description="Times the model sees each unique instance on average, natural ones included."
    )
    token_share: float = Field(description="Share of the mixture's tokens that are placements.")
    inserted_tokens: float
    natural: NaturalFrequency
    placement_stream: str = Field(
        description="What seeds the skill's schedule, instances and repeats with the mixture "
        "seed: the digest of its definition (detector, generator, probe split), not its id "
        "or name, so re-registering a skill gives the same mixture."
    )
    pool_size: int | None = Field(
        default=None,
        description="synthesize: the fixed pool of unique train instances the placements "
        "are drawn from (then `unique_available`); absent without a pool.",
    )
    longest_instance_tokens: int | None = Field(
        default=None,
        description="synthesize, in a plan whose batches hold more placements than sequences "
        "(so placements share rows): the longest sampled instance in tokens, without EOS, "
        "which had to fit in a placement's share of a row; absent otherwise.",
    )


class PlanCorpus(Report):
    """The corpus as planning counts it (the mixture's tokens, one EOS per document)."""

    tokens: int
    docs: int
    bytes: int
    bytes_per_token: float = Field(description="Of the scan's token unit.")
    fingerprint_digest: str | None
    batches: int = Field(description="Whole batches the corpus fills.")
    tokens_estimated: bool | None = Field(
        default=None,
        description="hf tokenizer: `tokens` is the lower bound of the scan's calibrated "
        "estimate, less a margin (curation.mixture.plan.TOKEN_MARGIN).",
    )
    tokenizer_sha256: str | None = Field(default=None, description="hf tokenizer: its file.")


class PlanEstimates(Report):
    inserted_tokens: int
    inserted_share: float
    corpus_tokens_used: int
    corpus_tokens_dropped: int = Field(
        description="Corpus text pushed off the end by placed instances."
    )


class PlannedMixture(Report):
    """What planning computed (curation.mixture.plan.MixturePlan.to_dict): the mixture's
    shape, each skill's resolved dose and schedule summary, estimates, warnings."""

    batch_tokens: int
    seq_len: int
    seed: int
    max_batches: int | None
    format: str = Field(description="Text shards' format.")
    tokenizer: dict[str, Any] | None = Field(
        default=None, description="The request's tokenizer; absent for bytes."
    )
    seqs_per_batch: int
    n_batches: int
    n_sequences: int
    tokens: int
    corpus: PlanCorpus
    estimates: PlanEstimates
    skills: dict[str, PlannedSkill] = Field(description="Per skill id; empty for a baseline.")
    warnings: list[PlanWarning]


class ManifestTokenizer(Report):
    kind: str = Field(
        description="`bytes`: one token per UTF-8 byte; `hf`: a Hugging Face tokenizer.json."
    )
    vocab_size: int
    eos: int = Field(description="The end-of-document token id.")
    eos_token: str | None = Field(default=None, description="hf: the EOS token's text.")
    file: str | None = Field(default=None, description="hf: its copy in the mixture folder.")
    sha256: str | None = Field(default=None, description="hf: sha256 of the tokenizer.json.")
    name: str | None = Field(default=None, description="hf: the file name it was given as.")


class ManifestCorpus(CorpusSourceRef):
    fingerprint: CorpusFingerprint


class ManifestSkill(Report):
    version: int
    spec: dict[str, Any] = Field(
        description="The skill version's definition (detector, generator, probe), as stored."
    )


class MixtureShard(Report):
    path: str = Field(description="Relative to the mixture folder.")
    kind: str = Field(
        description="`tokens` (little-endian ids of the manifest's `token_dtype`) or `text`."
    )
    sha256: str
    batches: list[int] = Field(description="[first, end): the batches it holds.")
    sequences: int | None = Field(default=None, description="Token shards.")
    documents: int | None = Field(default=None, description="Text shards.")


class MixtureTotals(Report):
    inserted_tokens: int
    inserted_tokens_by_skill: dict[str, int]
    padding_tokens: int
    corpus_tokens_used: int
    corpus_tokens_dropped: int


class MixtureFiles(Report):
    composition: str = Field(description="Per batch: each skill's placements and sequences.")
    instances: str = Field(description="Every placed instance.")


class MixtureExportFile(Report):
    path: str = Field(description="Relative to the mixture folder.")
    bytes: int
    sha256: str


class MixtureExport(Report):
    path: str = Field(description="Its folder, relative to the mixture folder.")
    sequences: int
    order: str
    files: list[MixtureExportFile]


class MixtureManifest(Report):
    """What a built mixture is (curation.mixture.manifest.build_manifest; the fields of
    docs/mixture-format.md). No timestamps or absolute paths."""

    format_version: int
    tokenizer: ManifestTokenizer
    token_dtype: Literal["uint16", "uint32"] = Field(
        default="uint16", description="Token shards' element type (by vocabulary size)."
    )
    batch_tokens: int
    seq_len: int
    seqs_per_batch: int
    n_batches: int
    n_sequences: int
    tokens: int
    seed: int
    text_format: str
    corpus: ManifestCorpus
    skills: dict[str, ManifestSkill] = Field(description="Per skill id.")
    plan: PlannedMixture
    shards: list[MixtureShard]
    totals: MixtureTotals
    files: MixtureFiles
    order: str | None = Field(
        default=None,
        description='"fixed": sample i of the mixture and of every export is sequence i; '
        "a trainer that shuffles undoes the spacing.",
    )
    exports: dict[str, MixtureExport] | None = Field(
        default=None, description="Per export name: its folder and files (output.exports)."
    )


class AuditShards(Report):
    checked: int
    ok: bool = Field(description="Every shard exists and matches its sha256.")
    problems: list[str]


class AuditPlanned(Report):
    placements: int
    per_batch: float


class AuditPerBatch(Report):
    mean: float
    min: int
    max: int


class AuditPlaced(Report):
    placements: int = Field(description="Verified placements: a placement with a match.")
    instances: int = Field(description="Matches inside the skill's own placements.")
    unique_instances: int | None = Field(
        default=None, description="Distinct match keys among those matches (re-measured)."
    )
    copies_per_unique: CopiesPerUnique | None = Field(
        default=None, description="Matches per distinct match key: mean and most."
    )
    per_batch: AuditPerBatch


class ScheduleMiss(Report):
    batch: int
    planned: int
    placed: int


class AuditSchedule(Report):
    batches_off: int = Field(description="Batches whose verified count differs from the plan.")
    max_abs_deviation: int
    examples: list[ScheduleMiss] = Field(description="The first batches off.")


class AuditNatural(Report):
    instances: int = Field(description="Matches outside the skill's own placements.")
    per_batch: float
    scan_per_batch: float | None = Field(
        description="What the plan expected from the scan; null for a skill it does not dose."
    )
    probe_collisions: int
    batches: list[int] | None = Field(
        default=None, description="Batches holding a natural instance, ascending (all)."
    )
    sequences: list[int] | None = Field(
        default=None,
        description="Sequences holding one, ascending (the first 10,000: `sequences_complete`).",
    )
    sequences_complete: bool | None = None
    exposure_batches: int | None = Field(
        default=None,
        description="In a verification's report, which leaves the lists out: their batches.",
    )


class SkillAudit(Report):
    """Planned against found, for one skill (curation.mixture.audit). Gaps are in tokens
    of the packed mixture, counted only inside one sequence."""

    name: str | None = None
    dosed: bool | None = Field(
        default=None,
        description="Whether the plan doses the skill; false: audited for its natural "
        "instances only (a baseline's skills), with an empty target and source `natural`.",
    )
    target: DoseTarget
    source: str
    spacing: str
    planned: AuditPlanned
    placed: AuditPlaced
    builder_placements: int = Field(description="Placements the builder recorded.")
    schedule: AuditSchedule
    natural: AuditNatural
    per_batch_total: float = Field(description="Placed and natural instances per batch.")
    token_fraction: float = Field(description="Share of the mixture's tokens in placements.")
    gap_tokens: GapSummary | None = Field(description="Between placed instances.")
    gap_batches: GapSummary | None
    target_gap_tokens: GapSummary | None = Field(description="What the schedule planned.")
    target_gap_batches: GapSummary | None
    gap_tokens_all: GapSummary | None = Field(description="Placed and natural instances.")
    gap_batches_all: GapSummary | None
    gap_histogram: LogHistogram | None
    probe_collisions_placed: int = Field(description="Placed instances from the probe set.")
    passed: bool
    problems: list[str]


class MixtureAudit(Report):
    """A re-scan of the built mixture against its plan (curation.mixture.audit)."""

    tolerance: float
    rule: str = Field(description="When a skill passes, in words.")
    n_batches: int
    tokens: int
    shards: AuditShards
    skills: dict[str, SkillAudit] = Field(description="Per skill id.")
    passed: bool


class PairedEffect(Report):
    """This arm's metric minus the baseline's on the same seed (training.verdict.paired_effect)."""

    seeds: list[int]
    diffs: list[float]
    mean_diff: float
    mean_diff_ci95: list[float]
    method: str


class EffectVsBaseline(Report):
    """This arm minus the baseline arm, on the same seeds."""

    p_retained_diff: float
    p_retained_diff_ci95: list[float]
    p_retained_diff_method: str
    mean_accuracy_diff: float
    mean_accuracy_diff_ci95: list[float]
    mean_accuracy_diff_method: str
    paired: PairedEffect | None = Field(
        default=None, description="The metric's difference seed by seed."
    )


class ReadoutSummary(Report):
    """A readout's mean across seeds (training.verdict.summary)."""

    mean: float
    ci95: list[float] = Field(description="Percentile bootstrap over seeds.")
    n_seeds: int


class StratumCheck(Report):
    """A hard stratum's readouts across seeds (training.verdict.stratum_check): a seed that
    passes on the whole probe set while this stratum stays below its own threshold is
    flagged, a heuristic rather than the rule. The verdict uses the whole probe set."""

    stratum: str
    chance: float = Field(description="The stratum's most common answer share.")
    threshold: float = Field(description="The verdict's threshold moved to this chance.")
    values: list[float | None] = Field(description="The verdict's metric per seed.")
    n: list[int] = Field(description="Stratum instances in each seed's probe sample.")
    p_vs_chance: list[float | None] = Field(
        description="One-sided exact binomial p-value against `chance`, per seed."
    )
    summary: ReadoutSummary | None
    flagged_seeds: list[int]
    warning: str | None
    readouts: dict[str, ReadoutSummary | None] = Field(
        default={}, description="Every readout (acc, forced_choice, format_rate, margin)."
    )


class SensitivityRow(Report):
    threshold: float
    offset: float
    n_retained: int
    p_retained: float | None
    ci95: list[float]
    verdict: str


class Verdict(Report):
    """Did `arm` make model `size` keep skill `skill_id`? (training.verdict.verdict and
    training.verify). A seed is retained when its final held-out `metric` >= threshold."""

    skill_id: str
    size: str
    arm: str
    p_retained: float = Field(description="Retained seeds / seeds.")
    ci95: list[float] = Field(description="[lo, hi]: Wilson score interval of `p_retained`.")
    threshold: float
    verdict: str = Field(
        description="`retained` (ci95 lower bound >= 0.5), `not_retained` (upper bound < 0.5) "
        "or `inconclusive`."
    )
    n_seeds: int
    n_retained: int
    metric: str | None = Field(
        default=None, description="`forced_choice` or `exact`: what `accuracies` hold."
    )
    accuracies: list[float] = Field(description="Final held-out `metric` per seed.")
    mean_accuracy: float
    mean_accuracy_ci95: list[float] = Field(description="Percentile bootstrap over seeds.")
    chance: float | None = Field(
        description="The metric's floor: the probe set's most common answer share."
    )
    effect_vs_baseline: EffectVsBaseline | None = Field(
        description="Null for the baseline arm, or without one."
    )
    rule: str = Field(description="How this verdict was reached, with its numbers.")
    mean_seen_accuracy: float | None = Field(
        default=None, description="On instances the runs trained on (memorisation)."
    )
    mean_general_loss: float | None = Field(
        default=None, description="Held-out loss on corpus text, nats per byte."
    )
    mean_forgetting: float | None = Field(
        default=None, description="Probe loss rise between exposures."
    )
    readouts: dict[str, ReadoutSummary | None] = Field(
        default={},
        description="Every held-out readout across seeds: acc (exact match with the end), "
        "forced_choice, format_rate, margin (training.evaluate).",
    )
    strata: dict[str, StratumCheck] = Field(default={}, description="Per hard stratum.")
    warnings: list[str] = Field(default=[], description="Strata at chance under a pass.")
    given_success: float | None = Field(
        default=None, description="Mean metric of the retained seeds (bimodality)."
    )
    given_failure: float | None = Field(default=None, description="Of the other seeds.")
    n_success: int | None = None
    n_failure: int | None = None
    threshold_sensitivity: list[SensitivityRow] = Field(
        default=[], description="P(retained) and the verdict at moved thresholds."
    )
    readouts_midrow: dict[str, ReadoutSummary | None] = Field(
        default={},
        description="`readouts` with the probes read mid-row, after held-out text, where a "
        "natural instance sits (a placed one starts its row).",
    )


class StratumScores(Report):
    """The readouts on one hard stratum of the probe sample."""

    n: int
    acc: float | None
    loss: float | None
    forced_choice: float | None
    format_rate: float | None
    margin: float | None


class SkillScores(Report):
    """Readouts (training.evaluate): exact match requires the answer's end; forced choice,
    format rate and margin are null for a family without a label set."""

    heldout_acc: float | None = Field(description="Exact match (and end) on held-out instances.")
    heldout_loss: float | None
    seen_acc: float | None = Field(description="Exact match on instances trained on.")
    seen_loss: float | None
    heldout_forced_choice: float | None = Field(
        default=None, description="Forced-choice accuracy over the family's labels."
    )
    heldout_format_rate: float | None = Field(
        default=None, description="Probability mass on valid labels."
    )
    heldout_margin: float | None = Field(
        default=None, description="log p(correct) - log p(best wrong label), nats."
    )
    seen_forced_choice: float | None = None
    seen_format_rate: float | None = None
    seen_margin: float | None = None
    heldout_strata: dict[str, StratumScores] = Field(
        default={}, description="Per hard stratum of the probe sample."
    )
    heldout_midrow_acc: float | None = Field(
        default=None,
        description="The probe sample read mid-row, after held-out text (where natural "
        "instances sit): exact match.",
    )
    heldout_midrow_forced_choice: float | None = None
    heldout_midrow_format_rate: float | None = None
    heldout_midrow_margin: float | None = None


class ReadingExposure(Report):
    """Where one reading sits in a skill's dosing (training.evaluate.Evaluator.exposure_at)."""

    period: int | None = Field(description="k of an `every {n, k}` dose; null otherwise.")
    phase: int | None = Field(
        description="The reading's step mod k: 0 is one whole period after a dose."
    )
    last_dose_batch: int | None = Field(description="The last batch with a placement before it.")
    batches_since_dose: int | None = Field(
        description="Batches trained after that batch (0: right after a dose); null: no dose."
    )
    natural_located: bool | None = Field(
        default=None, description="The mixture's audit located the natural instances."
    )
    last_natural_batch: int | None = Field(
        default=None, description="The last batch with a natural instance before it."
    )
    batches_since_natural: int | None = Field(
        default=None, description="Batches trained after that one; null: none (or not located)."
    )


class RunEvaluation(Report):
    """One evaluation of a run (training.trainer); a run's `final` is its last."""

    step: int | None = None
    tokens: int | None = None
    train_loss: float | None = None
    general_loss: float | None = None
    skills: dict[str, SkillScores] = {}
    exposure: dict[str, ReadingExposure] | None = Field(
        default=None, description="Per skill id: where the reading sits in its dosing."
    )


class RunForgetting(Report):
    forgetting: float | None = Field(description="Mean probe loss rise between exposures.")
    n_pairs: int
    exposures: str | None = Field(
        default=None,
        description="`placed`, or `placed+natural` when the audit located natural instances.",
    )


class DataDraw(Report):
    """The data one run trained on (training.verify.data_draw)."""

    seed_scope: str = Field(description="`init`, `data` or `both`: what the seeds vary.")
    init_seed: int = Field(description="Seed of the run's initial weights.")
    mixture_dir: str = Field(description="The mixture folder the run read, on the worker.")
    mixture_seed: int | None = Field(description="That mixture's seed.")
    variant_of: str | None = Field(
        description="The arm's mixture this seed's draw varies; null: the arm's mixture itself."
    )
    tokens_sha256: list[str | None] = Field(description="Its token shards' sha256.")


class VerificationRunResult(Report):
    """One finished training run: (arm, size, seed)."""

    arm: str
    size: str
    seed: int
    dir: str = Field(description="The run's folder on the worker.")
    steps: int
    tokens: int
    seconds: float
    n_params: int
    resumes: int = Field(description="Times the run resumed from a checkpoint.")
    final: RunEvaluation
    evals: list[RunEvaluation] | None = Field(
        default=None, description="Every evaluation in order (`final` is the last)."
    )
    forgetting: dict[str, RunForgetting] = Field(description="Per skill id.")
    data_draw: DataDraw | None = Field(default=None, description="What the run trained on.")


class ArmAudit(Report):
    """An arm's mixture audit, for the verification's skills (training.verify.audit_summary)."""

    passed: bool | None = Field(description="The whole audit passed (shards included).")
    tolerance: float | None
    rule: str | None = Field(description="When a skill passes, in words.")
    skills: dict[str, SkillAudit] = Field(description="Per skill id of the verification.")


class ArmSummary(Report):
    """What the runs of one arm saw of their mixture (its first `steps` batches)."""

    mixture_dir: str
    n_batches: int
    batch_tokens: int
    placed_instances: dict[str, int] = Field(description="Per skill id.")
    placed_per_batch: dict[str, float]
    exposure_batches: dict[str, int] = Field(description="Batches with a placement.")
    audit: ArmAudit | None = Field(
        default=None,
        description="The arm's mixture audit (every arm alike, a baseline too: a skill it "
        "does not dose is audited for its natural instances); null without a builder's plan.",
    )


class StratumChance(Report):
    chance: float = Field(description="The stratum's most common answer share.")
    probe_instances: int = Field(description="The stratum's instances in the probe set.")


class ProbeCollisions(Report):
    """Probe instances that occur naturally in the runs' training text (training.verify)."""

    excluded_instances: int = Field(description="Probe instances left out of the sample.")
    occurrences_by_arm: dict[str, int] = Field(description="Matches found, per arm.")
    rule: str


class SkillThreshold(Report):
    threshold: float
    chance: float
    threshold_rule: str = Field(description="Where the threshold came from.")
    name: str | None = None
    chance_rule: str | None = Field(default=None, description="What `chance` is.")
    metric: str | None = Field(default=None, description="What the verdict reads.")
    strata: dict[str, StratumChance] = Field(default={}, description="Per hard stratum.")
    probe_collisions: ProbeCollisions | None = Field(
        default=None, description="Probe instances found in the training text, left out."
    )


class TrainSettings(Report):
    """Training settings shared by every run (training.trainer.TrainConfig without size and
    seed, which vary per run)."""

    n_embd: int | None = Field(description="Overrides the size's width when set.")
    n_layer: int | None
    n_head: int | None
    token_budget: int | None = Field(description="Training tokens per run.")
    lr: float = Field(description="Peak learning rate.")
    min_lr: float
    warmup: int
    lr_schedule: str | None = Field(
        default=None, description="`cosine`, `constant` or `wsd` (after warmup)."
    )
    decay_fraction: float | None = Field(default=None, description="wsd: steps in its decay.")
    weight_decay: float
    betas: list[float]
    grad_clip: float
    micro_batch_size: int | None
    shuffle_within_batch: bool
    eval_every: int
    checkpoint_every: int
    device: str
    deterministic: bool
    compile: bool
    num_threads: int | None


class SequentialLooks(Report):
    """How many seeds were trained, look by look (training.verify, SEQUENTIAL_RULE)."""

    looks: list[int] = Field(description="Seed counts of the looks, fixed in advance.")
    looks_done: list[int] = Field(description="The looks trained.")
    z: float = Field(description="z of the Wilson interval that decides at a look.")
    rule: str
    decided: bool = Field(description="Every verdict cell decided at the last look done.")


class PhaseAlignment(Report):
    """How the readings of arms dosed `every {n, k}` are placed (training.verify.PHASE_RULE)."""

    periods: dict[str, int | None] = Field(description="Per arm: its dosing period, if any.")
    period: int = Field(description="Their lcm: the runs' steps are a multiple of it.")
    aligned: bool = Field(description="The runs' steps are a whole number of periods.")
    rule: str


class VerificationSettings(Report):
    sizes: list[str]
    seeds: list[int]
    steps: int = Field(description="Training steps per run.")
    baseline: str | None = Field(description="The arm the others are compared with.")
    thresholds: dict[str, SkillThreshold] = Field(description="Per skill id.")
    train: TrainSettings
    seed_scope: str | None = Field(default=None, description="What the seeds varied.")
    seed_scope_rule: str | None = Field(default=None, description="`seed_scope` in words.")
    sequential: SequentialLooks | None = None
    phase: PhaseAlignment | None = Field(
        default=None, description="Only when an arm is dosed `every {n, k}`."
    )


class HeldoutText(Report):
    """The corpus text no run trains on, for the general held-out loss."""

    tokens: int
    from_batch: int
    arm: str = Field(description="The arm whose mixture's tail it is.")


class VerificationReport(Report):
    """Verdicts per skill x size x arm, run and arm summaries (training.verify, with the
    verification job's `heldout`)."""

    verdicts: list[Verdict]
    runs: list[VerificationRunResult]
    arms: dict[str, ArmSummary]
    settings: VerificationSettings
    plots: list[str] = Field(description="Plot files on the worker; see the job's artifacts.")
    seconds: float | None = None
    heldout: HeldoutText | None = None


# Routes hand a job's stored result (the library's dict) to these fields and pydantic
# validates it into the model; these aliases tell the type checker that a dict is welcome.
if TYPE_CHECKING:
    ScanReportIn: TypeAlias = ScanReport | dict[str, Any]
    VerificationReportIn: TypeAlias = VerificationReport | dict[str, Any]
else:
    ScanReportIn, VerificationReportIn = ScanReport, VerificationReport


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
    tokenizer: TokenizerSpec | None = Field(
        default=None,
        description="What a token is in the report: bytes (default), or a Hugging Face "
        "tokenizer.json under an allowed root (counts calibrated on a sample). A mixture "
        "in that tokenizer needs a scan in it.",
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
    tokenizer: dict[str, Any] | None = Field(default=None, description="null: bytes.")
    created_at: datetime
    job: JobPublic
    report: ScanReportIn | None = Field(
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
        description="An absolute folder under SKILLMIX_ALLOWED_ROOTS, or an object-storage "
        "URL (s3://bucket/prefix, gs://...) under an allowed root of a protocol in "
        "SKILLMIX_ALLOWED_PROTOCOLS (built locally, uploaded with manifest.json last); "
        "default: <data dir>/mixtures/<mixture id>.",
    )
    format: Literal["jsonl.gz", "parquet"] = Field(
        default="jsonl.gz", description="Text shards; tokenized shards are always written."
    )
    exports: list[Literal["mds", "datatrove", "bin"]] = Field(
        default_factory=list,
        max_length=3,
        description="The mixture also in these trainers' files, in its order, under "
        "exports/<name>/ (docs/exports.md: MosaicML streaming MDS, datatrove/nanotron "
        "tokenized files, llm.c/nanoGPT .bin). Turn the trainer's shuffling off.",
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
    tokenizer: TokenizerSpec | None = Field(
        default=None,
        description="What a token is: bytes (default) or a Hugging Face tokenizer.json under "
        "an allowed root; the scan must have counted in the same tokenizer.",
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
            tokenizer=self.tokenizer or TokenizerSpec.model_validate({}),
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
    manifest: MixtureManifest | None = Field(default=None, description="Once built.")
    audit: MixtureAudit | None = Field(
        default=None, description="Once built: the built mixture re-scanned against its plan."
    )
    study_id: str | None = Field(default=None, description="The study that built it, if any.")


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
        description="Held-out value of the metric a seed must reach to count as retained; "
        "default: halfway between chance (the probe set's most common answer share) and 1.",
    )
    metric: Literal["forced_choice", "exact"] | None = Field(
        default=None,
        description="What the verdict reads: `forced_choice` (the label with the highest "
        "probability is the answer) or `exact` (exact match of the answer and its end). "
        "Default: `forced_choice` for a skill whose family has a label set, else `exact`; "
        "`forced_choice` for a skill whose family has none is a 422.",
    )
    min_seeds: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="Sequential verdicts: with min_seeds or max_seeds, seeds 0..max_seeds-1 "
        "train in looks fixed in advance (min_seeds, then doubling, up to max_seeds) until "
        "every verdict is decided (training.verdict.next_look); `seeds` is then not used. "
        "Default 10 when only max_seeds is given.",
    )
    max_seeds: int | None = Field(
        default=None, ge=1, le=200, description="The last look's seeds; default 40."
    )
    lr_schedule: Literal["cosine", "constant", "wsd"] = Field(
        default="cosine",
        description="The learning rate after warmup: `cosine` decays to a tenth of the peak "
        "at the last step; `constant` stays at the peak, so the final reading is not taken "
        "at a learning-rate floor; `wsd` (warmup-stable-decay) stays at the peak and decays "
        "linearly over the last 20% of the steps.",
    )
    seed_scope: Literal["init", "data", "both"] = Field(
        default="both",
        description="What the seeds vary: `init` the initial weights only (every seed trains "
        "on the arm's mixture), `data` the data only (each seed trains on its own draw of "
        "each arm's mixture: its synthesized instances, random schedules and the skills' "
        "order in a batch, built from the stored plan with a seed derived from the mixture's "
        "seed and the run seed; every run from the same initial weights), `both` both.",
    )
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        default=None, description="Default: SKILLMIX_DEVICE."
    )


class TrainingRunPublic(BaseModel):
    """The unit of work that trains a run (with the other seeds of its group, if any): one
    training worker holds it at a time, under a lease of its own."""

    id: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    seeds: list[int]
    look: int = Field(description="The look of a sequential design it belongs to (0: first).")
    progress: Progress
    attempts: int
    max_attempts: int
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunPublic(BaseModel):
    arm: str
    size: str
    seed: int
    state: str = Field(
        description="`pending`, `running` (summary: step, steps, tokens, tokens_per_second) "
        "or `done` (summary: the run's RunFinished)."
    )
    summary: dict[str, Any] | None = None
    unit: TrainingRunPublic | None = Field(
        default=None, description="The training unit that trains it, once the job planned it."
    )


class VerificationPublic(BaseModel):
    id: str
    arms: dict[str, str]
    skills: list[SkillRef]
    params: dict[str, Any]
    created_at: datetime
    job: JobPublic
    runs: list[RunPublic]
    report: VerificationReportIn | None = Field(
        default=None, description="Verdicts per skill x size x arm, run summaries; once done."
    )
    study_id: str | None = Field(default=None, description="The study that started it, if any.")


class VerificationsPublic(BaseModel):
    data: list[VerificationPublic]
    has_more: bool
    next_after: str | None = None


class AdaptiveDesign(StrictModel):
    """A dose-response placed by looks (analysis.design): the coarse log2 grid from `min` to
    `max` first (with the natural-frequency baseline), then, after each look, doses where
    the fitted P crosses `target_p`, until the ED interval is at most `factor` wide (high /
    low) or `max_runs` runs (per size, the baseline's included) are spent. Doses are
    instances placed per batch."""

    min: float = Field(gt=0, le=1e6, description="Smallest dose (instances per batch).")
    max: float = Field(gt=0, le=1e6, description="Largest dose (instances per batch).")
    max_runs: int = Field(
        default=64, ge=3, le=4096, description="Run budget per size, the baseline's included."
    )
    target_p: float | None = Field(
        default=None, gt=0, lt=1, description="The P the design aims at; default: the study's."
    )
    factor: float = Field(
        default=2.0, gt=1, description="Stop once the ED interval is at most this wide."
    )

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveDesign:
        if self.min >= self.max:
            raise ValueError(
                f"adaptive.min ({self.min:g}) must be below adaptive.max ({self.max:g})"
            )
        return self


class StudyDesign(StrictModel):
    """One of: `doses` (dose_response, size_transfer: instances per batch), `adaptive`
    (dose_response, size_transfer: doses placed look by look, until every size's fit
    stops), `dose` and `schedules` (spacing: every
    {n, k} with n/k = dose), or `dose` and `pool_sizes` (repetition: each point's placements
    drawn from a fixed pool of that many unique instances; null = fresh)."""

    doses: list[Annotated[float, Field(gt=0, le=1e6)]] | None = Field(
        default=None, min_length=2, max_length=16
    )
    dose: float | None = Field(default=None, gt=0)
    schedules: list[Every] | None = Field(default=None, min_length=2, max_length=16)
    adaptive: AdaptiveDesign | None = None
    pool_sizes: list[Annotated[int, Field(ge=1)] | None] | None = Field(
        default=None,
        min_length=2,
        max_length=16,
        description="repetition: unique instances per pool, null for fresh instances, "
        "e.g. [null, 400, 40, 4].",
    )


class StudyCreate(StrictModel):
    model_config = example(
        {
            "kind": "dose_response",
            "skill_ids": ["skill_..."],
            "corpus_id": "corpus_...",
            "scan_id": "scan_...",
            "sizes": ["nano"],
            "seeds_per_point": 8,
            "batch_tokens": 1024,
            "seq_len": 64,
            "token_budget": 4096000,
            "design": {"doses": [0.5, 1, 2, 4, 8]},
        }
    )

    kind: Literal["dose_response", "spacing", "repetition", "size_transfer"]
    skill_ids: list[str] = Field(min_length=1, max_length=8)
    corpus_id: str = Field(max_length=64)
    scan_id: str = Field(max_length=64, description="A succeeded scan of the corpus.")
    sizes: list[str] = Field(default=["nano"], min_length=1, max_length=5)
    seeds_per_point: int = Field(default=8, ge=2, le=64)
    seed_scope: Literal["init", "data", "both"] = Field(
        default="both", description="Passed to the study's verification."
    )
    metric: Literal["forced_choice", "exact"] | None = None
    threshold: float | None = Field(default=None, gt=0, le=1)
    target_p: float = Field(
        default=0.8, gt=0, lt=1, description="The P(retained) the recommendation aims at."
    )
    batch_tokens: int = Field(default=1024, ge=1, le=2**32)
    seq_len: int = Field(default=64, ge=2, le=2**20)
    seed: int = Field(default=0, ge=0, description="The point mixtures' build seed.")
    max_batches: int | None = Field(
        default=None, ge=1, description="Cap on each point mixture's length; default: whole corpus."
    )
    token_budget: int | None = Field(default=None, ge=1, description="Training tokens per run.")
    eval_every: int = Field(default=200, ge=1)
    checkpoint_every: int = Field(default=500, ge=1)
    device: Literal["auto", "cpu", "cuda"] | None = None
    design: StudyDesign


class StudyPoint(BaseModel):
    mixture_id: str
    dose: float | None = None
    pool_size: int | None = Field(
        default=None, description="repetition: the point's pool (null at the fresh point)."
    )
    schedule: dict[str, int] | None = None
    period: int | None = None
    natural: bool | None = None
    target: dict[str, Any] | None = None
    look: int | None = Field(
        default=None, description="adaptive: the look that first ran this dose."
    )


class StudyPublic(BaseModel):
    id: str
    kind: str
    params: dict[str, Any]
    skills: list[SkillRef]
    points: dict[str, StudyPoint] = Field(description="Arm name -> the point it measures.")
    verification_id: str = Field(description="The verification of its (latest) look.")
    looks: list[dict[str, Any]] | None = Field(
        default=None,
        description="adaptive: each look started so far: the decision that started it (look, "
        "doses, seeds, runs_so_far, reason, fit) and its verification_id. The report's "
        "design.looks adds the decision to stop.",
    )
    created_at: datetime
    job: JobPublic
    report: dict[str, Any] | None = Field(
        default=None,
        description="Per skill: points (P with Wilson intervals, seeds), fit per size (ED50, "
        "ED at target_p, slope, with profile intervals), recommendation per size; once done.",
    )


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    has_more: bool
    next_after: str | None = None


class StudyApply(StrictModel):
    model_config = example(
        {"size": "nano", "corpus_id": "corpus_...", "scan_id": "scan_...", "margin": "upper"}
    )

    size: str
    corpus_id: str = Field(max_length=64)
    scan_id: str = Field(max_length=64)
    output: MixtureOutput = MixtureOutput()
    margin: Literal["upper", "estimate"] = Field(
        default="upper",
        description="upper: the ED's upper 95% bound (the safety margin); estimate: the ED.",
    )


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
        500: "The resource's files could not be removed: nothing was deleted (send it again)",
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
