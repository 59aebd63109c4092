from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from matplotlib.figure import Figure
from PIL import Image

from tests.training.mixtures import prose, write_mixture
from training.data import open_mixture
from training.evaluate import EvalSpec
from training.events import Event, RunFinished, RunKey, RunStarted, StepDone
from training.parallel import train
from training.verify import (
    align_budget,
    make_eval_spec,
    make_report,
    plan_runs,
    run_verification,
)

SETTINGS = {"sizes": ["nano"], "seeds": [0, 1], "token_budget": 20 * 128, "eval_every": 10}
OPTIONS = {"n_probe": 32, "n_seen": 16, "heldout_tokens": 2048}


def verify(arms, skill, workdir, heldout_docs, config, progress=None, **kw):
    # The hand-written mixtures (tests/training/mixtures.py) hold no builder's plan to draw
    # again: their seeds vary the initialisation; seed_scope data is tested on built ones.
    kw.setdefault("seed_scope", "init")
    return run_verification(
        arms, [skill], **SETTINGS, threshold=None, device="cpu", workdir=workdir,
        progress=progress, heldout_docs=heldout_docs, config=config, eval_options=OPTIONS, **kw,
    )  # fmt: skip


def test_two_arms_two_seeds_end_to_end(
    tmp_path, skill, dense_dir, baseline_dir, heldout_docs, config, monkeypatch
):
    arms = {"upweighted": dense_dir, "baseline": baseline_dir}
    seen: list[tuple[float, str]] = []
    events: list[Event] = []
    report = verify(
        arms, skill, tmp_path, heldout_docs, config, lambda f, m: seen.append((f, m)),
        on_event=events.append,
    )  # fmt: skip
    verdicts = {v["arm"]: v for v in report["verdicts"]}
    assert set(verdicts) == {"upweighted", "baseline"}
    for row in verdicts.values():
        assert row["skill_id"] == "cmp" and row["size"] == "nano" and row["n_seeds"] == 2
        # chance: the probe set's most common answer share (`<` or `>`, `=` is rare)
        assert row["chance"] == pytest.approx(0.5, abs=0.01) and row["metric"] == "forced_choice"
        assert row["threshold"] == pytest.approx(0.75, abs=0.01) and row["verdict"] in (
            "retained", "not_retained", "inconclusive"
        )  # fmt: skip
        assert "metric: forced_choice" in row["rule"]
        assert set(row["readouts"]) == {"acc", "forced_choice", "format_rate", "margin"}
        assert row["accuracies"] == [
            r["final"]["skills"]["cmp"]["heldout_forced_choice"]
            for r in report["runs"] if r["arm"] == row["arm"]
        ]  # fmt: skip
        stratum = row["strata"]["equal_leading_digit"]
        assert len(stratum["values"]) == 2 and stratum["chance"] < 0.5
        assert len(row["ci95"]) == 2 and "Wilson" in row["rule"] and len(row["accuracies"]) == 2
        assert row["mean_general_loss"] > 0
    assert verdicts["baseline"]["effect_vs_baseline"] is None
    assert verdicts["upweighted"]["effect_vs_baseline"]["p_retained_diff_ci95"]
    assert verdicts["upweighted"]["mean_seen_accuracy"] is not None
    assert verdicts["baseline"]["mean_seen_accuracy"] is None  # nothing placed in the baseline
    assert report["arms"]["upweighted"]["placed_per_batch"]["cmp"] == 2.0
    assert len(report["runs"]) == 4 and {r["steps"] for r in report["runs"]} == {20}
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert ("upweighted/nano/seed 0: step 20/20") in [m for _, m in seen]
    # Every run's events, run after run (one worker), RunStarted first and RunFinished last.
    keys = [RunKey(arm, "nano", seed) for seed in (0, 1) for arm in arms]
    assert [e.key for e in events if isinstance(e, RunStarted)] == keys
    assert [e.key for e in events if isinstance(e, RunFinished)] == keys
    for key in keys:
        mine = [e for e in events if e.key == key]
        assert mine[0] == RunStarted(key, 0, 20) and isinstance(mine[-1], RunFinished)
        assert [e.step for e in mine if isinstance(e, StepDone)] == list(range(1, 21))
    assert [e.summary for e in events if isinstance(e, RunFinished)] == [
        {k: r[k] for k in ("steps", "tokens", "seconds", "final", "resumes")}
        | {"tokens_per_second": round(r["tokens"] / r["seconds"])}
        for r in report["runs"]
    ]
    for path in report["plots"]:
        assert Image.open(path).size[0] > 300
    assert json.loads((tmp_path / "report.json").read_text())["verdicts"] == report["verdicts"]

    # The service's path: plan the runs, train (here: reuse) each one, then report.
    mixtures = {arm: open_mixture(path) for arm, path in arms.items()}
    base = dataclasses.replace(config, token_budget=SETTINGS["token_budget"], eval_every=10)
    spec, collisions = make_eval_spec(mixtures, [skill], base.token_budget, heldout_docs, OPTIONS)
    assert spec == EvalSpec(skills=[skill], heldout=heldout_docs, **OPTIONS)
    assert collisions == {"cmp": {"keys": [], "occurrences_by_arm": dict.fromkeys(arms, 0)}}
    runs = plan_runs(mixtures, ["nano"], [0, 1], tmp_path, dataclasses.replace(base, device="cpu"))
    assert [run.key for run in runs] == keys
    assert [run.out_dir for run in runs] == [
        str(tmp_path / k.arm / "nano" / str(k.seed)) for k in keys
    ]
    results = [(run, train(run, spec, None)) for run in runs]
    assert (
        make_report(results, mixtures, [skill], None, "baseline", tmp_path)["verdicts"]
        == (report["verdicts"])
    )
    # Plot titles name the skill by its name; ids stay in the files' names and the JSON.
    titles: list[str] = []
    monkeypatch.setattr(Figure, "suptitle", lambda fig, t, **kw: titles.append(t))
    named = skill.model_copy(update={"name": "two-digit compare"})
    renamed = make_report(results, mixtures, [named], None, "baseline", tmp_path / "named")
    assert renamed["settings"]["thresholds"]["cmp"]["name"] == "two-digit compare"
    skill_titles = [t for t in titles if "general" not in t]
    assert skill_titles and all(t.startswith("two-digit compare") for t in skill_titles)
    assert all("_cmp" in p for p in renamed["plots"] if "general" not in p)

    # Finished runs are reused, never retrained; a deleted run is trained again alone.
    shutil.rmtree(tmp_path / "baseline" / "nano" / "1")
    events.clear()
    again = verify(arms, skill, tmp_path, heldout_docs, config, on_event=events.append)
    assert again["verdicts"] == report["verdicts"]
    # The runs finished before are reported first, finished; then the one trained again.
    assert [e.key for e in events[:3]] == keys[:3]
    assert all(isinstance(e, RunFinished) for e in events[:3])
    assert {e.key for e in events[3:]} == {keys[3]} and events[3] == RunStarted(keys[3], 0, 20)
    assert [r["seconds"] for r in again["runs"]][:3] == [r["seconds"] for r in report["runs"]][:3]


