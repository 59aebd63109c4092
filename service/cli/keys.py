"""`skillmix keys`: create, list, revoke and rotate API keys, straight in the database
(the server verbs; `/v1/keys` does the same over HTTP for admin keys)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any, NoReturn

import typer

from service.extras import require

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


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
