"""Typed reports: a scan's frequency report, a mixture's manifest and audit, a verification's
report. The same shapes as the OpenAPI document's (`ScanReport`, `MixtureManifest`, ...).

Every field has a default and unknown fields are kept (`extra="allow"`), so a report of an
older or newer server always parses. Read a report as attributes
(`scan.report.skills[skill_id].per_batch`); reading it as the dict it used to be
(`scan.report["skills"][skill_id]["per_batch"]`, `.get(...)`) still works.
`to_pandas()` turns the natural tables into DataFrames (pandas is optional:
`pip install pandas`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

if TYPE_CHECKING:
    import pandas


class Report(BaseModel):
    """A report as the server sent it: dumped again, it has the same keys (a field it did not
    carry is not added as null)."""

    model_config = ConfigDict(extra="allow")

    # No return annotation: with one, the schema would be that annotation's (a bare object).
    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler):
        data = handler(self)
        return {key: value for key, value in data.items() if key in self.model_fields_set}

    def __getitem__(self, key: str) -> Any:
        """`report["skills"]`: the dict-style read of earlier SDK versions."""
        if key in self.model_fields_set or key in type(self).model_fields:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None) if isinstance(key, str) else None
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return key in self.model_fields_set


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "to_pandas() needs pandas, which the SDK does not install: pip install pandas"
        ) from exc
    return pandas


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as `a_b` columns; a [lo, hi] interval (`..._ci95`) as `_lo` and `_hi`;
    other lists (per-file rows, histograms, per-seed values) left out of the table."""
    row: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            row.update(_flat(value, f"{name}_"))
        elif isinstance(value, list):
            if key.endswith("ci95") and len(value) == 2:
                row[f"{name}_lo"], row[f"{name}_hi"] = value
        else:
            row[name] = value
    return row


class GapSummary(Report):
    """Distances between consecutive instances (curation.stats.summarize); absent (null)
    for fewer than two instances."""

    mean: float | None = None
    median: float | None = None
    p90: float | None = None
    max: float | None = None
    cv: float | None = None


class LogHistogram(Report):
    """Gaps over log-spaced bins (curation.stats.log_histogram), for plots."""

    edges: list[float] = []
    counts: list[int] = []
    zeros: int | None = None


class CorpusSourceRef(Report):
    """A corpus as registered (curation.corpus.CorpusSource)."""

    uri: str | None = None
    format: str | None = None
    text_key: str | None = None
    id_key: str | None = None


class FileFingerprint(Report):
    path: str | None = None
    size: int | None = None
    mtime_ns: int | str | None = None
    etag: str | None = None


class CorpusFingerprint(Report):
    """Which files, how big, when modified (curation.sources.fingerprint.fingerprint)."""

    files: list[FileFingerprint] = []
    total_bytes: int | None = None
    digest: str | None = None


class CorpusChange(Report):
    """What changed between the corpus as registered and as scanned."""

    changed: bool | None = None
    added: list[str] = []
    removed: list[str] = []
    modified: list[str] = []
    reordered: bool | None = None
    summary: str | None = None


class TokenUnit(Report):
    """What a token is in this report (curation.sources.tokens.token_unit)."""

    mode: str | None = None
    bytes_per_token: float | None = None
    stderr: float | None = None
    tokenizer: str | None = None
    sample_docs: int | None = None
    sha256: str | None = None


class FileFrequency(Report):
    """One corpus file's share of a skill's frequency."""

    file: str | None = None
    docs_scanned: int | None = None
    tokens_scanned: int | None = None
    matched_docs: int | None = None
    instances: int | None = None
    probe_collisions: int | None = None
    per_million_tokens: float | None = None


