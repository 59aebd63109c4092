"""Every script in examples/ runs, as a user would run it. Scripts that talk to the
service get an embedded one (real API, real workers) through SKILLMIX_BASE_URL/API_KEY."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.auth import create_key
from service.cli.embedded import embedded_stack
from service.db import session_scope

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
# Arguments per script (default: a scratch folder); the SDK loop at a tiny scale.
NEEDS_SERVICE = {"sdk_loop.py": ["--steps", "60", "--seeds", "1"]}


@pytest.fixture
def service_env(env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    with embedded_stack(tmp_path / "data") as stack:
        with session_scope() as session:
            _, key = create_key(session, "examples")
        yield {**os.environ, "SKILLMIX_BASE_URL": stack.base_url, "SKILLMIX_API_KEY": key}


def run(script: Path, args: list[str], environ: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=script.parents[1],
        env=environ,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize(
    "script", [p for p in EXAMPLES if p.name not in NEEDS_SERVICE], ids=lambda p: p.name
)
def test_library_example_runs(script: Path, tmp_path: Path) -> None:
    run(script, [str(tmp_path)], dict(os.environ))


@pytest.mark.parametrize(
    "script", [p for p in EXAMPLES if p.name in NEEDS_SERVICE], ids=lambda p: p.name
)
def test_service_example_runs(script: Path, tmp_path: Path, service_env: dict[str, str]) -> None:
    corpus = tmp_path / "data" / "corpora" / script.stem
    run(script, [str(corpus), *NEEDS_SERVICE[script.name]], service_env)
