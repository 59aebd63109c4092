"""The definition of a skill, as validated pydantic models.

Every model rejects unknown fields, and every check raises a pydantic
ValidationError whose message says what to change, so a REST layer can validate
a request body with `SkillDefinition.model_validate(json)` and answer 422.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curation.skills.detectors import (
    MAX_KEYWORD_CHARS,
    MAX_KEYWORDS,
    MAX_KEYWORDS_TOTAL_CHARS,
    BuiltinDetector,
    ConcreteDetector,
    Detector,
    KeywordsDetector,
    RegexDetector,
)
from curation.skills.families import FAMILIES, Family, build_family, validate_params
from curation.skills.regex import MAX_PATTERN_CHARS

MAX_PROBE_SIZE = 100_000
DEFINITION_FIELDS = frozenset({"detector", "generator", "probe"})
"""What defines a skill's instances (found and made); `definition_digest` covers these."""
DEFINITION_SALT = "skillmix/skill-definition/v1:"
DEFAULT_PROBE_FRACTION = 0.5
DEFAULT_PROBE_SIZE = 1000

__all__ = [
    "DEFAULT_PROBE_FRACTION",
    "DEFAULT_PROBE_SIZE",
    "MAX_KEYWORD_CHARS",
    "MAX_KEYWORDS",
    "MAX_KEYWORDS_TOTAL_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_PROBE_SIZE",
    "BuiltinDetector",
    "Detector",
    "GeneratorSpec",
    "KeywordsDetector",
    "ProbeSpec",
    "RegexDetector",
    "SkillDefinition",
    "SkillSpec",
    "definition_digest",
]


class GeneratorSpec(BaseModel):
    """A built-in generator family and its params; params come back with defaults filled in."""

    model_config = ConfigDict(extra="forbid")

    family: str = Field(description=f"One of: {', '.join(FAMILIES)}.")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        if family not in FAMILIES:
            raise ValueError(
                f"unknown generator family {family!r}; known families: {', '.join(FAMILIES)}"
            )
        return family

    @model_validator(mode="after")
    def _valid_params(self) -> GeneratorSpec:
        self.params = validate_params(self.family, self.params)
        return self

    def build(self) -> Family:
        return build_family(self.family, self.params)


class ProbeSpec(BaseModel):
    """The held-out split: a `fraction` of the instances, or a fixed `size` set.

    Leave both unset for the default: half of a finite family's instances, or
    DEFAULT_PROBE_SIZE instances of a family too large to enumerate.
    """

    model_config = ConfigDict(extra="forbid")

    fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    size: int | None = Field(default=None, ge=1, le=MAX_PROBE_SIZE)

    @model_validator(mode="after")
    def _one_of(self) -> ProbeSpec:
        if self.fraction is not None and self.size is not None:
            raise ValueError("give probe.fraction or probe.size, not both")
        return self


class SkillDefinition(BaseModel):
    """What a user writes to register a skill (a request body): no id, no version."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)  # the service stores it in VARCHAR(100)
    description: str = Field(default="", max_length=10_000)
    detector: Detector
    generator: GeneratorSpec | None = None
    probe: ProbeSpec = Field(default_factory=ProbeSpec)

    @model_validator(mode="after")
    def _consistent(self) -> SkillDefinition:
        if isinstance(self.detector, BuiltinDetector) and self.generator is None:
            raise ValueError(
                "detector kind 'builtin' needs a generator: "
                "it is the generator family's own detector"
            )
        if self.generator is not None:
            self.probe = _resolve_probe(self.probe, self.generator.build())
        elif self.probe.fraction is None and self.probe.size is None:
            self.probe = ProbeSpec(fraction=DEFAULT_PROBE_FRACTION)
        return self


def _resolve_probe(probe: ProbeSpec, family: Family) -> ProbeSpec:
    """The probe spec with its default made explicit, checked against the family's size."""
    if probe.fraction is None and probe.size is None:
        if family.finite:
            return ProbeSpec(fraction=DEFAULT_PROBE_FRACTION)
        probe = ProbeSpec(size=DEFAULT_PROBE_SIZE)
    if probe.fraction is not None and not family.finite:
        raise ValueError(
            f"probe.fraction needs a family small enough to enumerate; {family.name!r} has "
            f"{family.size:,} instances with these params: give probe.size instead"
        )
    if probe.size is not None and probe.size > family.size // 2:
        raise ValueError(
            f"probe.size ({probe.size}) must be at most half of the family's "
            f"{family.size:,} instances, so that training keeps the other half"
        )
    return probe


class SkillSpec(SkillDefinition):
    """A registered skill version: the definition plus its id and version."""

    id: str = Field(min_length=1, max_length=200)
    version: int = Field(default=1, ge=1)

    @cached_property
    def family(self) -> Family | None:
        """The generator family, built once per spec object (None without a generator)."""
        return None if self.generator is None else self.generator.build()

    def concrete_detector(self) -> ConcreteDetector:
        """The detector to run: a builtin detector resolves to its family's regex or keywords."""
        if isinstance(self.detector, BuiltinDetector):
            assert self.family is not None  # checked at validation
            return self.family.detector()
        return self.detector


def definition_digest(skill: SkillDefinition) -> str:
    """sha256 (hex) of the canonical JSON of what defines the skill's instances.

    It covers DEFINITION_FIELDS: the detector (which corpus text is an instance, so
    which documents `repeat` can place), the generator family with its params (defaults
    filled in by validation) and the probe split (resolved, so which instances are
    train). It leaves out the name and description, which change no instance, and the
    id and version, which the registry assigns: two registrations of one definition
    have one digest, so a mixture seeded by it is the same. Canonical: keys sorted, no
    whitespace, ASCII; list order (keywords) is kept as given. A change to any of this
    moves every mixture's placements; a test pins one digest so it cannot go unnoticed.
    """
    fields = skill.model_dump(mode="json", include=set(DEFINITION_FIELDS))
    text = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256((DEFINITION_SALT + text).encode("ascii")).hexdigest()
