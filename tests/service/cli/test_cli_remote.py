"""The client verbs of `skillmix`, against the embedded service with a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from skillmix_client.cli._runs import result_table
from skillmix_client.cli._studies import parse_bounds, parse_pool_sizes, study_table
from skillmix_client.types import Mixture, Study, Verification
from typer.testing import CliRunner

from curation.synthetic_corpus import Plant, generate_corpus
from service.cli import app
from service.cli.embedded import embedded_stack
from tests.service.conftest import new_key

SKILL_YAML = """
name: compare
description: two-digit comparison
detector: {kind: builtin}
generator:
  family: number_comparison
  params: {min_digits: 2, max_digits: 2}
"""


@pytest.fixture
def remote(env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    with embedded_stack(tmp_path / "data") as stack:
        yield {"SKILLMIX_BASE_URL": stack.base_url, "SKILLMIX_API_KEY": new_key("cli")}


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_skills_corpora_and_scan_from_the_command_line(
    remote: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "skill.yaml").write_text(SKILL_YAML)
    code, out = run(remote, "skills", "add", str(tmp_path / "skill.yaml"), "--json")
    assert code == 0, out
    skill = json.loads(out)
    assert skill["name"] == "compare" and skill["version"] == 1
    code, out = run(remote, "skills", "list")
    assert code == 0 and "compare" in out and "number_comparison" in out
    code, out = run(remote, "skills", "preview", skill["id"], "--text", "so cmp 12 34 : < ok")
    assert code == 0 and "cmp 12 34 : <" in out

    corpus_dir = tmp_path / "data" / "corpora" / "c"
    generate_corpus(
        str(corpus_dir),
        n_docs=60,
        seed=1,
        n_files=2,
        plants=[Plant("c", ("cmp 10 20 : <", "cmp 55 21 : >"), every=5)],
    )
    code, out = run(
        remote,
        "corpora",
        "add",
        "--name",
        "c",
        "--uri",
        str(corpus_dir / "*.jsonl"),
        "--format",
        "jsonl",
        "--json",
    )
    assert code == 0, out
    corpus = json.loads(out)
    code, out = run(
        remote,
        "scan",
        "--corpus",
        corpus["id"],
        "--skill",
        skill["id"],
        "--batch-tokens",
        "4096",
        "--wait",
    )
    assert code == 0, out
    assert "compare" in out and "frequency: 60 docs" in out
    code, out = run(remote, "jobs", "list", "--json")
    assert code == 0 and json.loads(out)[0]["state"] == "succeeded"


def test_exit_codes_tell_usage_api_and_connection_errors(
    remote: dict[str, str], tmp_path: Path
) -> None:
    assert run(remote, "skills", "show", "skill_missing")[0] == 3
    assert run(remote, "jobs", "show", "job_x", "--bogus-flag")[0] == 2
    unreachable = {**remote, "SKILLMIX_BASE_URL": "http://127.0.0.1:9"}
    assert run(unreachable, "jobs", "list")[0] == 4
    (tmp_path / "bad.yaml").write_text("name: x\ndetector: {kind: regex, pattern: '(a)\\1'}\n")
    code, out = run(remote, "skills", "add", str(tmp_path / "bad.yaml"))
    assert code == 3 and "backreference" in out


def test_errors_go_to_stderr_as_json_with_json(remote: dict[str, str], tmp_path: Path) -> None:
    """`ID=$(skillmix ... -q)` never captures an error: stdout stays empty."""
    (tmp_path / "bad.yaml").write_text("name: x\ndetector: {kind: regex, pattern: '(a)\\1'}\n")
    for extra, parse in (([], None), (["--json"], json.loads)):
        result = CliRunner().invoke(
            app, ["skills", "add", str(tmp_path / "bad.yaml"), "-q", *extra], env=remote
        )
        assert result.exit_code == 3 and result.stdout == ""
        assert "backreference" in result.stderr
        if parse:
            error = parse(result.stderr)["error"]
            assert error["status"] == 422 and error["type"].endswith(":validation-error")
    unreachable = {**remote, "SKILLMIX_BASE_URL": "http://127.0.0.1:9"}
    result = CliRunner().invoke(app, ["jobs", "list", "--json"], env=unreachable)
    assert result.exit_code == 4 and result.stdout == ""
    assert json.loads(result.stderr)["error"]["status"] is None


def test_version_names_both_distributions() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "skillmix 0.1.0, skillmix-client 0.1.0"


def test_result_tables_name_the_skills() -> None:
    """`skillmix mix --wait`, `verify --wait` and `... show`: skills by name, not by id."""
    per_batch = {"mean": 2.0, "min": 2, "max": 2}
    audit = {
        "n_batches": 10,
        "tolerance": 0.05,
        "passed": True,
        "skills": {
            "skill_01abc": {
                "name": "compare",
                "spacing": "uniform",
                "planned": {"per_batch": 2.0},
                "placed": {"per_batch": per_batch},
                "natural": {"per_batch": 0.1},
                "passed": True,
            }
        },
    }
    verdict = {"skill_id": "skill_01abc", "size": "nano", "arm": "upweighted", "ci95": [0.5, 1]}
    verdict |= {"n_retained": 5, "n_seeds": 5, "p_retained": 1.0, "threshold": 0.9}
    verdict |= {"mean_accuracy": 0.99, "verdict": "retained"}
    skills = [{"id": "skill_01abc", "version": 1, "name": "compare"}]
    for resource in (
        Mixture(id="mix_1", audit=audit),
        Verification(id="ver_1", skills=skills, report={"verdicts": [verdict]}),
    ):
        console = Console(record=True, width=200)
        console.print(result_table(resource))
        text = console.export_text()
        assert "compare" in text and "skill_01abc" not in text, text


def test_a_repetition_study_from_the_command_line() -> None:
    """`--pool-sizes fresh,400,40,4` is the design's pool_sizes; a bad one is a usage error
    (exit 2) before any request; the result table reads per pool."""
    assert parse_pool_sizes("fresh,400, 40,null") == [None, 400, 40, None]
    base = ["study", "--kind", "repetition", "--skill", "s", "--corpus", "c", "--scan", "x"]
    nowhere = {"SKILLMIX_BASE_URL": "http://127.0.0.1:9", "SKILLMIX_API_KEY": "sk_x"}
    code, out = run(nowhere, *base, "--pool-sizes", "fresh,4")
    assert code == 2 and "--dose and --pool-sizes" in out
    code, out = run(nowhere, *base, "--dose", "2", "--pool-sizes", "fresh,few")
    assert code == 2 and "'few' is neither" in out
    loss = {"mean": 0.01, "ci95": [0.0, 0.02], "n_pairs": 8}
    report = {"skills": {"skill_01abc": {
        "points": [{"pool_size": None, "size": "nano", "readout": 0.9, "seen_readout": 0.91},
                   {"pool_size": 4, "size": "nano", "readout": 0.6, "seen_readout": 0.99}],
        "trend": {"nano": {"points": [
            {"pool_size": None, "copies": 1.0, "loss_vs_baseline": loss},
            {"pool_size": 4, "copies": 2000.0, "loss_vs_baseline": loss}]}},
    }}}  # fmt: skip
    skills = [{"id": "skill_01abc", "version": 1, "name": "compare"}]
    console = Console(record=True, width=200)
    console.print(study_table(Study(id="stu_1", kind="repetition", skills=skills, report=report)))
    text = console.export_text()
    assert "compare" in text and "fresh" in text and "2e+03" in text and "0.01 [0, 0.02]" in text


def test_a_spacing_study_table_reads_per_period_and_trend() -> None:
    """A spacing study's result table has a row per period (P with its interval, readout,
    forgetting) and one of trends; it used to print an empty dose table."""
    report = {"skills": {"skill_01abc": {
        "points": [{"period": 1, "size": "nano", "p_retained": 1.0, "ci95": [0.72, 1.0],
                    "readout": 0.95, "forgetting": None},
                   {"period": 8, "size": "nano", "p_retained": 0.5, "ci95": [0.24, 0.76],
                    "readout": 0.81, "forgetting": 0.031}],
        "trend": {"nano": {"p_trend": {"value": -0.9, "ci95": [-1.7, -0.2]},
                           "readout_trend": {"slope": -0.047, "ci95": [-0.08, -0.01]},
                           "forgetting_trend": {"slope": 0.012, "ci95": [0.004, 0.02]}}},
    }}}  # fmt: skip
    skills = [{"id": "skill_01abc", "version": 1, "name": "compare"}]
    console = Console(record=True, width=200)
    console.print(study_table(Study(id="stu_1", kind="spacing", skills=skills, report=report)))
    text = console.export_text()
    assert "0.5 [0.24, 0.76]" in text and "0.031" in text
    assert "-0.9 [-1.7, -0.2]" in text and "+0.012 [0.004, 0.02]" in text


def test_an_adaptive_study_from_the_command_line_checks_its_bounds() -> None:
    """`--adaptive MIN:MAX` is the adaptive design's bounds; bad bounds, or both --doses and
    --adaptive, are usage errors (exit 2) before any request."""
    assert parse_bounds("0.25:16") == (0.25, 16.0)
    base = ["study", "--kind", "dose_response", "--skill", "s", "--corpus", "c", "--scan", "x"]
    nowhere = {"SKILLMIX_BASE_URL": "http://127.0.0.1:9", "SKILLMIX_API_KEY": "sk_x"}
    code, out = run(nowhere, *base, "--adaptive", "16:0.25")
    assert code == 2 and "0 < MIN < MAX" in out
    code, out = run(nowhere, *base, "--adaptive", "a lot")
    assert code == 2 and "is not MIN:MAX" in out
    code, out = run(nowhere, *base, "--adaptive", "1:8", "--doses", "1,2")
    assert code == 2 and "not both" in out
