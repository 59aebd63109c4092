"""Seed-batched training (training.batched) against single runs of the same seeds.

Tolerance: the issue asks that per-step training losses over the first 200 steps in fp32
agree within relative 1e-4; that is what is asserted. Measured here (2-core CPU, torch
2.13): the largest relative difference over the 200 steps of three seeds was 0.0, the
members' losses equal their single runs' bit for bit. (Before the grouped forward took
per-member layer_norm and cross_entropy calls it was 4e-3: rounding in two reductions,
amplified by training; a single run on two threads drifts from itself on one thread as far.)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from tests.training.conftest import TINY
from tests.training.mixtures import every, prose, write_mixture
from training import checkpoint, verdict
from training.batched import PREVIOUS, clip_per_member, grouped_forward, train_group
from training.evaluate import EvalSpec
from training.events import Event, RunFinished, RunKey, RunStarted, StepDone
from training.model import GPT, ModelConfig
from training.parallel import RunSpec, plan_groups, train_runs
from training.trainer import CHECKPOINT, WEIGHTS, TrainConfig, load_result, train_run

SEEDS = (0, 1, 2)
TOLERANCE = 1e-4


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory: pytest.TempPathFactory, skill) -> Path:
    """200 batches of 4 x 32 tokens; 2 comparison instances every 3rd batch."""
    out = tmp_path_factory.mktemp("mixture") / "long"
    return write_mixture(
        out, prose(0), n_batches=200, seq_len=32, seqs_per_batch=4,
        skills={"cmp": (skill, every(2, 3))},
    )  # fmt: skip


@pytest.fixture(scope="module")
def spec(skill, heldout_docs) -> EvalSpec:
    """Small: the 200-step runs evaluate at every step."""
    return EvalSpec(skills=[skill], heldout=heldout_docs, n_probe=16, n_seen=4, heldout_tokens=128)


def base(**kw) -> TrainConfig:
    """The default learning-rate schedule on the tiny model; every step evaluated, so each
    step's training loss is in the result (evals[i]["train_loss"] is step i's loss)."""
    fields = {"eval_every": 1, "checkpoint_every": 1000, "warmup": 10, "num_threads": 1}
    return TrainConfig(**TINY, **(fields | kw))


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(a)


def losses(result) -> list[float]:
    return [e["train_loss"] for e in result.evals[1:]]


@pytest.fixture(scope="module")
def singles_and_group(tmp_path_factory, long_dir, spec):
    out = tmp_path_factory.mktemp("runs")
    singles = [
        train_run(base(seed=s), long_dir, spec, out / f"single{s}", key=RunKey("a", "nano", s))
        for s in SEEDS
    ]
    events: list[Event] = []
    group = train_group(
        [base(seed=s) for s in SEEDS], [long_dir] * 3, spec, [out / f"g{s}" for s in SEEDS],
        events.append, keys=[RunKey("a", "nano", s) for s in SEEDS], group="a/nano/seeds 0,1,2",
    )  # fmt: skip
    return out, singles, group, events, spec


def test_initial_weights_equal_each_seeds_single_run(tmp_path, mixture_dir, eval_spec):
    config = base(seed=0, token_budget=128, eval_every=10)
    outs = [tmp_path / str(s) for s in SEEDS]
    stop_at_first_step = Stop()

    def stop(event: Event) -> None:
        if isinstance(event, RunStarted):
            raise stop_at_first_step

    with pytest.raises(Stop):
        train_group([dataclasses.replace(config, seed=s) for s in SEEDS], [mixture_dir] * 3,
                    eval_spec, outs, stop)  # fmt: skip
    # The cancel checkpointed every member before any step: its weights are the initial ones.
    for seed, out in zip(SEEDS, outs, strict=True):
        saved = checkpoint.load(out / CHECKPOINT)["model"]
        checkpoint.seed_everything(seed)
        single = GPT(config.model_config(257, 32)).state_dict()
        assert saved.keys() == single.keys()
        assert all(torch.equal(saved[k], single[k]) for k in single)


def test_losses_agree_with_single_runs_for_200_steps(singles_and_group):
    _, singles, group, _, _ = singles_and_group
    worst = 0.0
    for single, member in zip(singles, group, strict=True):
        assert len(losses(single)) == len(losses(member)) == 200
        pairs = zip(losses(single), losses(member), strict=True)
        worst = max(worst, *(rel(a, b) for a, b in pairs))
    assert worst < TOLERANCE, worst
    # The members are different runs, not copies of one.
    assert losses(group[0])[-1] != losses(group[1])[-1]


def test_readouts_agree_with_single_runs_to_the_verdict(singles_and_group):
    _, singles, group, _, _ = singles_and_group
    for single, member in zip(singles, group, strict=True):
        assert [e["step"] for e in member.evals] == [e["step"] for e in single.evals]
        a, b = single.final["skills"]["cmp"], member.final["skills"]["cmp"]
        assert a.keys() == b.keys()
        for name in ("heldout_acc", "heldout_forced_choice", "heldout_loss", "seen_loss"):
            assert b[name] == pytest.approx(a[name], rel=1e-4, abs=1e-6), name
        assert member.final["general_loss"] == pytest.approx(single.final["general_loss"], 1e-4)
        assert member.retention["cmp"]["n_pairs"] == single.retention["cmp"]["n_pairs"]

    def judge(results) -> dict:
        values = [r.final["skills"]["cmp"]["heldout_forced_choice"] for r in results]
        return verdict.verdict("cmp", "nano", "a", values, 0.6, None, 0.5, "given",
                               "forced_choice")  # fmt: skip

    assert judge(group)["verdict"] == judge(singles)["verdict"]


def test_members_store_results_and_events_as_single_runs_do(singles_and_group):
    out, singles, group, events, spec = singles_and_group
    for seed, single, _member in zip(SEEDS, singles, group, strict=True):
        stored = load_result(out / f"g{seed}")
        assert stored.group == "a/nano/seeds 0,1,2" and single.group is None
        assert stored.identity == single.identity  # the same run: reusable either way
        assert (out / f"g{seed}" / WEIGHTS).exists() and not (
            out / f"g{seed}" / CHECKPOINT
        ).exists()
        mine = [e for e in events if e.key == RunKey("a", "nano", seed)]
        assert isinstance(mine[0], RunStarted) and mine[0].group == stored.group
        assert isinstance(mine[-1], RunFinished) and mine[-1].summary["group"] == stored.group
        steps = [e for e in mine if isinstance(e, StepDone)]
        assert steps[-1].step == 200 and all(e.group == stored.group for e in steps)
    # A single run of a member's seed reuses the member's result.json, and so does a group.
    again: list[Event] = []
    result = train_run(base(seed=1), group[1].mixture_dir, spec,
                       out / "g1", again.append, key=RunKey("a", "nano", 1))  # fmt: skip
    assert result.evals == group[1].evals and [type(e) for e in again] == [RunFinished]


def group_weights(outs: list[Path]) -> list[dict[str, torch.Tensor]]:
    return [checkpoint.load(out / WEIGHTS)["model"] for out in outs]


def same(a: list[Path], b: list[Path]) -> None:
    for wa, wb in zip(group_weights(a), group_weights(b), strict=True):
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    for pa, pb in zip(a, b, strict=True):
        ra, rb = load_result(pa), load_result(pb)
        assert ra.evals == rb.evals and ra.retention == rb.retention


@pytest.fixture
def group_config(config) -> TrainConfig:
    return dataclasses.replace(config, num_threads=1)


def train(configs, dirs, spec, outs, on_event=None):
    return train_group(configs, dirs, spec, outs, on_event)


def test_a_resumed_group_equals_an_uninterrupted_one(tmp_path, group_config, mixture_dir,
                                                     eval_spec):  # fmt: skip
    configs = [dataclasses.replace(group_config, seed=s) for s in SEEDS]
    whole = [tmp_path / f"whole{s}" for s in SEEDS]
    train(configs, [mixture_dir] * 3, eval_spec, whole)
    cut = [tmp_path / f"cut{s}" for s in SEEDS]

    def stop_after_25(event: Event) -> None:
        if isinstance(event, StepDone) and event.step >= 25:
            raise Stop

    with pytest.raises(Stop):
        train(configs, [mixture_dir] * 3, eval_spec, cut, stop_after_25)
    # The cancel saved step 25 and kept step 20 as PREVIOUS. As if killed while saving:
    # member 1 holds only step 20, the others 20 and 25. The group resumes from 20.
    assert all(checkpoint.load(o / PREVIOUS)["state"]["step"] == 20 for o in cut)
    assert all(checkpoint.load(o / CHECKPOINT)["state"]["step"] == 25 for o in cut)
    (cut[1] / CHECKPOINT).unlink()
    events: list[Event] = []
    results = train(configs, [mixture_dir] * 3, eval_spec, cut, events.append)
    starts = [e for e in events if isinstance(e, RunStarted)]
    assert [e.step for e in starts] == [20, 20, 20]
    assert all(r.resumes == 1 for r in results)
    same(whole, cut)
    assert not any((o / PREVIOUS).exists() for o in cut)


def test_a_cancelled_group_resumes_from_its_cancel_checkpoint(tmp_path, group_config,
                                                              mixture_dir, eval_spec):  # fmt: skip
    configs = [dataclasses.replace(group_config, seed=s) for s in (0, 1)]
    whole, cut = [tmp_path / f"w{s}" for s in (0, 1)], [tmp_path / f"c{s}" for s in (0, 1)]
    train(configs, [mixture_dir] * 2, eval_spec, whole)

    def stop(event: Event) -> None:
        if isinstance(event, StepDone) and event.step == 17:
            raise Stop

    with pytest.raises(Stop):
        train(configs, [mixture_dir] * 2, eval_spec, cut, stop)
    events: list[Event] = []
    train(configs, [mixture_dir] * 2, eval_spec, cut, events.append)
    assert [e.step for e in events if isinstance(e, RunStarted)] == [17, 17]
    same(whole, cut)


def test_a_finished_member_is_reused_and_the_rest_train(tmp_path, group_config, mixture_dir,
                                                        eval_spec):  # fmt: skip
    configs = [dataclasses.replace(group_config, seed=s) for s in SEEDS]
    outs = [tmp_path / str(s) for s in SEEDS]
    alone = train_run(configs[1], mixture_dir, eval_spec, outs[1])
    events: list[Event] = []
    results = train(configs, [mixture_dir] * 3, eval_spec, outs, events.append)
    assert results[1].evals == alone.evals and results[1].group is None
    assert results[0].group == results[2].group is not None
    first = [e for e in events if e.key.seed == 1]
    assert [type(e) for e in first] == [RunFinished]


def test_each_member_reads_its_own_mixture(tmp_path, group_config, mixture_dir, dense_dir,
                                           baseline_dir, eval_spec):  # fmt: skip
    dirs = [mixture_dir, dense_dir, baseline_dir]
    configs = [dataclasses.replace(group_config, seed=s, eval_every=5) for s in (3, 3, 4)]
    singles = [
        train_run(c, d, eval_spec, tmp_path / f"s{i}")
        for i, (c, d) in enumerate(zip(configs, dirs, strict=True))
    ]
    group = train(configs, dirs, eval_spec, [tmp_path / f"g{i}" for i in range(3)])
    for single, member in zip(singles, group, strict=True):
        assert member.mixture_dir == single.mixture_dir
        for a, b in zip(single.evals[1:], member.evals[1:], strict=True):
            assert rel(a["train_loss"], b["train_loss"]) < TOLERANCE
            assert rel(a["general_loss"], b["general_loss"]) < TOLERANCE
    # Seeds 3 on two different mixtures: the same start, different data, different runs.
    assert group[0].evals[-1]["train_loss"] != group[1].evals[-1]["train_loss"]


def test_a_group_on_an_every_plan_reads_one_period_after_each_dose(
    tmp_path, group_config, every_dir, mixture_dir, eval_spec
):
    configs = [dataclasses.replace(group_config, seed=s) for s in (0, 1)]
    group = train(configs, [every_dir] * 2, eval_spec, [tmp_path / f"g{s}" for s in (0, 1)])
    for member in group:
        assert [e["step"] for e in member.evals] == [0, 8, 16, 24, 32, 40]
        assert {e["exposure"]["cmp"]["phase"] for e in member.evals[1:]} == {0}
        assert member.final["exposure"]["cmp"]["last_dose_batch"] == 36
    with pytest.raises(ValueError, match="dosing periods"):
        train(configs, [every_dir, mixture_dir], eval_spec, [tmp_path / f"h{s}" for s in (0, 1)])


def test_shuffled_batches_are_per_member(tmp_path, group_config, mixture_dir, eval_spec):
    configs = [dataclasses.replace(group_config, seed=s, shuffle_within_batch=True,
                                   micro_batch_size=3) for s in (0, 1)]  # fmt: skip
    singles = [train_run(c, mixture_dir, eval_spec, tmp_path / f"s{c.seed}") for c in configs]
    group = train(configs, [mixture_dir] * 2, eval_spec, [tmp_path / f"g{s}" for s in (0, 1)])
    for single, member in zip(singles, group, strict=True):
        for a, b in zip(single.evals[1:], member.evals[1:], strict=True):
            assert rel(a["train_loss"], b["train_loss"]) < TOLERANCE


def test_a_group_refuses_members_that_differ_in_more_than_seed(tmp_path, group_config,
                                                               mixture_dir, eval_spec):  # fmt: skip
    configs = [group_config, dataclasses.replace(group_config, seed=1, lr=1e-3)]
    with pytest.raises(ValueError, match="seed alone"):
        train(configs, [mixture_dir] * 2, eval_spec, [tmp_path / "a", tmp_path / "b"])


def test_grouped_forward_is_gpt_forward_per_member():
    cfg = ModelConfig(n_embd=32, n_layer=2, n_head=4, block_size=16)
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        models.append(GPT(cfg))
    params, _ = torch.func.stack_module_state(models)  # type: ignore[arg-type]
    idx = torch.randint(0, 257, (3, 5, 16))
    with torch.no_grad():
        got = grouped_forward(models[0], params, idx)
        shared = grouped_forward(models[0], params, idx[0])
        for k, model in enumerate(models):
            torch.testing.assert_close(got[k], model(idx[k]), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(shared[k], model(idx[0]), rtol=1e-5, atol=1e-5)


def test_clip_per_member_is_clip_grad_norm_of_each_member():
    torch.manual_seed(0)
    grads = [torch.randn(3, 4, 5), torch.randn(3, 7) * torch.tensor([[0.01], [1.0], [10.0]])]
    members = [[g[k].clone() for g in grads] for k in range(3)]
    norms = clip_per_member(grads, 1.0)
    for k, member in enumerate(members):
        params = [torch.zeros_like(g, requires_grad=True) for g in member]
        for p, g in zip(params, member, strict=True):
            p.grad = g
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        torch.testing.assert_close(norms[k], norm)
        for p, g in zip(params, grads, strict=True):
            torch.testing.assert_close(g[k], p.grad)
    assert math.isclose(float(torch.cat([g[0].flatten() for g in grads]).norm()), 1.0, rel_tol=1e-5)


def spec_runs(tmp_path: Path, mixture: Path, seeds, arms=("a",), **kw) -> list[RunSpec]:
    return [
        RunSpec(RunKey(arm, "nano", s), str(mixture), str(tmp_path / arm / str(s)),
                TrainConfig(**TINY, seed=s, **kw))
        for s in seeds for arm in arms
    ]  # fmt: skip


def test_plan_groups_splits_cells_evenly_and_feeds_every_worker(tmp_path, mixture_dir):
    runs = spec_runs(tmp_path, mixture_dir, range(10), arms=("a", "b"))
    groups = plan_groups(runs, 8)
    assert sorted(len(g) for g in groups) == [5, 5, 5, 5]
    assert all(len({r.key.arm for r in g}) == 1 for g in groups)
    assert [len(g) for g in plan_groups(runs, 1)] == [1] * 20
    assert sorted(len(g) for g in plan_groups(runs[:6], 16, workers=2)) == [3, 3]
    assert sorted(len(g) for g in plan_groups(runs[:6:2], 16, workers=4)) == [1, 1, 1]
    assert all(len(g) >= 1 for g in plan_groups(runs, None))
    with pytest.raises(ValueError, match="seed_group"):
        plan_groups(runs, 0)


def test_train_runs_in_a_pool_of_groups_names_each_runs_group(tmp_path, config, mixture_dir,
                                                              eval_spec):  # fmt: skip
    kw = {"token_budget": 10 * 128, "eval_every": 5, "num_threads": 1}
    runs = spec_runs(tmp_path, mixture_dir, range(4), **kw)
    events: list[Event] = []
    results = train_runs(runs, eval_spec, 2, events.append, seed_group=2)
    groups = {r.group for r in results.values()}
    assert groups == {"a/nano/seeds 0,1", "a/nano/seeds 2,3"}
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert sorted(e.key.seed for e in finished) == [0, 1, 2, 3]
    assert all(e.summary["group"] in groups for e in finished)