class RateInterval(Report):
    """How `per_million_tokens_ci95` was made: `method` (`cluster_robust_gamma`), `unit`
    (`document`), the `dispersion` of the count with documents as clusters and the one
    applied; `file_dispersion`, with files as clusters, is reported, not applied."""

    method: str | None = None
    unit: str | None = None
    dispersion: float | None = None
    dispersion_applied: float | None = None
    effective_instances: float | None = None
    file_dispersion: float | None = None
    files: int | None = None


class SkillFrequency(Report):
    """How often one skill occurs in the corpus and how far apart (the frequency report of
    DESIGN.md; curation.scan_report). Positions and gaps are in tokens of `corpus.token_unit`."""

    name: str | None = None
    docs_scanned: int | None = None
    tokens_scanned: int | None = None
    matched_docs: int | None = None
    instances: int | None = None
    unique_instances: int | None = None
    max_repeats: int | None = None
    doc_fraction: float | None = None
    token_fraction: float | None = None
    instance_tokens: float | None = None
    per_million_tokens: float | None = None
    per_million_tokens_ci95: list[float] = []  # allows for clustering in documents
    per_million_tokens_poisson_ci95: list[float] = []  # assumes independent instances
    rate_interval: RateInterval | None = None
    per_batch: float | None = None
    per_batch_ci95: list[float] = []
    gap_tokens: GapSummary | None = None
    gap_batches: GapSummary | None = None
    gap_histogram: LogHistogram | None = None
    probe_collisions: int | None = None
    by_file: list[FileFrequency] = []


class ScanCorpus(Report):
    """Corpus totals of a scan, and what the corpus was."""

    files: int | None = None
    docs_scanned: int | None = None
    bytes_scanned: int | None = None
    tokens_scanned: int | None = None
    batch_tokens: int | None = None
    tasks: int | None = None
    source: CorpusSourceRef | None = None
    token_unit: TokenUnit | None = None
    bad_records: int | None = None
    bad_examples: list[str] | None = None
    fingerprint: CorpusFingerprint | None = None
    changed_since_registration: CorpusChange | None = None


class ScanReport(Report):
    """A scan's frequency report (curation.scan.run_scan, with the scan job's `warnings` and
    `corpus.changed_since_registration`)."""

    skills: dict[str, SkillFrequency] = {}
    corpus: ScanCorpus | None = None
    warnings: list[str] = []

    def to_pandas(self) -> pandas.DataFrame:
        """One row per skill (index `skill_id`): counts, rates with their intervals
        (`per_million_tokens_ci95_lo`, `..._hi`, the Poisson one as
        `per_million_tokens_poisson_ci95_lo`, ...; `rate_interval_dispersion`), `per_batch`,
        and gap statistics
        (`gap_batches_median`, `gap_tokens_cv`, ...)."""
        rows = [
            {"skill_id": skill_id, **_flat(skill.model_dump(exclude={"by_file", "gap_histogram"}))}
            for skill_id, skill in self.skills.items()
        ]
        return _pandas().DataFrame(rows).set_index("skill_id") if rows else _pandas().DataFrame()


class DoseEvery(Report):
    n: int | None = None
    k: int | None = None


class DoseTarget(Report):
    """A dose's target as given: exactly one of the three."""

    per_batch: float | None = None
    fraction: float | None = None
    every: DoseEvery | None = None


class PlanWarning(Report):
    """A plan entering a danger zone (curation.mixture.danger.warning), with its numbers."""

    kind: str | None = None
    skill_id: str | None = None
    message: str | None = None
    value: float | None = None
    threshold: float | None = None
    unique_instances: int | None = None


class NaturalFrequency(Report):
    """The corpus' own instances of a skill, in the mixture's units (bytes + EOS)."""

    instances: int | None = None
    unique_instances: int | None = None
    max_repeats: int | None = None
    per_batch: float | None = None
    token_fraction: float | None = None
    probe_collisions: int | None = None
    gap_tokens: GapSummary | None = None
    gap_histogram: LogHistogram | None = None


class CopiesPerUnique(Report):
    mean: float | None = None
    max: int | None = None


