"""Each installable part, alone in a fresh virtualenv, installs what it should and nothing
heavier, and works: `pip install skillmix` (the curation library), `skillmix[training]`,
`skillmix[service]` with the SDK's command, and the SDK (`skillmix-client`, httpx and
pydantic only) with and without its command (`skillmix-client[cli]`).

Each part is resolved from its own declared dependencies (not `--no-deps`), so a missing
one fails here; versions are held to the lock's pins. uv takes the wheels from its cache,
which `make install` filled, but resolving needs each package's metadata, which
`make install` (hash-checked, --no-deps) never asked for: uv fetches that from the
registry (not --offline: a fresh machine's cache does not hold it). torch comes from pip,
as in `make install`, which on our machines takes the CPU wheel on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
HEAVY = {"torch", "fastapi", "celery", "sqlalchemy", "uvicorn", "typer", "alembic", "kombu"}
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"

pytestmark = pytest.mark.slow


@dataclass
class Venv:
    path: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKILLMIX_")}
        env["VIRTUAL_ENV"] = str(self.path)
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env['PATH']}"
        out = subprocess.run([*args], cwd="/", env=env, capture_output=True, text=True, timeout=600)
        if check:
            assert out.returncode == 0, f"{args}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        return out

    def python(self, code: str) -> str:
        return self.run(str(self.path / "bin" / "python"), "-c", code).stdout

    def installed(self) -> set[str]:
        out = self.run(UV, "pip", "list", "--format", "json").stdout
        return {p["name"].lower() for p in json.loads(out)}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's packages, so builds leave the checkout alone; and the
    lock's pins as a constraints file."""
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".venv*")
    for name in (
        "service",
        "curation",
        "training",
        "analysis",
        "migrations",
        "clients",
        "requirements",
    ):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md", "alembic.ini"):
        shutil.copy2(ROOT / name, src / name)
    pins = [line.split(" ")[0] for line in LOCK.read_text().splitlines() if line[:1].isalnum()]
    (src / "pins.txt").write_text("\n".join(pins) + "\n")
    return src


def new_venv(tmp_path: Path, source: Path, *requirements: str, torch: bool = False) -> Venv:
    venv = Venv(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv.path)], check=True, timeout=120)
    pins = str(source / "pins.txt")
    if torch:
        venv.run(str(venv.path / "bin" / "pip"), "install", "--quiet", "-c", pins, "torch==2.13.0")
    venv.run(UV, "pip", "install", "--quiet", "-c", pins, *requirements)
    return venv


def test_the_library_alone(tmp_path: Path, source: Path) -> None:
    venv = new_venv(tmp_path, source, str(source))
    assert not venv.installed() & HEAVY, venv.installed() & HEAVY
    out = venv.python(
        "from curation.skills.spec import SkillSpec\n"
        "from curation.steps.tagger import SkillTagger\n"
        "spec = SkillSpec.model_validate({'id': 's1', 'name': 'cmp',"
        " 'detector': {'kind': 'builtin'},"
        " 'generator': {'family': 'number_comparison', 'params': {}}})\n"
        "print(SkillTagger.__name__, spec.family.detector().kind)"
    )
    assert out.split() == ["SkillTagger", "regex"]
    # The command is the service's: it says which extra brings it.
    bare = venv.run("skillmix", "--help", check=False)
    assert bare.returncode == 2 and "pip install 'skillmix[service]'" in bare.stderr


def test_the_library_with_training(tmp_path: Path, source: Path) -> None:
    venv = new_venv(tmp_path, source, f"{source}[training]", torch=True)
    assert venv.installed() & HEAVY == {"torch"}
    out = venv.python(
        "import torch\n"
        "from training.model import GPT, ModelConfig\n"
        "model = GPT(ModelConfig.from_size('nano', vocab_size=257, block_size=16))\n"
        "logits = model(torch.zeros(1, 16, dtype=torch.long))\n"
        "print(tuple(logits.shape))"
    )
    assert out.strip() == "(1, 16, 257)"


def test_the_service_with_the_commands(tmp_path: Path, source: Path) -> None:
    venv = new_venv(tmp_path, source, f"{source / 'clients' / 'python'}[cli]", f"{source}[service]")
    assert "torch" not in venv.installed()
    assert {"fastapi", "celery", "sqlalchemy", "typer", "skillmix-client"} <= venv.installed()
    help_text = venv.run("skillmix", "--help").stdout
    for verb in ("serve", "worker", "db", "keys", "scans", "mixtures", "verify"):
        assert f" {verb} " in help_text, verb
    venv.python("from service.api.app import create_app; create_app()")
    # the service runs studies: their statistics come with it
    venv.python("from analysis.dose import fit; print(fit([1, 2, 4], [0, 1, 1]).slope)")
    # A verb that trains says which extra it lacks, and does not start.
    worker = venv.run("skillmix", "worker", "--queues", "training", check=False)
    assert worker.returncode == 2, worker.stderr
    assert "pip install 'skillmix[training]'" in worker.stderr


def test_the_sdk_with_its_command(tmp_path: Path, source: Path) -> None:
    client = source / "clients" / "python"
    venv = new_venv(tmp_path, source, str(client))
    assert {"skillmix-client", "httpx", "pydantic"} <= venv.installed()
    assert not venv.installed() & HEAVY, venv.installed() & HEAVY
    probe = (
        "import importlib.resources as r, skillmix_client as s;"
        "print(s.__version__, r.files('skillmix_client').joinpath('py.typed').is_file())"
    )
    assert venv.python(probe).split() == ["0.1.0", "True"]
    bare = venv.run("skillmix", "jobs", "list", check=False)
    assert bare.returncode == 2 and "pip install 'skillmix-client[cli]'" in bare.stderr

    venv.run(
        UV,
        "pip",
        "install",
        "--quiet",
        "-c",
        str(source / "pins.txt"),
        f"{client}[cli]",
    )
    assert not venv.installed() & (HEAVY - {"typer"})
    help_text = venv.run("skillmix", "--help").stdout
    assert " jobs " in help_text and " serve " not in help_text  # the client verbs only
    assert venv.run("skillmix", "--version").stdout.strip() == "skillmix-client 0.1.0"
    # Nothing listens on port 1: exit 4, the error on stderr (JSON with --json), stdout empty.
    out = venv.run(
        "skillmix",
        "jobs",
        "list",
        "--json",
        "--base-url",
        "http://127.0.0.1:1",
        "--api-key",
        "sk_x",
        check=False,
    )
    assert out.returncode == 4 and out.stdout == ""
    assert json.loads(out.stderr)["error"]["message"]
