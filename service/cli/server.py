"""`skillmix`: the server verbs (serve, worker, db, keys, demo), added to the SDK's client
verbs (`skillmix_client.cli`) through the `skillmix.cli` entry point.

This module imports only typer and the standard library, so the command starts (and says
which extra is missing) in any install; each verb imports what it needs when it runs.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.keys import keys_app
from service.extras import require

if TYPE_CHECKING:
    from service.settings import Settings

server_app = typer.Typer()
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
server_app.add_typer(db_app, name="db")
server_app.add_typer(keys_app, name="keys")


def get_settings() -> Settings:
    require("service")
    from service.settings import get_settings as settings

    return settings()


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory for the embedded mode (default: SKILLMIX_DATA_DIR)."
    ),
]


@server_app.command()
def serve(
    embedded: Annotated[
        bool,
        typer.Option(
            "--embedded",
            help="SQLite + a filesystem broker under the data dir, and a worker "
            "in a child process: no other server needed.",
        ),
    ] = False,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    data_dir: DataDir = None,
) -> None:
    """Run the HTTP API (and, with --embedded, a worker beside it).

    With --embedded, SIGTERM or Ctrl-C stops the API and the workers; the exit status is
    then 0."""
    require("service", *(["training"] if embedded else []))
    import uvicorn

    from service import logs, migrate
    from service.cli import embedded as emb

    def run_api() -> None:
        settings = get_settings()
        if folder := settings.prometheus_multiproc_dir:
            # The workers' request metrics (service/api/metrics.py): prometheus_client wants the
            # folder emptied before the processes that write it start.
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*.db"):
                stale.unlink()
        # uvicorn applies the logging config in each of its worker processes.
        config = logs.logging_config(settings)
        uvicorn.run("service.api.app:app", host=host, port=port, workers=workers, log_config=config)

    logs.setup_logging(get_settings())
    if not embedded:
        run_api()
        return
    emb.use_embedded(data_dir or get_settings().data_dir)
    settings = get_settings()
    migrate.upgrade(settings.effective_database_url)
    typer.echo(
        f"embedded skillmix: data in {settings.resolved_data_dir}, workers for the curation "
        f"and training queues (logs: worker-*.log), API on http://{host}:{port}"
    )
    emb.serve_with_workers(run_api, settings.resolved_data_dir)


@server_app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to consume.")
    ] = "curation,training",
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Processes (default: SKILLMIX_TRAINING_WORKERS for the training queue alone, "
            "SKILLMIX_WORKER_CONCURRENCY otherwise)."
        ),
    ] = None,
    loglevel: Annotated[
        str | None, typer.Option(help="Log level (default: SKILLMIX_LOG_LEVEL).")
    ] = None,
    pool: Annotated[str | None, typer.Option(help="Celery pool (default: prefork).")] = None,
    devices: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated GPU indices: one worker process per device, each seeing "
            "only its own (CUDA_VISIBLE_DEVICES) and training one unit at a time."
        ),
    ] = None,
) -> None:
    """Run a Celery worker, and the sweeper that re-sends stranded jobs.

    A training worker takes a verification's training units (one (arm, size, seed group)
    each) one at a time per process: any number of them, on any number of machines,
    share a verification."""
    require("service", *(["training"] if "training" in queues.split(",") else []))
    if devices is not None:
        chosen = [d.strip() for d in devices.split(",") if d.strip()]
        if not chosen or len(set(chosen)) != len(chosen):
            raise typer.BadParameter(f"give distinct device indices, e.g. 0,1 (not {devices!r})")
        from service import logs
        from service.cli.embedded import run_device_workers

        logs.setup_logging(get_settings())
        sys.exit(run_device_workers(queues, chosen))
    from celery.signals import setup_logging, worker_ready
    from celery.utils.log import LoggingProxy

    from service import logs
    from service.celery_app import get_celery
    from service.queues import QUEUES
    from service.worker.sweeper import start_sweeper

    settings = get_settings()
    if loglevel:
        settings = settings.model_copy(update={"log_level": loglevel.upper()})
    unknown = set(queues.split(",")) - set(QUEUES)
    if unknown:
        raise typer.BadParameter(f"unknown queue(s) {sorted(unknown)}; known: {QUEUES}")
    logs.setup_logging(settings)

    @setup_logging.connect(weak=False)
    def _keep_our_logging(**_: object) -> None:
        # With a receiver Celery adds no handler or format of its own, in this process and
        # in its pool processes (which inherit ours). Output that libraries print still
        # becomes log lines (with the job's context), as Celery's own redirect would do.
        if not isinstance(sys.stdout, LoggingProxy):
            get_celery().log.redirect_stdouts("WARNING")
            logs.redirect_loguru()

    @worker_ready.connect(weak=False)
    def _sweep(**_: object) -> None:
        start_sweeper(settings)

    if pool is None:
        pool = "prefork"
    if concurrency is None:
        training_only = queues == "training"
        concurrency = settings.training_workers if training_only else settings.worker_concurrency
    name = f"skillmix-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    # Celery's banner is free text on stdout: a JSON log has a line of its own instead.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    argv = [
        *quiet,
        "worker",
        "--pool",
        pool,
        "-Q",
        queues,
        "--loglevel",
        settings.log_level,
        "--concurrency",
        str(concurrency),
        "-n",
        name,
    ]
    if settings.embedded_broker:
        # The filesystem transport has no broadcast heartbeat worth having.
        argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    if quiet:
        logging.getLogger("skillmix.worker").info(
            "worker %s: queues %s, pool %s, concurrency %s",
            name,
            queues,
            pool,
            concurrency,
        )
    celery = get_celery()
    # Quiet, its shutdown notices are log lines too (service/worker/celery_worker.py).
    celery.Worker = celery.subclass_with_self("service.worker.celery_worker:Worker")
    celery.worker_main(argv)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = "head",
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the database to accept connections first.")
    ] = 0,
) -> None:
    """Apply migrations up to REVISION (default: head)."""
    require("service")
    from service import migrate

    migrate.wait_for_database(get_settings().effective_database_url, wait)
    migrate.upgrade(get_settings().effective_database_url, revision)
    typer.echo(f"database at {migrate.current(get_settings().effective_database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = "base") -> None:
    """Revert migrations down to REVISION (default: base, an empty database)."""
    require("service")
    from service import migrate

    migrate.downgrade(get_settings().effective_database_url, revision)


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    require("service")
    from service import migrate

    typer.echo(migrate.current(get_settings().effective_database_url) or "empty")


@server_app.command()
def demo(
    data_dir: DataDir = None,
    seeds: Annotated[int, typer.Option(help="Seeds per arm.")] = 5,
    steps: Annotated[int, typer.Option(help="Training steps per run.")] = 4000,
    study: Annotated[
        str | None,
        typer.Option(
            help="'dose': a dose-response study of the demo skill instead of one "
            "verification (seeds per dose; `make study-demo`)."
        ),
    ] = None,
    doses: Annotated[
        str | None,
        typer.Option(
            help="With --study dose: the doses per batch, comma-separated "
            "(default 0.5,1,2,3,4,6,8; the natural baseline is always added)."
        ),
    ] = None,
) -> None:
    """Run the whole loop on the embedded default: skills, corpus, scan, mix, verify."""
    if study not in (None, "dose"):
        raise typer.BadParameter("--study takes 'dose'")
    from skillmix_client.cli._common import parse_doses

    dose_list = parse_doses(doses) if doses else None
    if dose_list and study != "dose":
        raise typer.BadParameter("--doses needs --study dose")
    require("service", "training")
    from service.cli.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    target = data_dir or Path(os.environ.get("SKILLMIX_DATA_DIR", ".skillmix")) / "demo"
    sys.exit(run_demo(target, seeds=seeds, steps=steps, study=study, doses=dose_list))


def register(app: typer.Typer) -> None:
    """Add the server verbs to the root command (the `skillmix.cli` entry point)."""
    app.registered_commands += server_app.registered_commands
    app.registered_groups += server_app.registered_groups


def build_app() -> typer.Typer:
    """The whole `skillmix` command: the SDK's client verbs and the server verbs."""
    from skillmix_client.cli import make_app

    app = make_app(plugins=False)
    register(app)
    return app


def main() -> None:
    """The `skillmix` script of the server distribution."""
    build_app()()
