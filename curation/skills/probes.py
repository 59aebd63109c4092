"""Held-out probe instances, and train sampling that never returns one.

Two ways to hold out, chosen by the skill's `ProbeSpec`:

- `fraction` (finite families): an instance is a probe instance iff
  `score(key) < fraction`, where score is the first 8 bytes of
  BLAKE2b(PROBE_SALT + canonical key) read as an integer over 2**64. The salt is
  a constant, not the skill id, so the split is a property of the instance
  itself: it is the same for every skill, version, project, run and machine,
  and two skills that share instances agree on which are held out (a smaller
  fraction's probe set is contained in a larger one's).
- `size` (families too large to enumerate): the probe set is the first `size`
  distinct instances of a stream drawn with the constant PROBE_STREAM_SEED.

Train sampling is rejection sampling against that split.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import cached_property
from hashlib import blake2b
from typing import Literal

from curation.skills.families import Family
from curation.skills.instance import Instance
from curation.skills.matcher import SkillMatcher
from curation.skills.spec import SkillSpec

PROBE_SALT = "skillmix/probe/v1:"
PROBE_STREAM_SEED = 0x5EED_9B0B
MAX_DRAWS_PER_INSTANCE = 10_000

Split = Literal["probe", "train"]


def probe_score(key: str) -> float:
    """Uniform in [0, 1) for a canonical key, the same everywhere."""
    digest = blake2b((PROBE_SALT + key).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SkillGenerator:
    """A skill's generator family with its probe split applied."""

    def __init__(self, spec: SkillSpec):
        if spec.family is None:
            raise ValueError(f"skill {spec.id!r} has no generator")
        self.skill_id = spec.id
        self.family: Family = spec.family
        self.fraction = spec.probe.fraction
        self.size = spec.probe.size

    @cached_property
    def _probe_set(self) -> list[Instance]:
        """Size mode: the first `size` distinct instances of the probe-seeded stream."""
        assert self.size is not None
        rng = random.Random(PROBE_STREAM_SEED)
        found: dict[str, Instance] = {}
        for _ in range(self.size * MAX_DRAWS_PER_INSTANCE):
            if len(found) == self.size:
                break
            instance = self.family.draw(rng)
            found.setdefault(instance.key, instance)
        else:
            raise ValueError(f"skill {self.skill_id!r}: too few distinct instances for probe.size")
        return list(found.values())

    @cached_property
    def _probe_keys(self) -> frozenset[str]:
        return frozenset(instance.key for instance in self._probe_set)

    def split_of(self, key: str) -> Split:
        if self.fraction is not None:
            return "probe" if probe_score(key) < self.fraction else "train"
        return "probe" if key in self._probe_keys else "train"

    def sample(self, rng: random.Random, n: int, split: Split = "train") -> list[Instance]:
        """`n` instances of one split, drawn with replacement; deterministic for a seeded rng."""
        out: list[Instance] = []
        draws = 0
        while len(out) < n:
            if draws == n * MAX_DRAWS_PER_INSTANCE:
                raise ValueError(
                    f"skill {self.skill_id!r}: the {split} split looks empty or tiny "
                    f"({len(out)} hits in {draws:,} draws); change probe.fraction"
                )
            draws += 1
            instance = self.family.draw(rng)
            if self.split_of(instance.key) == split:
                out.append(instance)
        return out

    def instances(self, split: Split) -> Iterator[Instance]:
        """Every instance of one split, in enumeration order (finite families)."""
        if split == "probe" and self.fraction is None:
            return iter(self._probe_set)
        return (i for i in self.family.enumerate() if self.split_of(i.key) == split)

    def probe_instances(self, n: int | None = None) -> list[Instance]:
        """The probe set, or its first `n` instances (in enumeration or stream order)."""
        instances = self.instances("probe")
        if n is None:
            return list(instances)
        return [instance for instance, _ in zip(instances, range(n), strict=False)]


def sample_instances(
    spec: SkillSpec, n: int, seed: int = 0, split: Split = "train"
) -> list[Instance]:
    """`n` instances of the skill's `split`, drawn with `random.Random(seed)`."""
    return SkillGenerator(spec).sample(random.Random(seed), n, split)


def probe_instances(spec: SkillSpec, n: int | None = None) -> list[Instance]:
    """The skill's held-out instances (empty for a skill without a generator)."""
    if spec.generator is None:
        return []
    return SkillGenerator(spec).probe_instances(n)


def probe_match_keys(spec: SkillSpec) -> frozenset[str]:
    """Match keys of the skill's detector on its rendered probe instances.

    A scan reports a corpus match whose match key is in this set as a probe
    collision: the held-out instance (or a copy differing only in case and
    whitespace) appears in the corpus.
    """
    matcher = SkillMatcher([spec])
    return frozenset(
        match.key
        for instance in probe_instances(spec)
        for match in matcher.find(instance.text).get(spec.id, [])
    )