class PlannedSkill(Report):
    """The resolved dose of one skill (curation.mixture.skill_plan.SkillPlan)."""

    target: DoseTarget | None = None
    source: str | None = None
    source_requested: str | None = None
    spacing: str | None = None
    max_repeats: int | None = None
    version: int | None = None
    per_batch: float | None = None
    placements: int | None = None
    planned_per_batch: float | None = None
    batches_dosed: int | None = None
    max_per_batch: int | None = None
    mean_instance_tokens: float | None = None
    placement_tokens: float | None = None
    unique_available: int | None = None
    unique_available_exact: bool | None = None
    capacity: int | None = None
    unique_used: int | None = None
    new_instances: int | None = None
    copies_per_unique: CopiesPerUnique | None = None
    exposures_per_unique: float | None = None
    token_share: float | None = None
    inserted_tokens: float | None = None
    natural: NaturalFrequency | None = None
    placement_stream: str | None = None
    pool_size: int | None = None
    longest_instance_tokens: int | None = None


class PlanCorpus(Report):
    """The corpus as planning counts it (the mixture's tokens, one EOS per document)."""

    tokens: int | None = None
    docs: int | None = None
    bytes: int | None = None
    bytes_per_token: float | None = None
    fingerprint_digest: str | None = None
    batches: int | None = None
    tokens_estimated: bool | None = None
    tokenizer_sha256: str | None = None


class PlanEstimates(Report):
    inserted_tokens: int | None = None
    inserted_share: float | None = None
    corpus_tokens_used: int | None = None
    corpus_tokens_dropped: int | None = None


class PlannedMixture(Report):
    """What planning computed (curation.mixture.plan.MixturePlan.to_dict): the mixture's
    shape, each skill's resolved dose and schedule summary, estimates, warnings."""

    batch_tokens: int | None = None
    seq_len: int | None = None
    seed: int | None = None
    max_batches: int | None = None
    format: str | None = None
    tokenizer: dict[str, Any] | None = None
    seqs_per_batch: int | None = None
    n_batches: int | None = None
    n_sequences: int | None = None
    tokens: int | None = None
    corpus: PlanCorpus | None = None
    estimates: PlanEstimates | None = None
    skills: dict[str, PlannedSkill] = {}
    warnings: list[PlanWarning] = []


class ManifestTokenizer(Report):
    kind: str | None = None
    vocab_size: int | None = None
    eos: int | None = None
    eos_token: str | None = None
    file: str | None = None
    sha256: str | None = None
    name: str | None = None


class ManifestCorpus(CorpusSourceRef):
    fingerprint: CorpusFingerprint | None = None


class ManifestSkill(Report):
    version: int | None = None
    spec: dict[str, Any] = {}


class MixtureShard(Report):
    path: str | None = None
    kind: str | None = None
    sha256: str | None = None
    batches: list[int] = []
    sequences: int | None = None
    documents: int | None = None


class MixtureTotals(Report):
    inserted_tokens: int | None = None
    inserted_tokens_by_skill: dict[str, int] = {}
    padding_tokens: int | None = None
    corpus_tokens_used: int | None = None
    corpus_tokens_dropped: int | None = None


class MixtureFiles(Report):
    composition: str | None = None
    instances: str | None = None


class MixtureManifest(Report):
    """What a built mixture is (curation.mixture.manifest.build_manifest; the fields of
    docs/mixture-format.md). No timestamps or absolute paths."""

    format_version: int | None = None
    tokenizer: ManifestTokenizer | None = None
    token_dtype: str | None = None
    batch_tokens: int | None = None
    seq_len: int | None = None
    seqs_per_batch: int | None = None
    n_batches: int | None = None
    n_sequences: int | None = None
    tokens: int | None = None
    seed: int | None = None
    text_format: str | None = None
    corpus: ManifestCorpus | None = None
    skills: dict[str, ManifestSkill] = {}
    plan: PlannedMixture | None = None
    shards: list[MixtureShard] = []
    totals: MixtureTotals | None = None
    files: MixtureFiles | None = None


