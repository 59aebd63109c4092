"""Where placed instances come from: fresh generator instances, or copies of corpus documents.

Both supplies are *fresh first*: no instance gets a second copy before every
available one has one, and none gets more than `max_repeats` copies. That keeps
the copies per unique instance as low as the dose allows, which is the point of
SCIENCE.md section 3.

- `SynthesizedSupply` draws from the skill's TRAIN split only, through
  `SkillGenerator.sample(rng, 1, "train")` (rejection against the probe split),
  so a probe instance can never be placed. A draw whose key already has as many
  copies as the current round allows is drawn again; the round goes up once all
  T train instances have reached it (T is counted exactly, see
  `train_split_size`).
  With a `pool_size` P, a seeded draw first fixes the pool: the first P distinct train
  instances of its own stream (`draw_pool`; so for one seed a smaller pool is a subset
  of a larger one), and every placement is drawn from those P the same way (T = P).
- `RepeatSupply` walks the pool of matched corpus documents in a seeded random
  order, one pass per round, skipping a document once any of its match keys has
  `max_repeats` placed copies.

Memory grows with the number of distinct placed instances (their keys and
counts, needed for the cap and for instances.jsonl), not with the corpus.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from curation.mixture.pool import PoolDoc, RepeatPool
from curation.skills.instance import Instance
from curation.skills.probes import SkillGenerator
from curation.skills.spec import SkillSpec

TRAIN_COUNT_LIMIT = 100_000
"""Planning counts a fraction-split train split exactly up to this family size (about
half a second); a larger one is estimated as size x (1 - fraction). Builds always count."""
DRAWS_PER_FAMILY_ITEM = 20
"""A draw gives up after 20 x family-size tries: exp(-20) odds of giving up too early."""


def _row(sid: str, source: str, key: str, prompt: str, answer: str, text: str, count: int):
    return {
        "skill_id": sid,
        "key": key,
        "prompt": prompt,
        "answer": answer,
        "text": text,
        "source": source,
        "count": count,
    }


class SupplyExhausted(ValueError):
    """No instance is left under the repetition cap."""


@dataclass(frozen=True)
class Placement:
    """One placed exposure: an instance text (synthesize) or a whole document (repeat)."""

    skill_id: str
    source: str
    key: str
    text: str
    doc_id: str


@dataclass(frozen=True)
class TrainSplit:
    size: int
    exact: bool


@lru_cache(maxsize=32)
def _train_split(spec_json: str, exact: bool) -> TrainSplit:
    spec = SkillSpec.model_validate_json(spec_json)
    family = spec.family
    assert family is not None
    if spec.probe.size is not None:
        return TrainSplit(family.size - spec.probe.size, True)
    if exact or family.size <= TRAIN_COUNT_LIMIT:
        return TrainSplit(sum(1 for _ in SkillGenerator(spec).instances("train")), True)
    fraction = spec.probe.fraction or 0.0
    return TrainSplit(round(family.size * (1.0 - fraction)), False)


def train_split_size(spec: SkillSpec, exact: bool = False) -> TrainSplit:
    """Number of train instances of a skill with a generator (exact, or an estimate)."""
    if spec.family is None:
        raise ValueError(f"skill {spec.id!r} has no generator")
    return _train_split(spec.model_dump_json(), exact)


class Supply(Protocol):
    def take(self) -> Placement: ...

    def instance_rows(self) -> list[dict]:
        """instances.jsonl rows: every placed instance with its copy count, sorted by key."""
        ...


def draw_pool(generator: SkillGenerator, size: int, rng: random.Random) -> list[Instance]:
    """The first `size` distinct train instances that `rng` draws, in draw order."""
    found: dict[str, Instance] = {}
    tries = DRAWS_PER_FAMILY_ITEM * min(generator.family.size, 10**9)
    for _ in range(tries):
        if len(found) == size:
            return list(found.values())
        instance = generator.sample(rng, 1)[0]
        found.setdefault(instance.key, instance)
    if len(found) == size:
        return list(found.values())
    raise SupplyExhausted(
        f"skill {generator.skill_id}: pool_size={size:,} but {tries:,} draws found only "
        f"{len(found):,} distinct train instances; lower pool_size"
    )


class SynthesizedSupply:
    """Fresh train-split instances of one skill, fewest copies first, at most `cap` each.

    With `pool_size`, the instances come from a fixed pool of that many distinct train
    instances, drawn first with `pool_rng` (`draw_pool`)."""

    def __init__(
        self,
        spec: SkillSpec,
        cap: int,
        rng: random.Random,
        pool_size: int | None = None,
        pool_rng: random.Random | None = None,
    ):
        self.skill_id, self.cap, self.rng = spec.id, cap, rng
        self.generator = SkillGenerator(spec)
        self.train_size = train_split_size(spec, exact=True).size
        self.max_draws = DRAWS_PER_FAMILY_ITEM * min(self.generator.family.size, 10**9)
        self.pool: list[Instance] | None = None
        if pool_size is not None:
            if pool_size > self.train_size:
                raise SupplyExhausted(
                    f"skill {self.skill_id}: pool_size={pool_size:,} is larger than the "
                    f"train split ({self.train_size:,} instances); lower pool_size"
                )
            if pool_rng is None:
                raise ValueError("a pooled supply needs the pool's own rng (pool_rng)")
            self.pool = draw_pool(self.generator, pool_size, pool_rng)
            # Same odds of giving up too early as below, over the pool instead of the family.
            self.train_size, self.max_draws = pool_size, DRAWS_PER_FAMILY_ITEM * pool_size
        self.round = 1
        self.full = 0  # keys whose count reached the round
        self.counts: Counter[str] = Counter()
        self.instances: dict[str, Instance] = {}

    def _draw(self) -> Instance:
        if self.pool is not None:
            return self.pool[self.rng.randrange(len(self.pool))]
        return self.generator.sample(self.rng, 1)[0]

    def take(self) -> Placement:
        if self.round > self.cap:
            what = "pool" if self.pool is not None else "train"
            raise SupplyExhausted(
                f"skill {self.skill_id}: all {self.train_size:,} {what} instances have "
                f"max_repeats={self.cap} copies"
            )
        for _ in range(self.max_draws):
            instance = self._draw()
            count = self.counts[instance.key]
            if count < self.round:
                break
        else:
            raise SupplyExhausted(f"skill {self.skill_id}: no fresh train instance found")
        self.counts[instance.key] = count + 1
        self.instances.setdefault(instance.key, instance)
        if count + 1 == self.round:
            self.full += 1
            if self.full == self.train_size:
                self.round, self.full = self.round + 1, 0
        doc_id = f"{self.skill_id}/{instance.key}"
        return Placement(self.skill_id, "synthesize", instance.key, instance.text, doc_id)

    def instance_rows(self) -> list[dict]:
        return [
            _row(self.skill_id, "synthesize", i.key, i.prompt, i.answer, i.text, self.counts[key])
            for key, i in sorted(self.instances.items())
        ]


class RepeatSupply:
    """Copies of matched corpus documents, one pass over the shuffled pool per round."""

    def __init__(
        self,
        skill_id: str,
        pool: RepeatPool,
        cap: int,
        rng: random.Random,
        parse: Callable[[str], tuple[str, str] | None] | None = None,
    ):
        self.skill_id, self.pool, self.cap, self.rng, self.parse = skill_id, pool, cap, rng, parse
        self.docs = pool.docs.get(skill_id, [])
        self.order: list[int] = []
        self.cursor = 0
        self.picked_this_pass = 0
        self.counts: Counter[str] = Counter()  # placed copies per match key
        self.copies: Counter[int] = Counter()  # placed copies per pool document
        self.placed: Counter[str] = Counter()  # placements per placement key (first match key)
        self.matched: dict[str, str] = {}  # placement key -> the matched instance text

    def _eligible(self, doc: PoolDoc) -> bool:
        return all(self.counts[key] < self.cap for key in doc.keys)

    def next_index(self) -> int:
        """Index of the next document to place (no text is read)."""
        while True:
            if self.cursor == len(self.order):
                if self.order and self.picked_this_pass == 0:
                    raise SupplyExhausted(
                        f"skill {self.skill_id}: every repeatable document reached "
                        f"max_repeats={self.cap}"
                    )
                if not self.docs:
                    raise SupplyExhausted(f"skill {self.skill_id}: no repeatable document")
                self.order = self.rng.sample(range(len(self.docs)), len(self.docs))
                self.cursor, self.picked_this_pass = 0, 0
            index = self.order[self.cursor]
            self.cursor += 1
            if self._eligible(self.docs[index]):
                self.counts.update(self.docs[index].keys)
                self.copies[index] += 1
                self.picked_this_pass += 1
                return index

    def take(self) -> Placement:
        doc = self.docs[self.next_index()]
        text = self.pool.text(doc)
        self.placed[doc.keys[0]] += 1
        self.matched.setdefault(doc.keys[0], text[doc.span[0] : doc.span[1]])
        return Placement(self.skill_id, "repeat", doc.keys[0], text, doc.doc_id)

    def instance_rows(self) -> list[dict]:
        rows = []
        for key, matched in sorted(self.matched.items()):
            prompt, answer = (self.parse(matched) if self.parse else None) or (matched, "")
            count = self.placed[key]
            rows.append(_row(self.skill_id, "repeat", key, prompt, answer, matched, count))
        return rows

    def capacity(self, wanted: int) -> int:
        """How many of `wanted` placements this supply can make (simulated on a copy)."""
        probe = RepeatSupply(self.skill_id, self.pool, self.cap, random.Random())
        probe.rng.setstate(self.rng.getstate())
        for made in range(wanted):
            try:
                probe.next_index()
            except SupplyExhausted:
                return made
        return wanted
