"""docker-compose.yml cannot run here (no Docker engine), so each of its services' commands
runs locally instead, from a replay of its image's Dockerfile target (tests/dockerfile.py:
the same COPYs into a fresh folder, the same pip steps into a fresh virtualenv), with the
compose environment and its hostnames mapped to this machine's PostgreSQL and Redis. If the
file drifts from the CLI, or the image lacks a path or a module a service needs, this
fails."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from service.cli.embedded import free_port, stop_process
from tests import dockerfile
from tests.service.conftest import auth, new_key
from tests.service.stack import wait_final, wait_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
# `${NAME:-default}` as compose interpolates it when NAME is unset (no .env here).
VARIABLE = re.compile(r"\$\{(\w+):-([^}]*)\}")
COMPOSE = yaml.safe_load(VARIABLE.sub(lambda m: m.group(2), COMPOSE_TEXT))
OURS = {name: svc for name, svc in COMPOSE["services"].items() if "build" in svc}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dockerfile.Image]:
    """Each Dockerfile target the compose services are built from, replayed once."""
    targets = {svc["build"]["target"] for svc in OURS.values()}
    return {t: dockerfile.build(t, tmp_path_factory.mktemp(f"image-{t}")) for t in targets}


def image_of(service: dict, images: dict[str, dockerfile.Image]) -> dockerfile.Image:
    return images[service["build"]["target"]]


def local_env(
    service: dict, pg_url: str, redis_url: str, data_dir: Path, image: dockerfile.Image
) -> dict[str, str]:
    env = {k: v for k, v in image.env.items() if not k.startswith("SKILLMIX_")}
    compose_env = {k: str(v) for k, v in service["environment"].items()}
    assert urlsplit(compose_env["SKILLMIX_DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(compose_env["SKILLMIX_BROKER_URL"]).hostname == "redis"
    compose_env.update(
        SKILLMIX_DATABASE_URL=pg_url,
        SKILLMIX_BROKER_URL=redis_url,
        SKILLMIX_DATA_DIR=str(data_dir),
        SKILLMIX_ALLOWED_ROOTS=str(data_dir),
        SKILLMIX_DEVICE="cpu",  # no GPU here; the training worker still consumes its queue
    )
    if "PROMETHEUS_MULTIPROC_DIR" in compose_env:  # a tmpfs in compose
        metrics_dir = data_dir / "prometheus"
        metrics_dir.mkdir(exist_ok=True)
        compose_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env.update(compose_env)
    return env


def command(service: dict, port: int, image: dockerfile.Image) -> list[str]:
    cmd = [str(part) for part in service["command"]]
    assert cmd[0] == "skillmix"
    cmd = [image.bin("skillmix"), *cmd[1:]]
    if "--port" in cmd:
        cmd[cmd.index("--port") + 1] = str(port)
        cmd[cmd.index("--host") + 1] = "127.0.0.1"
    return cmd


def test_compose_has_the_production_services() -> None:
    assert {"postgres", "redis", "migrate", "api", "worker-curation", "worker-training"} <= set(
        COMPOSE["services"]
    )
    gpu = COMPOSE["services"]["worker-training"]["deploy"]["resources"]["reservations"]
    assert gpu["devices"][0]["driver"] == "nvidia"
    assert "--appendonly" in COMPOSE["services"]["redis"]["command"]
    assert COMPOSE["services"]["flower"]["profiles"] == ["monitoring"]


def test_env_example_names_every_compose_variable() -> None:
    example = (ROOT / ".env.example").read_text()
    names = {m.group(1) for m in VARIABLE.finditer(COMPOSE_TEXT)}
    assert "${" not in VARIABLE.sub("", COMPOSE_TEXT), "every variable needs a default"
    missing = {n for n in names if not re.search(rf"^{n}=", example, re.M)}
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_every_service_command_runs_locally(
    pg_url: str,
    redis_url: str,
    tmp_path: Path,
    env: pytest.MonkeyPatch,
    images: dict[str, dockerfile.Image],
) -> None:
    port = free_port()
    envs = {
        name: local_env(svc, pg_url, redis_url, tmp_path, image_of(svc, images))
        for name, svc in OURS.items()
    }
    migrate = subprocess.run(
        command(OURS["migrate"], port, image_of(OURS["migrate"], images)),
        cwd=image_of(OURS["migrate"], images).app,
        env=envs["migrate"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr

    procs = {}
    try:
        for name in ("api", "worker-curation", "worker-training"):
            image = image_of(OURS[name], images)
            procs[name] = subprocess.Popen(
                command(OURS[name], port, image),
                cwd=image.app,
                env=envs[name],
                start_new_session=True,
                stdout=open(tmp_path / f"{name}.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "the api service to be ready")
        for key, value in envs["api"].items():
            env.setenv(key, value)
        from service.cli.embedded import refresh_settings

        refresh_settings()
        with httpx.Client(base_url=base, headers=auth(new_key("compose")), timeout=10) as c:
            for queue in ("curation", "training"):
                r = c.post(
                    "/v1/jobs", json={"kind": "sleep", "queue": queue, "params": {"seconds": 0.1}}
                )
                job = wait_final(c, r.json()["id"], timeout=60)
                assert job["state"] == "succeeded", (queue, job)
    finally:
        for proc in procs.values():
            stop_process(proc)
        shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)


def test_the_images_hold_what_their_services_import(images: dict[str, dockerfile.Image]) -> None:
    """The cpu image (API, migrations, curation) has no torch and says so when asked to
    train; the cuda image has the whole stack. Neither imports from its source folder."""

    def run(image: dockerfile.Image, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [image.bin("skillmix"), *args],
            cwd="/",
            env=image.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    cpu, cuda = images["cpu"], images["cuda"]
    for image in (cpu, cuda):
        assert run(image, "--version").stdout.startswith("skillmix 0.1.0, skillmix-client 0.1.0")
        for verb in ("serve", "worker", "db", "keys", "scans", "mix"):
            assert run(image, verb, "--help").returncode == 0, verb
    probe = "import importlib.util as u; print(u.find_spec('torch') is not None)"
    for image, has_torch in ((cpu, "False"), (cuda, "True")):
        out = subprocess.run(
            [image.bin("python"), "-c", probe],
            cwd="/",
            env=image.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == has_torch, out.stderr
    no_training = run(cpu, "worker", "--queues", "training")
    assert no_training.returncode == 2
    assert "pip install 'skillmix[training]'" in no_training.stderr


def test_the_training_workers_scale() -> None:
    """`docker compose up --scale worker-training=N`: a service scales when no replica
    claims a fixed name or host port; its replicas then share verifications unit by unit."""
    training = COMPOSE["services"]["worker-training"]
    assert "container_name" not in training and "ports" not in training
    command = training["command"]
    assert command[:2] == ["skillmix", "worker"]
    assert command[command.index("--queues") + 1] == "training"
    assert "--scale worker-training=N" in COMPOSE_TEXT
