"""SynthesizedSupply with a pool: a fixed set of pool_size train instances, chosen by its own
seeded stream, placed fewest copies first, never beyond max_repeats. No files."""

import random
from collections import Counter

import pytest

from curation.mixture.supply import SupplyExhausted, SynthesizedSupply, draw_pool
from curation.skills.probes import SkillGenerator
from curation.skills.spec import SkillSpec

TP = SkillSpec.model_validate(
    {
        "id": "tp",
        "name": "token pairs",
        "detector": {"kind": "builtin"},
        "generator": {"family": "token_pair", "params": {"k": 20}},
    }
)  # fmt: skip  (175 train instances)


def pooled(pool_size: int, cap: int = 1000, seed: int = 0, pool_seed: int = 0):
    return SynthesizedSupply(TP, cap, random.Random(seed), pool_size, random.Random(pool_seed))


def test_a_pool_places_exactly_its_instances_fresh_first():
    supply = pooled(10)
    seen: Counter[str] = Counter()
    for taken in range(1, 95):
        seen[supply.take().key] += 1
        # fresh first: no instance gets a copy more than any other one has, plus one
        assert max(seen.values()) - min(seen.values()) <= 1
        assert len(seen) == min(taken, 10)
    assert set(seen) == {i.key for i in supply.pool or []}
    train = {i.key for i in SkillGenerator(TP).instances("train")}
    assert set(seen) <= train  # never a probe instance
    rows = supply.instance_rows()
    assert len(rows) == 10 and sum(r["count"] for r in rows) == 94
    assert {r["key"]: r["count"] for r in rows} == dict(seen)


def test_the_cap_bounds_copies_per_pool_instance():
    supply = pooled(3, cap=2)
    keys = Counter(supply.take().key for _ in range(6))
    assert sorted(keys.values()) == [2, 2, 2]
    with pytest.raises(SupplyExhausted, match="all 3 pool instances have max_repeats=2"):
        supply.take()


def test_a_pool_larger_than_the_train_split_is_refused():
    with pytest.raises(SupplyExhausted, match="pool_size=176 is larger than the train split"):
        pooled(176)
    assert len(pooled(175).pool or []) == 175  # the whole split is a pool too


def test_the_pool_is_seeded_and_nested_across_sizes():
    def pool(size: int, seed: int) -> list[str]:
        return [i.key for i in draw_pool(SkillGenerator(TP), size, random.Random(seed))]

    assert pool(40, 1) == pool(40, 1)  # deterministic
    assert set(pool(40, 1)) != set(pool(40, 2))  # another seed, another pool
    assert pool(40, 1)[:4] == pool(4, 1)  # a smaller pool is the start of a larger one
    assert len(set(pool(40, 1))) == 40
    # The placements draw from their own stream: the same pool, placed in another order,
    # and the same order again for the same seeds.
    order = [[s.take().key for _ in range(15)] for s in (pooled(5, seed=1), pooled(5, seed=2))]
    assert set(order[0]) == set(order[1]) and order[0] != order[1]
    assert pooled(5, seed=1).take().key == order[0][0]
