"""Build a Dockerfile target's file set and Python environment without Docker.

No Docker engine runs on our CI machines, so this replays a target's stages the way
`docker build` would: COPY copies the same paths from the repository into a fresh folder
(the image's WORKDIR), ENV and ARG set variables, and each RUN runs in a fresh virtualenv
whose `pip`, `uv` and `python` come first on PATH. What is not copied is not there; what the pip
steps do not install is not importable. The only RUNs not replayed are the system set-up
lines listed in SYSTEM_SETUP (users and folders of the image), which would change this
machine; any other RUN that is not a Python step fails the replay, so a new step cannot be
skipped silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_SETUP = ("useradd ",)
# Settings that shape the image, not what is installed in it: the package caches are off in
# the image to keep it small (the replay keeps them, so each test run does not download
# again), and uv installs into the image's system Python (the replay: into its virtualenv).
REPLAY_IGNORES = {"PIP_NO_CACHE_DIR", "UV_NO_CACHE", "UV_SYSTEM_PYTHON"}
PYTHON_STEP = re.compile(r"^(pip|uv|python|grep) ")


@dataclass
class Stage:
    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Image:
    """A replayed target: its WORKDIR copy, its virtualenv, and the environment it runs with."""

    app: Path
    venv: Path
    env: dict[str, str]

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def parse(text: str) -> dict[str, Stage]:
    """Stages by name, each with its instructions (continuation lines joined)."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else parts[0]
            current = stages[name] = Stage(name, parts[0])
        elif current is not None:
            current.instructions.append((word, rest.strip()))
    return stages


def chain(stages: dict[str, Stage], target: str) -> list[Stage]:
    """The target and the stages it builds on, base first."""
    out = []
    name: str | None = target
    while name in stages:
        out.insert(0, stages[name])
        name = stages[name].parent
    return out


def build(target: str, into: Path, dockerfile: Path = ROOT / "Dockerfile") -> Image:
    """Replay `target` of `dockerfile` into `into` (app/ and venv/); raise on any failure."""
    app, venv = into / "app", into / "venv"
    app.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKILLMIX_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    for stage in chain(parse(dockerfile.read_text()), target):
        for word, rest in stage.instructions:
            if word in ("ENV", "ARG"):
                # As in `docker build`, the shell of each RUN sees both as variables.
                for item in shlex.split(rest):
                    key, _, value = item.partition("=")
                    if key not in REPLAY_IGNORES:
                        env[key] = value
            elif word == "COPY":
                *sources, dest = shlex.split(rest)
                for source in sources:
                    copy(ROOT / source, app / dest, many=len(sources) > 1 or dest.endswith("/"))
            elif word == "RUN":
                run(rest, app, env)
            elif word not in ("WORKDIR", "USER"):
                raise AssertionError(f"the replay does not know Dockerfile's {word} ({rest})")
    return Image(app=app, venv=venv, env=env)


def copy(source: Path, dest: Path, many: bool) -> None:
    if not source.exists():
        raise AssertionError(f"COPY {source.relative_to(ROOT)}: no such path in the repository")
    if source.is_dir():
        shutil.copytree(
            source,
            dest,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"),
        )
    else:
        target = dest / source.name if many or dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def run(command: str, cwd: Path, env: dict[str, str]) -> None:
    steps = [s.strip() for s in command.split("&&")]
    if any(s.startswith(SYSTEM_SETUP) for s in steps):
        return  # the image's user and folders: nothing to replay here
    for step in steps:
        if not PYTHON_STEP.match(step):
            raise AssertionError(f"RUN step not replayed here: {step!r}")
    out = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if out.returncode != 0:
        raise AssertionError(f"RUN {command}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
