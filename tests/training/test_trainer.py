from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from curation.mixture.audit import audit_mixture
from curation.skills.probes import sample_instances
from tests.training.mixtures import prose, with_natural, write_mixture
from training import checkpoint
from training.data import MixtureReader, open_mixture
from training.events import Evaluated, Event, RunFinished, RunKey, RunStarted, StepDone
from training.parallel import RunSpec, run_parallel
from training.trainer import (
    CHECKPOINT,
    LR_SCHEDULES,
    RESULT,
    WEIGHTS,
    TrainConfig,
    eval_steps,
    get_lr,
    train_run,
)


class Stop(Exception):
    pass


def weights(out: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(out / WEIGHTS)["model"]


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ra, rb = (train_run.__globals__["load_result"](p) for p in (a, b))
    assert ra.evals == rb.evals and ra.retention == rb.retention


@pytest.fixture
def uninterrupted(tmp_path, config, mixture_dir, eval_spec) -> Path:
    out = tmp_path / "uninterrupted"
    train_run(config, mixture_dir, eval_spec, out)
    return out


def test_get_lr_warms_up_then_decays_to_min_lr():
    kw = {"lr": 1.0, "warmup": 10, "max_iters": 110, "min_lr": 0.1}
    assert get_lr(0, **kw) == pytest.approx(0.1)
    assert get_lr(9, **kw) == pytest.approx(1.0)
    assert get_lr(10, **kw) == pytest.approx(1.0)
    assert get_lr(60, **kw) == pytest.approx(0.55)
    assert get_lr(110, **kw) == pytest.approx(0.1) and get_lr(500, **kw) == 0.1
    lrs = [get_lr(i, **kw) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert get_lr(0, lr=1.0, warmup=0, max_iters=10, min_lr=0.0) == pytest.approx(1.0)


def test_each_lr_schedule_has_its_shape():
    kw = {"lr": 1.0, "warmup": 10, "max_iters": 110, "min_lr": 0.1}
    for schedule in LR_SCHEDULES:  # the same warmup for all
        assert [get_lr(i, **kw, schedule=schedule) for i in range(10)] == pytest.approx(
            [(i + 1) / 10 for i in range(10)]
        )
    constant = [get_lr(i, **kw, schedule="constant") for i in range(10, 110)]
    assert constant == [1.0] * 100  # the last step too: no floor
    wsd = [get_lr(i, **kw, schedule="wsd", decay_fraction=0.2) for i in range(110)]
    assert wsd[10:88] == [1.0] * 78  # stable until the last 22 steps (20% of 110)
    decay = wsd[88:]
    assert len(decay) == 22 and all(a > b for a, b in zip(decay, decay[1:], strict=False))
    steps = [a - b for a, b in zip(decay, decay[1:], strict=False)]
    assert max(steps) - min(steps) < 1e-9  # linear
    assert decay[-1] == pytest.approx(0.1) and wsd[87] == 1.0 > decay[0]
    cosine = [get_lr(i, **kw, schedule="cosine") for i in range(110)]
    assert cosine == [get_lr(i, **kw) for i in range(110)]  # the default
    assert cosine[-1] < 0.11 and constant[-1] == 1.0 and decay[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="decay_fraction"):
        TrainConfig(lr_schedule="wsd", decay_fraction=0.0)


def test_a_run_trains_at_its_schedules_learning_rates(mixture_dir, eval_spec, config, tmp_path):
    """The optimizer gets what get_lr says for the configured schedule, step by step."""
    seen: list[float] = []
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    wsd = dataclasses.replace(config, lr_schedule="wsd", token_budget=20 * 128, eval_every=20)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", step)
        train_run(wsd, mixture_dir, eval_spec, tmp_path / "wsd")
    kw = {"lr": wsd.lr, "warmup": wsd.warmup, "max_iters": 20, "min_lr": wsd.min_lr}
    assert seen == [get_lr(i, **kw, schedule="wsd") for i in range(20)]
    assert seen[10] == wsd.lr and seen[-1] == pytest.approx(wsd.min_lr)


def test_a_run_measures_skills_general_loss_and_forgetting(uninterrupted):
    result = train_run.__globals__["load_result"](uninterrupted)
    assert [e["step"] for e in result.evals] == [0, 10, 20, 30, 40]
    assert result.steps == 40 and result.tokens == 40 * 128
    first, last = result.evals[0], result.final
    assert last["general_loss"] < first["general_loss"]
    readouts = ("acc", "forced_choice", "format_rate", "margin", "loss")
    expected = {f"{split}_{r}" for split in ("heldout", "seen") for r in readouts}
    midrow = {f"heldout_midrow_{r}" for r in ("acc", "forced_choice", "format_rate", "margin")}
    assert set(last["skills"]["cmp"]) == expected | {"heldout_strata"} | midrow
    assert set(last["skills"]["cmp"]["heldout_strata"]) <= {"equal_leading_digit"}
    retention = result.retention["cmp"]
    assert retention["n_pairs"] == 13 and math.isfinite(retention["forgetting"])
    assert not (uninterrupted / CHECKPOINT).exists() and (uninterrupted / RESULT).exists()


def test_eval_steps_sit_at_one_phase_of_the_dosing_period():
    assert eval_steps(40, 10) == [10, 20, 30, 40]  # no period: as before
    assert eval_steps(45, 10) == [10, 20, 30, 40, 45]
    # The multiple of the period nearest eval_every (10 / 4 = 2.5 -> 2 periods).
    assert eval_steps(40, 10, period=4) == [8, 16, 24, 32, 40]
    assert eval_steps(40, 3, period=4) == list(range(4, 41, 4))  # at least one period
    assert eval_steps(40, 100, period=4) == [40]
    assert eval_steps(42, 10, period=4)[-1] == 42  # unaligned budget: the last step as it is


def test_an_every_plan_is_read_one_period_after_its_doses(
    tmp_path, config, every_dir, dense_dir, eval_spec
):
    result = train_run(config, every_dir, eval_spec, tmp_path / "every")
    doses = open_mixture(every_dir).exposure_batches("cmp")
    assert doses == list(range(0, 40, 4))
    steps = [e["step"] for e in result.evals]
    assert steps == [0, 8, 16, 24, 32, 40]
    assert steps[-1] == doses[-1] + 4  # the final reading: one period after the last dose
    assert result.evals[0]["exposure"]["cmp"]["batches_since_dose"] is None
    for reading in result.evals[1:]:
        assert reading["exposure"]["cmp"].items() >= {
            "period": 4, "phase": 0, "last_dose_batch": reading["step"] - 4,
            "batches_since_dose": 3,
        }.items()  # fmt: skip
    uniform = train_run(config, dense_dir, eval_spec, tmp_path / "uniform")
    assert [e["step"] for e in uniform.evals] == [0, 10, 20, 30, 40]  # unchanged
    for reading in uniform.evals[1:]:
        assert reading["exposure"]["cmp"]["period"] is None
        assert reading["exposure"]["cmp"]["batches_since_dose"] == 0  # a dose every batch


def test_a_baseline_reads_batches_since_the_natural_instances_its_audit_located(
    tmp_path, config, skill, eval_spec
):
    planted = sample_instances(skill, 200, seed=7)
    docs = with_natural(prose(0), iter(planted), rate=2.0, seed=3)
    out = write_mixture(tmp_path / "natural", docs, n_batches=40, seq_len=32, seqs_per_batch=4)
    # Known: the sequences whose bytes hold a planted instance whole.
    rows = open_mixture(out).sequences(0, 160)
    texts = [i.text.encode() for i in planted]
    held = [(row % 256).astype("u1").tobytes() for row in rows]  # EOS (256) as 0
    known = [s for s, text in enumerate(held) if any(t in text for t in texts)]
    audit = audit_mixture(str(out), [skill], plots=False)
    natural = audit["skills"]["cmp"]["natural"]
    assert natural["sequences"] == known and natural["sequences_complete"]
    assert natural["batches"] == sorted({s // 4 for s in known}) and len(natural["batches"]) > 2
    result = train_run(config, out, eval_spec, tmp_path / "run")
    for reading in result.evals[1:]:
        step, got = reading["step"], reading["exposure"]["cmp"]
        last = max((b for b in natural["batches"] if b < step), default=None)
        assert got["natural_located"] and got["last_natural_batch"] == last
        assert got["batches_since_natural"] == (None if last is None else step - 1 - last)
        assert got["batches_since_dose"] is None  # a baseline places nothing
    # Forgetting between natural exposures: measured for a baseline too.
    retention = result.retention["cmp"]
    assert retention["exposures"] == "placed+natural" and retention["n_pairs"] > 0
    assert math.isfinite(retention["forgetting"])


def test_the_same_seed_in_another_process_gives_the_same_run(
    tmp_path, config, mixture_dir, eval_spec, uninterrupted
):
    # A verification trains its runs in spawned pool workers: the seed, not the process or
    # the order the pool takes the jobs in, decides the run (on CPU at a fixed thread count:
    # run_verification gives pool runs one thread, as this test's fixture does here).
    runs = [
        RunSpec(RunKey("a", config.size, seed), str(mixture_dir), str(tmp_path / f"seed{seed}"),
            dataclasses.replace(config, seed=seed, num_threads=1))
        for seed in (1, 0)
    ]  # fmt: skip
    events: list[Event] = []
    results = run_parallel(runs, eval_spec, 1, events.append)
    assert_same_run(uninterrupted, tmp_path / "seed0")
    other = train_run.__globals__["load_result"](tmp_path / "seed1")
    assert other.evals != train_run.__globals__["load_result"](uninterrupted).evals
    # The pool processes' events reach the caller, each run's in the order it sent them.
    for run in runs:
        assert_run_events([e for e in events if e.key == run.key], run.key, steps=40)
        assert results[run.key].evals == [e.results for e in events if isinstance(e, Evaluated)
                                          and e.key == run.key]  # fmt: skip


def assert_run_events(events: list[Event], key: RunKey, steps: int, first: int = 0) -> None:
    """A run trained from step `first` to `steps`: RunStarted, an Evaluated every 10 steps,
    StepDone at each step (40 steps: every 1% is every step), RunFinished last."""
    assert {e.key for e in events} == {key}
    assert events[0] == RunStarted(key, first, steps)
    assert isinstance(events[-1], RunFinished) and events[-1].summary["steps"] == steps
    done = [e for e in events if isinstance(e, StepDone)]
    assert [e.step for e in done] == list(range(first + 1, steps + 1))
    assert all(e.steps == steps and e.tokens == e.step * 128 for e in done)
    assert all(e.tokens_per_second > 0 for e in done)
    evaluated = [e.step for e in events if isinstance(e, Evaluated)]
    assert evaluated == [s for s in range(0 if first == 0 else first + 1, steps + 1) if s % 10 == 0]
    summary = events[-1].summary
    assert set(summary) == {"steps", "tokens", "seconds", "final", "resumes", "tokens_per_second"}
    assert summary["tokens"] == steps * 128 and summary["final"]["step"] == steps


def test_a_run_reports_typed_events_in_order(tmp_path, config, mixture_dir, eval_spec):
    events: list[Event] = []
    key = RunKey("upweighted", "nano", 0)
    result = train_run(config, mixture_dir, eval_spec, tmp_path / "run", events.append, key=key)
    assert_run_events(events, key, steps=40)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["RunStarted", "Evaluated", "StepDone"]  # the step-0 evaluation first
    # At step 10: the evaluation, then the step (the order the loop does them in).
    at_10 = [type(e).__name__ for e in events if getattr(e, "step", None) == 10]
    assert at_10 == ["Evaluated", "StepDone"]
    assert events[-1] == RunFinished(key, result.summary())
    # A finished run called again reports RunFinished alone, from its stored result.
    again: list[Event] = []
    train_run(config, mixture_dir, eval_spec, tmp_path / "run", again.append, key=key)
    assert again == [RunFinished(key, result.summary())]


def test_resume_after_a_cancel_is_bit_identical(
    tmp_path, config, mixture_dir, eval_spec, uninterrupted
):
    out = tmp_path / "cancelled"

    def cancel_midway(event: Event) -> None:
        if isinstance(event, StepDone) and event.step >= event.steps / 2:
            raise Stop(event)

    with pytest.raises(Stop):
        train_run(config, mixture_dir, eval_spec, out, cancel_midway)
    assert checkpoint.load(out / CHECKPOINT)["state"]["step"] == 20
    assert not (out / RESULT).exists()
    events: list[Event] = []
    result = train_run(config, mixture_dir, eval_spec, out, events.append)
    assert result.resumes == 1
    assert_same_run(uninterrupted, out)
    # The resumed run says where it starts, and reports from there on.
    key = RunKey(mixture_dir.name, config.size, config.seed)
    assert_run_events(events, key, steps=40, first=20)


def test_resume_after_a_crash_replays_from_the_last_checkpoint(
    tmp_path, config, mixture_dir, eval_spec, uninterrupted, monkeypatch
):
    out = tmp_path / "crashed"
    read = MixtureReader.batch

    def crash_at_25(self, b, shuffle_seed=None):
        if b == 25:
            raise RuntimeError("killed")
        return read(self, b, shuffle_seed)

    monkeypatch.setattr(MixtureReader, "batch", crash_at_25)
    with pytest.raises(RuntimeError, match="killed"):
        train_run(config, mixture_dir, eval_spec, out)
    monkeypatch.undo()
    assert checkpoint.load(out / CHECKPOINT)["state"]["data_position"] == 20
    train_run(config, mixture_dir, eval_spec, out)
    assert_same_run(uninterrupted, out)


def test_a_failed_checkpoint_write_leaves_the_previous_one_loadable(
    tmp_path, config, mixture_dir, eval_spec, uninterrupted, monkeypatch
):
    out = tmp_path / "torn"
    save, calls = torch.save, []

    def fail_second_write(obj, fh):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"half a checkpoint")
            raise OSError("disk full")
        save(obj, fh)

    monkeypatch.setattr(checkpoint.torch, "save", fail_second_write)
    with pytest.raises(OSError, match="disk full"):
        train_run(config, mixture_dir, eval_spec, out)
    monkeypatch.undo()
    assert checkpoint.load(out / CHECKPOINT)["state"]["step"] == 10
    assert [p.name for p in out.iterdir()] == [CHECKPOINT]  # no temporary file left behind
    train_run(config, mixture_dir, eval_spec, out)
    assert_same_run(uninterrupted, out)


def test_a_finished_run_is_reused_and_a_different_one_refused(
    config, mixture_dir, eval_spec, uninterrupted, monkeypatch
):
    monkeypatch.setattr("training.trainer._Run", None)  # training again would fail
    again = train_run(config, mixture_dir, eval_spec, uninterrupted)
    assert again.steps == 40
    monkeypatch.undo()
    with pytest.raises(ValueError, match="different run.*train"):
        train_run(dataclasses.replace(config, lr=0.5), mixture_dir, eval_spec, uninterrupted)


def test_token_budget_sets_the_number_of_steps(tmp_path, config, mixture_dir, eval_spec):
    short = dataclasses.replace(config, token_budget=12 * 128, eval_every=100)
    result = train_run(short, mixture_dir, eval_spec, tmp_path / "short")
    assert result.steps == 12 and [e["step"] for e in result.evals] == [0, 12]
    with pytest.raises(ValueError, match="the mixture has 40"):
        train_run(
            dataclasses.replace(config, token_budget=41 * 128), mixture_dir, eval_spec, tmp_path
        )


def test_micro_batches_accumulate_to_the_full_batch_gradient(
    tmp_path, config, mixture_dir, eval_spec
):
    cfg = dataclasses.replace(config, token_budget=5 * 128, eval_every=100)
    train_run(cfg, mixture_dir, eval_spec, tmp_path / "full")
    train_run(
        dataclasses.replace(cfg, micro_batch_size=1), mixture_dir, eval_spec, tmp_path / "micro"
    )
    full, micro = weights(tmp_path / "full"), weights(tmp_path / "micro")
    assert all(torch.allclose(full[k], micro[k], atol=1e-5) for k in full)


def test_config_checks():
    with pytest.raises(ValueError, match="unknown model size"):
        TrainConfig(size="giant")
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
