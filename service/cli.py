"""`skillmix`: the server verbs (serve, worker, db, keys, demo), added to the SDK's client
verbs (`skillmix_client.cli`) through the `skillmix.cli` entry point.

This module imports only typer and the standard library, so the command starts (and says
which extra is missing) in any install; each verb imports what it needs when it runs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from service.settings import Settings

server_app = typer.Typer()
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
server_app.add_typer(db_app, name="db")
server_app.add_typer(keys_app, name="keys")

# What each install part brings (pyproject.toml's extras), checked before a verb imports it.
EXTRAS = {
    "service": ("fastapi", "uvicorn", "sqlalchemy", "alembic", "celery", "pydantic_settings"),
    "training": ("torch",),
}


def require(*extras: str) -> None:
    """Exit 2 with the pip command to run when an extra this verb needs is not installed."""
    for extra in extras:
        missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
        if missing:
            typer.echo(
                f"error: this command needs skillmix's {extra} extra ({', '.join(missing)} "
                f"not installed): pip install 'skillmix[{extra}]'",
                err=True,
            )
            raise typer.Exit(2)


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

    from service import embedded as emb
    from service import logs, migrate

    def run_api() -> None:
        settings = get_settings()
        if folder := settings.prometheus_multiproc_dir:
            # The workers' request metrics (service/metrics.py): prometheus_client wants the
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
        int | None, typer.Option(help="Processes (default: SKILLMIX_WORKER_CONCURRENCY).")
    ] = None,
    loglevel: Annotated[
        str | None, typer.Option(help="Log level (default: SKILLMIX_LOG_LEVEL).")
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(
            help="Celery pool (default: solo for the training queue alone, so a verification "
            "can run its training processes; prefork otherwise)."
        ),
    ] = None,
) -> None:
    """Run a Celery worker, and the sweeper that re-sends stranded jobs."""
    require("service", *(["training"] if "training" in queues.split(",") else []))
    from celery.signals import setup_logging, worker_ready
    from celery.utils.log import LoggingProxy

    from service import logs
    from service.celery_app import get_celery
    from service.kinds import QUEUES
    from service.sweeper import start_sweeper

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
        pool = "solo" if queues == "training" else "prefork"
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
        str(concurrency or settings.worker_concurrency),
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
            concurrency or settings.worker_concurrency,
        )
    celery = get_celery()
    # Quiet, its shutdown notices are log lines too (service/celery_worker.py).
    celery.Worker = celery.subclass_with_self("service.celery_worker:Worker")
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


def parse_duration(text: str, option: str, *, allow_zero: bool = False) -> timedelta:
    """`90m`, `12h`, `30d` (also `45s`, `2w`; a bare number is seconds), or a usage error."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    value, unit = text.strip(), "s"
    if value and value[-1].lower() in units:
        value, unit = value[:-1], value[-1].lower()
    if not value.isdigit() or len(value) > 9 or (int(value) == 0 and not allow_zero):
        raise typer.BadParameter(
            f"{text!r} is not a duration such as 90m, 12h or 30d", param_hint=option
        )
    return timedelta(seconds=int(value) * units[unit])


def _json(value: object) -> str:
    return json.dumps(value, default=lambda v: v.isoformat())


