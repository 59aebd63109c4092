"""`pip install ./clients/python` into an empty virtualenv brings httpx and pydantic, none of
the server's heavy dependencies, and the package imports with its type marker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "python"
SERVER_ONLY = {"torch", "datatrove", "celery", "fastapi", "sqlalchemy", "uvicorn", "kombu"}


@pytest.mark.slow
def test_the_sdk_installs_alone(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy, so pip's in-tree build leaves the repository alone
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")

    def run(*args: str) -> str:
        out = subprocess.run([python, *args], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout

    run("-m", "pip", "install", "--quiet", str(source))

    installed = {p["name"].lower() for p in json.loads(run("-m", "pip", "list", "--format=json"))}
    assert {"skillmix-client", "httpx", "pydantic"} <= installed
    assert not installed & SERVER_ONLY, installed & SERVER_ONLY
    probe = (
        "import importlib.resources as r, skillmix_client as s;"
        "print(s.__version__, r.files('skillmix_client').joinpath('py.typed').is_file())"
    )
    assert run("-c", probe).split() == ["0.1.0", "True"]
