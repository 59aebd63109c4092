"""The dosing plan a user writes, as validated pydantic models.

Every model rejects unknown fields and says what to change, so a REST layer can
validate a request with `DosingPlan.model_validate(body)` and answer 422. Checks
that need the scan report or the skills (is the target reachable, does the skill
have a generator) are made by `plan_mixture`, which raises PlanError.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.mixture.tokenizer import TokenizerSpec

DEFAULT_MAX_REPEATS = 4
"""Copies placed per unique instance at most, by default. Muennighoff et al. (2023,
"Scaling Data-Constrained Language Models") found up to ~4 epochs of repeated data
about as useful as fresh data; SCIENCE.md section 3 shows what lies far beyond."""
MAX_REPEATS_LIMIT = 1_000_000
"""The largest `max_repeats` a plan accepts (a repetition study's pooled points use it: there
the pool, not the cap, is what limits the copies)."""

Source = Literal["repeat", "synthesize", "auto"]
Spacing = Literal["uniform", "random", "clustered"]
OutputFormat = Literal["jsonl.gz", "parquet"]


class Every(BaseModel):
    """`n` instances in every `k`-th batch (batches 0, k, 2k, ...), none elsewhere."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1, description="Instances placed in each dosed batch.")
    k: int = Field(ge=1, description="Dose every k-th batch: batches 0, k, 2k, ...")


class Target(BaseModel):
    """Exactly one of: `per_batch` instances, a `fraction` of tokens, or `every` {n, k}.

    Targets count placed instances; the corpus' own (natural) instances come on top.
    """

    # "Exactly one" in the JSON schema too, so that clients (and schema-driven tools) see it.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [{"required": [name]} for name in ("per_batch", "fraction", "every")]
        },
    )

    per_batch: float | None = Field(None, gt=0, description="Instances per batch.")
    fraction: float | None = Field(
        None, gt=0, lt=1, description="Share of the mixture's tokens that are placed instances."
    )
    every: Every | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = [name for name in ("per_batch", "fraction", "every") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of per_batch, fraction or every "
                f"(got {', '.join(given) if given else 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(name for name in ("per_batch", "fraction", "every") if getattr(self, name))


class SkillDose(BaseModel):
    """The dose of one skill: how much, from where, how spread, and the repetition cap."""

    model_config = ConfigDict(extra="forbid")

    target: Target
    source: Source = Field(
        "auto",
        description="repeat (copies of matched corpus documents), synthesize (fresh "
        "generator instances, train split only), auto (synthesize if the skill has a "
        "generator, else repeat).",
    )
    max_repeats: int = Field(
        DEFAULT_MAX_REPEATS,
        ge=1,
        le=MAX_REPEATS_LIMIT,
        description="Most copies placed of one unique instance (counted by instance key).",
    )
    pool_size: int | None = Field(
        None,
        ge=1,
        description="synthesize only: draw every placement from a fixed pool of this many "
        "unique train-split instances (chosen by the mixture seed) instead of the whole "
        "train split; pool_size x max_repeats must cover the placements. For measuring "
        "what repetition costs (a repetition study); default: no pool.",
    )
    spacing: Spacing = Field(
        "uniform",
        description="uniform (as even as possible), random (i.i.d. over batches), "
        "clustered (bursts; for ablations).",
    )

    @model_validator(mode="after")
    def _every_fixes_spacing(self) -> SkillDose:
        if self.target.every is not None and self.spacing != "uniform":
            raise ValueError(
                f"target.every fixes the spacing itself; drop spacing={self.spacing!r} "
                "or use target.per_batch"
            )
        return self

    @model_validator(mode="after")
    def _pool_needs_a_generator(self) -> SkillDose:
        if self.pool_size is not None and self.source == "repeat":
            raise ValueError(
                "pool_size draws a fixed pool of generated instances, so it needs "
                "source=synthesize (or auto with a generator); a repeat dose's pool is the "
                "corpus' own matched documents: drop pool_size or use source=synthesize"
            )
        return self


class DosingPlan(BaseModel):
    """The whole mixture: a dose per skill id, batch geometry, seed, length cap, output format.

    Packing: documents are cut into sequences of `seq_len` tokens and batch b is
    the b-th run of batch_tokens / seq_len sequences (see docs/mixture-format.md).
    """

    model_config = ConfigDict(extra="forbid")

    skills: dict[str, SkillDose] = Field(
        default_factory=dict, description="Dose per skill id; empty for a baseline mixture."
    )
    batch_tokens: int = Field(262_144, ge=1, le=2**32, description="Tokens per batch.")
    seq_len: int = Field(512, ge=2, le=2**20, description="Tokens per packed sequence.")
    seed: int = Field(0, ge=0, description="Seed of every random choice of the build.")
    max_batches: int | None = Field(
        None, ge=1, description="Cap on the mixture's length; default: the whole corpus."
    )
    format: OutputFormat = Field(
        "jsonl.gz", description="Text shards; tokenized shards are always written too."
    )
    tokenizer: TokenizerSpec = Field(
        default_factory=lambda: TokenizerSpec.model_validate({}),
        description="What a token is: bytes (default) or a Hugging Face tokenizer.json; "
        "every count of the plan is in its tokens.",
    )
