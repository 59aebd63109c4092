"""Typed reports in the SDK: a real scan's report read as attributes (and, as before, as a
dict), and the `to_pandas()` tables, with a clear error when pandas is missing."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from skillmix_client import Skillmix
from skillmix_client.types import ScanReport, SkillFrequency, VerificationReport

from curation.synthetic_corpus import Plant, generate_corpus
from service.settings import get_settings
from training import verdict

CMP = ("cmp 12 57 : <", "cmp 80 31 : >", "cmp 45 46 : <")


def planted_corpus() -> tuple[str, dict]:
    """A small jsonl corpus under the stack's data directory (an allowed root) with `cmp`
    instances planted every 4th document; its glob and the planted truth."""
    folder = Path(get_settings().resolved_data_dir) / "corpora" / uuid.uuid4().hex[:8]
    corpus = generate_corpus(
        str(folder), n_docs=40, plants=[Plant("cmp", CMP, every=4)], n_files=2, mean_chars=400
    )
    return str(folder / "*.jsonl"), corpus.truth


def test_a_scan_report_is_typed(client: Skillmix) -> None:
    uri, truth = planted_corpus()
    skill = client.skills.create(
        name="cmp", detector={"kind": "regex", "pattern": r"cmp \d+ \d+ : [<>]"}
    )
    corpus = client.corpora.create(name="small", uri=uri, format="jsonl")
    scan = client.scans.create(corpus_id=corpus.id, skill_ids=[skill.id], batch_tokens=1024)
    done = client.scans.wait(scan.id, timeout=60)
    assert done.job is not None and done.job.state == "succeeded", done.job
    report = done.report
    assert isinstance(report, ScanReport)
    frequency = report.skills[skill.id]
    assert isinstance(frequency, SkillFrequency)
    planted = [i for i in truth["instances"] if i["skill_id"] == "cmp"]
    assert frequency.instances == len(planted) and frequency.name == "cmp"
    assert frequency.gap_tokens is not None and frequency.gap_tokens.max > 0
    assert report.corpus is not None and report.corpus.docs_scanned == 40
    # The dict-style reads of earlier SDK versions keep working.
    assert report["skills"][skill.id]["instances"] == frequency.instances
    assert report["skills"][skill.id].get("gap_batches")["median"] is not None
    assert "corpus" in report and report.get("nothing") is None
    # Dumped again, it is what the server sent: no key added.
    assert report.model_dump(mode="json") == client.jobs.retrieve(done.job.id).result

    table = report.to_pandas()
    row = table.loc[skill.id]
    assert row["instances"] == len(planted) and row["name"] == "cmp"
    lo, hi = row["per_million_tokens_ci95_lo"], row["per_million_tokens_ci95_hi"]
    assert lo < row["per_million_tokens"] < hi
    assert {"per_batch", "gap_batches_median", "gap_tokens_cv"} <= set(table.columns)


def verification_report() -> VerificationReport:
    """The shape training.verify writes, with verdicts from training.verdict itself."""
    runs, verdicts = [], []
    for arm, accuracies in (("upweighted", [0.9, 1.0]), ("baseline", [0.1, 0.4])):
        base = None if arm == "baseline" else [0.1, 0.4]
        verdicts.append(verdict.verdict("skill_a", "nano", arm, accuracies, 0.75, base, 0.5))
        for seed, acc in enumerate(accuracies):
            final = {
                "step": 8,
                "tokens": 8192,
                "train_loss": 2.0,
                "general_loss": 2.5,
                "skills": {
                    "skill_a": {
                        "heldout_acc": acc,
                        "heldout_loss": 1.0,
                        "seen_acc": 1.0,
                        "seen_loss": 0.1,
                    }
                },
            }
            runs.append(
                {"arm": arm, "size": "nano", "seed": seed, "dir": "/w", "steps": 8,
                 "tokens": 8192, "seconds": 1.5, "n_params": 1000, "resumes": 0,
                 "final": final, "forgetting": {"skill_a": {"forgetting": 0.1, "n_pairs": 2}}}
            )  # fmt: skip
    return VerificationReport.model_validate({"verdicts": verdicts, "runs": runs, "plots": []})


def test_verification_tables() -> None:
    report = verification_report()
    verdicts = report.to_pandas()
    assert list(verdicts["arm"]) == ["upweighted", "baseline"]
    assert {"verdict", "p_retained", "ci95_lo", "ci95_hi", "n_seeds"} <= set(verdicts.columns)
    assert "effect_vs_baseline_mean_accuracy_diff" in verdicts.columns
    up = verdicts.set_index("arm").loc["upweighted"]
    assert up["p_retained"] == 1.0 and up["ci95_lo"] <= 1.0 <= up["ci95_hi"]
    assert report.verdicts[0].effect_vs_baseline is not None

    runs = report.runs_to_pandas()
    assert len(runs) == 4 and set(runs["skill_id"]) == {"skill_a"}
    by_arm = runs.groupby(["arm", "size"])["heldout_acc"].mean()
    assert by_arm[("upweighted", "nano")] == pytest.approx(0.95)
    assert {"seed", "forgetting", "general_loss", "seen_acc"} <= set(runs.columns)


def test_to_pandas_without_pandas_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    with pytest.raises(ImportError, match="pip install pandas"):
        ScanReport().to_pandas()
    with pytest.raises(ImportError, match="pip install pandas"):
        verification_report().runs_to_pandas()