def test_an_every_arm_cuts_the_budget_to_whole_periods_and_reads_after_the_last_one(
    tmp_path, skill, every_dir, baseline_dir, dense_dir, heldout_docs, config
):
    mixtures = {"every": open_mixture(every_dir), "baseline": open_mixture(baseline_dir)}
    budget, phase = align_budget(mixtures, 22 * 128)
    assert budget == 20 * 128 and phase is not None
    assert phase["period"] == 4 and phase["steps_asked"] == 22 and phase["steps"] == 20
    assert align_budget(mixtures, 20 * 128)[0] == 20 * 128  # already whole: as given
    with pytest.raises(ValueError, match="one dosing period"):
        align_budget(mixtures, 3 * 128)
    uniform = {"dense": open_mixture(dense_dir), "baseline": open_mixture(baseline_dir)}
    assert align_budget(uniform, 22 * 128) == (22 * 128, None)  # a uniform plan: unchanged

    arms = {"every": every_dir, "baseline": baseline_dir}
    report = run_verification(
        arms, [skill], ["nano"], [0], 22 * 128, 10, None, "cpu", tmp_path,
        heldout_docs=heldout_docs, config=config, eval_options=OPTIONS, seed_scope="init",
    )  # fmt: skip
    runs = {r["arm"]: r for r in report["runs"]}
    assert {r["steps"] for r in runs.values()} == {20}
    assert report["settings"]["train"]["token_budget"] == 20 * 128
    assert report["settings"]["phase"]["periods"] == {"every": 4, "baseline": None}
    assert report["settings"]["phase"]["aligned"] is True
    every = runs["every"]["evals"]
    assert [e["step"] for e in every] == [0, 8, 16, 20]
    assert every[-1]["exposure"]["cmp"].items() >= {
        "period": 4, "phase": 0, "last_dose_batch": 16, "batches_since_dose": 3,
    }.items()  # fmt: skip
    assert [e["step"] for e in runs["baseline"]["evals"]] == [0, 10, 20]
    assert runs["baseline"]["final"]["exposure"]["cmp"]["batches_since_dose"] is None