def _cell(value: object) -> str:
    """A table cell: times to the second (UTC), "-" for none."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


ExpiresIn = Annotated[
    str | None,
    typer.Option("--expires-in", help="Expire after this long: 90m, 12h, 30d (default: never)."),
]
KeyJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
KeyQuiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key.")]


def _echo_new_key(summary: dict[str, Any], key: str, as_json: bool, quiet: bool) -> None:
    """The one place a key is printed in clear (stdout, once)."""
    if quiet:
        typer.echo(key)
    elif as_json:
        typer.echo(_json({**summary, "key": key}))
    else:
        expires = _cell(summary["expires_at"]) if summary["expires_at"] else "never"
        lines = [
            f"project {summary.get('project')}",
            f"key     {key}  (store it now: it is not shown again)",
            f"id      {summary['id']}",
            f"name    {summary['name']}",
            f"role    {summary['role']}",
            f"expires {expires}",
        ]
        typer.echo("\n".join(lines))


def _fail(message: str, as_json: bool = False) -> NoReturn:
    """Exit 1 with the error on stderr (one JSON object with --json), as the client verbs do."""
    text = _json({"error": {"message": message}}) if as_json else f"error: {message}"
    typer.echo(text, err=True)
    raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option(help="Project name; created if new.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "default",
    expires_in: ExpiresIn = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="May also manage the project's keys (/v1/keys).")
    ] = False,
    as_json: KeyJson = False,
    quiet: KeyQuiet = False,
) -> None:
    """Create an API key for PROJECT (shown once; only its hash is stored)."""
    require("service")
    from sqlalchemy import select

    from service.auth import create_key, hash_key, key_summary
    from service.db import session_scope
    from service.models import ApiKey, utcnow

    lifetime = parse_duration(expires_in, "--expires-in") if expires_in is not None else None
    role = "admin" if admin else "member"
    expires_at = utcnow() + lifetime if lifetime is not None else None
    with session_scope() as session:
        proj, key = create_key(session, project, name=name, role=role, expires_at=expires_at)
        row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one()
        summary = key_summary(row, proj.name)
    _echo_new_key(summary, key, as_json, quiet)


@keys_app.command("list")
def keys_list(
    project: Annotated[str | None, typer.Option(help="Only this project's keys.")] = None,
    as_json: KeyJson = False,
) -> None:
    """List API keys (never their secrets), oldest first."""
    require("service")
    from sqlalchemy import select

    from service.auth import key_summary
    from service.db import session_scope
    from service.models import ApiKey, Project

    with session_scope() as session:
        stmt = select(ApiKey, Project.name).join(Project, Project.id == ApiKey.project_id)
        if project is not None:
            stmt = stmt.where(Project.name == project)
        rows = [key_summary(k, p) for k, p in session.execute(stmt.order_by(ApiKey.id))]
    if as_json:
        typer.echo(_json(rows))
        return
    columns = ["id", "project", "name", "prefix", "role", "created_at", "expires_at"]
    columns += ["last_used_at", "revoked_at"]
    table = [[c.removesuffix("_at") for c in columns]]
    table += [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")]) -> None:
    """Revoke a key: API processes refuse it within SKILLMIX_AUTH_CACHE_SECONDS."""
    require("service")
    from service.auth import find_key, revoke_key
    from service.db import session_scope

    with session_scope() as session:
        row = find_key(session, key_id)
        if row is None:
            _fail(f"no API key with id {key_id!r}")
        revoke_key(row)
    typer.echo(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    grace: Annotated[
        str, typer.Option(help="How long the old key keeps working: 1h, 30m, 0 (revoke now).")
    ] = "1h",
    as_json: KeyJson = False,
    quiet: KeyQuiet = False,
) -> None:
    """Replace a key with a new one (same project, name and role), printed once."""
    require("service")
    from service.auth import KeyNotLive, find_key, key_summary, rotate_key
    from service.db import session_scope
    from service.models import Project

    grace_period = parse_duration(grace, "--grace", allow_zero=True)
    with session_scope() as session:
        row = find_key(session, key_id)
        if row is None:
            _fail(f"no API key with id {key_id!r}", as_json)
        try:
            new, key = rotate_key(session, row, grace_period)
        except KeyNotLive:
            _fail(f"key {key_id} is revoked or expired: create a new one", as_json)
        project = session.get(Project, new.project_id)
        summary = key_summary(new, project.name if project else None)
    _echo_new_key(summary, key, as_json, quiet)


@server_app.command()
def demo(
    data_dir: DataDir = None,
    seeds: Annotated[int, typer.Option(help="Seeds per arm.")] = 5,
    steps: Annotated[int, typer.Option(help="Training steps per run.")] = 4000,
) -> None:
    """Run the whole loop on the embedded default: skills, corpus, scan, mix, verify."""
    require("service", "training")
    from service.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    target = data_dir or Path(os.environ.get("SKILLMIX_DATA_DIR", ".skillmix")) / "demo"
    sys.exit(run_demo(target, seeds=seeds, steps=steps))


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


def __getattr__(name: str) -> typer.Typer:
    # `service.cli.app`, built on first use: loading this module as the SDK's entry point
    # must not import the SDK's command back.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main() -> None:
    """The `skillmix` script of the server distribution."""
    build_app()()


if __name__ == "__main__":
    main()