class AuditShards(Report):
    checked: int | None = None
    ok: bool | None = None
    problems: list[str] = []


class AuditPlanned(Report):
    placements: int | None = None
    per_batch: float | None = None


class AuditPerBatch(Report):
    mean: float | None = None
    min: int | None = None
    max: int | None = None


class AuditPlaced(Report):
    placements: int | None = None
    instances: int | None = None
    unique_instances: int | None = None
    copies_per_unique: CopiesPerUnique | None = None
    per_batch: AuditPerBatch | None = None


class ScheduleMiss(Report):
    batch: int | None = None
    planned: int | None = None
    placed: int | None = None


class AuditSchedule(Report):
    batches_off: int | None = None
    max_abs_deviation: int | None = None
    examples: list[ScheduleMiss] = []


class AuditNatural(Report):
    instances: int | None = None
    per_batch: float | None = None
    scan_per_batch: float | None = None
    probe_collisions: int | None = None


class SkillAudit(Report):
    """Planned against found, for one skill (curation.mixture.audit). Gaps are in tokens
    of the packed mixture, counted only inside one sequence."""

    name: str | None = None
    target: DoseTarget | None = None
    source: str | None = None
    spacing: str | None = None
    planned: AuditPlanned | None = None
    placed: AuditPlaced | None = None
    builder_placements: int | None = None
    schedule: AuditSchedule | None = None
    natural: AuditNatural | None = None
    per_batch_total: float | None = None
    token_fraction: float | None = None
    gap_tokens: GapSummary | None = None
    gap_batches: GapSummary | None = None
    target_gap_tokens: GapSummary | None = None
    target_gap_batches: GapSummary | None = None
    gap_tokens_all: GapSummary | None = None
    gap_batches_all: GapSummary | None = None
    gap_histogram: LogHistogram | None = None
    probe_collisions_placed: int | None = None
    passed: bool | None = None
    problems: list[str] = []


class MixtureAudit(Report):
    """A re-scan of the built mixture against its plan (curation.mixture.audit)."""

    tolerance: float | None = None
    rule: str | None = None
    n_batches: int | None = None
    tokens: int | None = None
    shards: AuditShards | None = None
    skills: dict[str, SkillAudit] = {}
    passed: bool | None = None


class PairedEffect(Report):
    """This arm's metric minus the baseline's on the same seed."""

    seeds: list[int] = []
    diffs: list[float] = []
    mean_diff: float | None = None
    mean_diff_ci95: list[float] = []
    method: str | None = None


class SensitivityRow(Report):
    """P(retained) and the verdict at a moved threshold."""

    threshold: float | None = None
    offset: float | None = None
    n_retained: int | None = None
    p_retained: float | None = None
    ci95: list[float] = []
    verdict: str | None = None


class SequentialLooks(Report):
    """How many seeds were trained, look by look."""

    looks: list[int] = []
    looks_done: list[int] = []
    z: float | None = None
    rule: str | None = None
    decided: bool | None = None


class EffectVsBaseline(Report):
    """This arm minus the baseline arm, on the same seeds."""

    p_retained_diff: float | None = None
    p_retained_diff_ci95: list[float] = []
    p_retained_diff_method: str | None = None
    mean_accuracy_diff: float | None = None
    mean_accuracy_diff_ci95: list[float] = []
    mean_accuracy_diff_method: str | None = None
    paired: PairedEffect | None = None


class ReadoutSummary(Report):
    """A readout's mean across seeds, with its percentile bootstrap interval."""

    mean: float | None = None
    ci95: list[float] = []
    n_seeds: int | None = None