def test_arms_from_different_corpora_are_refused(tmp_path, skill, dense_dir, heldout_docs, config):
    other = write_mixture(
        tmp_path / "other", prose(5), n_batches=40, seq_len=32, seqs_per_batch=4,
        corpus_uri="test://other",
    )  # fmt: skip
    with pytest.raises(ValueError, match="differ in their manifests' 'corpus'"):
        verify({"a": dense_dir, "b": other}, skill, tmp_path / "w", heldout_docs, config)


def test_a_cancel_stops_the_verification(tmp_path, skill, dense_dir, baseline_dir, config):
    def cancel(fraction: float, message: str) -> None:
        if fraction > 0.3:
            raise KeyboardInterrupt

    arms = {"upweighted": dense_dir, "baseline": baseline_dir}
    with pytest.raises(KeyboardInterrupt):
        verify(arms, skill, tmp_path, None, config, cancel)
    assert not (tmp_path / "report.json").exists()


@pytest.mark.slow
def test_parallel_workers_give_the_same_report_and_cancel_cleanly(
    tmp_path, skill, dense_dir, baseline_dir, heldout_docs, config
):
    arms = {"upweighted": dense_dir, "baseline": baseline_dir}
    serial = verify(arms, skill, tmp_path / "serial", heldout_docs, config)

    def cancel(fraction: float, message: str) -> None:
        if fraction > 0.2:
            raise KeyboardInterrupt

    parallel = tmp_path / "parallel"
    with pytest.raises(KeyboardInterrupt):
        verify(arms, skill, parallel, heldout_docs, config, cancel, workers=2)
    assert not (parallel / "report.json").exists()
    events: list[Event] = []
    report = verify(arms, skill, parallel, heldout_docs, config, workers=2, on_event=events.append)
    assert report["verdicts"] == serial["verdicts"]
    assert any(run["resumes"] for run in report["runs"])  # cancelled runs resumed
    # The pool processes' events reach the caller: every run finishes last, once.
    for key in {e.key for e in events}:
        mine = [e for e in events if e.key == key]
        assert [isinstance(e, RunFinished) for e in mine].count(True) == 1
        assert isinstance(mine[-1], RunFinished)
        assert len(mine) == 1 or isinstance(mine[0], RunStarted)
    assert len({e.key for e in events}) == len(report["runs"])


def test_sequential_looks_stop_once_every_cell_is_decided(tmp_path, skill, dense_dir, config):
    def run(looks, workdir):
        return run_verification(
            {"up": dense_dir}, [skill], ["nano"], list(range(12)), 5 * 128, 5, 0.0, "cpu",
            workdir, config=config, seed_scope="init", looks=looks,
            eval_options={"n_probe": 8, "n_seen": 4, "midrow": False},
        )  # fmt: skip

    # Threshold 0: every seed is retained; 6/6 is decided even at the looks' z (2.24).
    report = run([6, 12], tmp_path / "decided")
    assert report["settings"]["sequential"]["looks_done"] == [6]
    assert report["settings"]["sequential"]["decided"] is True
    assert [r["seed"] for r in report["runs"]] == list(range(6))
    assert report["verdicts"][0]["n_seeds"] == 6 and report["verdicts"][0]["verdict"] == "retained"
    assert not (tmp_path / "decided" / "up" / "nano" / "6").exists()
    # One seed never decides: the next look trains the second, and the last look stops.
    report = run([1, 2], tmp_path / "undecided")
    assert report["settings"]["sequential"]["looks_done"] == [1, 2]
    assert report["settings"]["sequential"]["decided"] is False
    assert report["verdicts"][0]["n_seeds"] == 2
    row = report["verdicts"][0]
    assert row["given_success"] == row["mean_accuracy"] and row["given_failure"] is None
    assert len(row["threshold_sensitivity"]) == 5
    with pytest.raises(ValueError, match="seeds given for looks"):
        run([6, 24], tmp_path / "short")