class StratumCheck(Report):
    """A hard stratum across seeds: seeds that pass on the whole probe set while this
    stratum stays below its own threshold are flagged (a heuristic, not the rule)."""

    stratum: str | None = None
    chance: float | None = None
    threshold: float | None = None
    values: list[float | None] = []
    n: list[int] = []
    p_vs_chance: list[float | None] = []
    summary: ReadoutSummary | None = None
    flagged_seeds: list[int] = []
    warning: str | None = None
    readouts: dict[str, ReadoutSummary | None] = {}


class Verdict(Report):
    """Did `arm` make model `size` keep skill `skill_id`? (training.verdict.verdict and
    training.verify). A seed is retained when its final held-out `metric` >= threshold."""

    skill_id: str | None = None
    size: str | None = None
    arm: str | None = None
    p_retained: float | None = None
    ci95: list[float] = []
    threshold: float | None = None
    verdict: str | None = None
    n_seeds: int | None = None
    n_retained: int | None = None
    accuracies: list[float] = []
    mean_accuracy: float | None = None
    mean_accuracy_ci95: list[float] = []
    chance: float | None = None
    effect_vs_baseline: EffectVsBaseline | None = None
    rule: str | None = None
    mean_seen_accuracy: float | None = None
    mean_general_loss: float | None = None
    mean_forgetting: float | None = None
    metric: str | None = None
    readouts: dict[str, ReadoutSummary | None] = {}
    strata: dict[str, StratumCheck] = {}
    warnings: list[str] = []
    readouts_midrow: dict[str, ReadoutSummary | None] = {}
    given_success: float | None = None
    given_failure: float | None = None
    n_success: int | None = None
    n_failure: int | None = None
    threshold_sensitivity: list[SensitivityRow] = []


class StratumScores(Report):
    n: int | None = None
    acc: float | None = None
    loss: float | None = None
    forced_choice: float | None = None
    format_rate: float | None = None
    margin: float | None = None


class SkillScores(Report):
    heldout_acc: float | None = None
    heldout_loss: float | None = None
    seen_acc: float | None = None
    seen_loss: float | None = None
    heldout_forced_choice: float | None = None
    heldout_format_rate: float | None = None
    heldout_margin: float | None = None
    seen_forced_choice: float | None = None
    seen_format_rate: float | None = None
    seen_margin: float | None = None
    heldout_strata: dict[str, StratumScores] = {}
    heldout_midrow_acc: float | None = None
    heldout_midrow_forced_choice: float | None = None
    heldout_midrow_format_rate: float | None = None
    heldout_midrow_margin: float | None = None


class RunEvaluation(Report):
    """One evaluation of a run (training.trainer); a run's `final` is its last."""

    step: int | None = None
    tokens: int | None = None
    train_loss: float | None = None
    general_loss: float | None = None
    skills: dict[str, SkillScores] = {}


class RunForgetting(Report):
    forgetting: float | None = None
    n_pairs: int | None = None


class DataDraw(Report):
    """The data one run trained on (`seed_scope`, its mixture, its initial weights' seed)."""

    seed_scope: str | None = None
    init_seed: int | None = None
    mixture_dir: str | None = None
    mixture_seed: int | None = None
    variant_of: str | None = None
    tokens_sha256: list[str | None] = []


class VerificationRunResult(Report):
    """One finished training run: (arm, size, seed)."""

    arm: str | None = None
    size: str | None = None
    seed: int | None = None
    dir: str | None = None
    steps: int | None = None
    tokens: int | None = None
    seconds: float | None = None
    n_params: int | None = None
    resumes: int | None = None
    final: RunEvaluation | None = None
    evals: list[RunEvaluation] | None = None  # every evaluation in order
    forgetting: dict[str, RunForgetting] = {}
    data_draw: DataDraw | None = None


class ArmSummary(Report):
    """What the runs of one arm saw of their mixture (its first `steps` batches)."""

    mixture_dir: str | None = None
    n_batches: int | None = None
    batch_tokens: int | None = None
    placed_instances: dict[str, int] = {}
    placed_per_batch: dict[str, float] = {}
    exposure_batches: dict[str, int] = {}


class StratumChance(Report):
    chance: float | None = None
    probe_instances: int | None = None


class ProbeCollisions(Report):
    """Probe instances found in the runs' training text, left out of the probe sample."""

    excluded_instances: int | None = None
    occurrences_by_arm: dict[str, int] = {}
    rule: str | None = None


class SkillThreshold(Report):
    threshold: float | None = None
    chance: float | None = None
    threshold_rule: str | None = None
    name: str | None = None
    chance_rule: str | None = None
    metric: str | None = None
    strata: dict[str, StratumChance] = {}
    probe_collisions: ProbeCollisions | None = None


class TrainSettings(Report):
    """Training settings shared by every run (training.trainer.TrainConfig without size and
    seed, which vary per run)."""

    n_embd: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    token_budget: int | None = None
    lr: float | None = None
    min_lr: float | None = None
    warmup: int | None = None
    lr_schedule: str | None = None
    decay_fraction: float | None = None
    weight_decay: float | None = None
    betas: list[float] = []
    grad_clip: float | None = None
    micro_batch_size: int | None = None
    shuffle_within_batch: bool | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None
    device: str | None = None
    deterministic: bool | None = None
    compile: bool | None = None
    num_threads: int | None = None


class VerificationSettings(Report):
    sizes: list[str] = []
    seeds: list[int] = []
    steps: int | None = None
    baseline: str | None = None
    thresholds: dict[str, SkillThreshold] = {}
    train: TrainSettings | None = None
    seed_scope: str | None = None
    seed_scope_rule: str | None = None
    sequential: SequentialLooks | None = None


class HeldoutText(Report):
    """The corpus text no run trains on, for the general held-out loss."""

    tokens: int | None = None
    from_batch: int | None = None
    arm: str | None = None


class VerificationReport(Report):
    """Verdicts per skill x size x arm, run and arm summaries (training.verify, with the
    verification job's `heldout`)."""

    verdicts: list[Verdict] = []
    runs: list[VerificationRunResult] = []
    arms: dict[str, ArmSummary] = {}
    settings: VerificationSettings | None = None
    plots: list[str] = []
    seconds: float | None = None
    heldout: HeldoutText | None = None

    def to_pandas(self) -> pandas.DataFrame:
        """The verdicts, one row per skill x size x arm: `verdict`, `p_retained` with
        `ci95_lo`/`ci95_hi`, `n_retained` of `n_seeds`, `threshold`, `mean_accuracy`, the
        effect versus the baseline (`effect_vs_baseline_mean_accuracy_diff`, ...)."""
        rows = [
            _flat(v.model_dump(exclude={"accuracies", "rule", "warnings"})) for v in self.verdicts
        ]
        return _pandas().DataFrame(rows)

    def runs_to_pandas(self) -> pandas.DataFrame:
        """The training runs' final evaluation, one row per arm x size x seed x skill:
        held-out and seen accuracy and loss, forgetting, general loss, steps, seconds."""
        rows = []
        for run in self.runs:
            final = run.final or RunEvaluation()
            common = {
                "arm": run.arm, "size": run.size, "seed": run.seed, "steps": run.steps,
                "tokens": run.tokens, "seconds": run.seconds, "n_params": run.n_params,
                "train_loss": final.train_loss, "general_loss": final.general_loss,
            }  # fmt: skip
            for skill_id in dict.fromkeys([*final.skills, *run.forgetting]):
                scores = final.skills.get(skill_id) or SkillScores()
                forgetting = run.forgetting.get(skill_id) or RunForgetting()
                rows.append(
                    {
                        **common,
                        "skill_id": skill_id,
                        **scores.model_dump(
                            include=set(SkillScores.model_fields) - {"heldout_strata"}
                        ),
                        "forgetting": forgetting.forgetting,
                    }
                )
        return _pandas().DataFrame(rows)
