"""What every client verb shares: options, the SDK client, output and errors.

Results go to stdout (a table, JSON with `--json`, or just the id with `-q`); errors and
warnings go to stderr (JSON with `--json`), so `ID=$(skillmix ... -q)` never captures an
error message. Exit codes: 0 success, 1 a job that ended failed or cancelled, 2 usage error,
3 an API error answer, 4 the server could not be reached.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.table import Table

from skillmix_client import APIConnectionError, APIError, Skillmix, SkillmixError

EXIT_JOB_FAILED, EXIT_API_ERROR, EXIT_UNREACHABLE = 1, 3, 4

# Tables are wide: off a terminal, use 140 columns rather than rich's 80.
_WIDTH = max(shutil.get_terminal_size((140, 24)).columns, 100)
console = Console(width=_WIDTH)
err_console = Console(width=_WIDTH, stderr=True)
BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", envvar="SKILLMIX_BASE_URL", help="API address.", show_envvar=True),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="SKILLMIX_API_KEY", help="API key.", show_envvar=True),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new id.")]
Wait = Annotated[bool, typer.Option("--wait", help="Follow the job with a progress bar.")]


def fail(
    code: int, message: str, as_json: bool = False, *, label: str = "error", **fields: Any
) -> NoReturn:
    """Say what went wrong on stderr (one JSON object with --json) and exit with `code`."""
    if as_json:
        typer.echo(json.dumps({"error": {"message": message, **fields}}), err=True)
    else:
        err_console.print(f"[red]{label}[/red]: {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def client(base_url: str | None, api_key: str | None, as_json: bool = False) -> Iterator[Skillmix]:
    """An SDK client; API and connection errors become a message and an exit code."""
    try:
        with Skillmix(base_url=base_url, api_key=api_key) as c:
            yield c
    except APIError as exc:
        message = f"{exc.title}: {exc.detail or ''}".rstrip(": ")
        fail(
            EXIT_API_ERROR,
            message,
            as_json,
            label=f"error {exc.status}",
            status=exc.status,
            type=exc.type,
            title=exc.title,
            detail=exc.detail,
            request_id=exc.request_id,
        )
    except APIConnectionError as exc:
        fail(EXIT_UNREACHABLE, str(exc), as_json, label="cannot reach the API", status=None)
    except SkillmixError as exc:
        fail(EXIT_API_ERROR, str(exc), as_json)


def dump(obj: Any) -> Any:
    if isinstance(obj, list):
        return [dump(o) for o in obj]
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj


def emit(
    obj: Any, as_json: bool, table: Callable[[Any], Table] | None = None, quiet: bool = False
) -> None:
    """JSON, a table, or (quiet) just the id, for `ID=$(skillmix ... -q)` in scripts."""
    if quiet:
        typer.echo(obj.id)
    elif as_json or table is None:
        typer.echo(json.dumps(dump(obj), indent=2))
    else:
        console.print(table(obj))


def rows_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col, no_wrap=True)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def parse_doses(text: str, option: str = "--doses") -> list[float]:
    """'0.5,1,2' -> [0.5, 1.0, 2.0]; a usage error naming the option for anything else."""
    try:
        doses = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{option} takes numbers separated by commas, e.g. 0.5,1,2,4,8 (got {text!r})"
        ) from None
    if not doses or any(d <= 0 for d in doses):
        raise typer.BadParameter(f"{option} takes positive doses per batch (got {text!r})")
    return doses


def read_definition(path: Path) -> dict[str, Any]:
    """A skill file in YAML or JSON (`-` reads standard input)."""
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: expected a mapping with name, detector, ...")
    return data


def finish_job(
    resource: Any, as_json: bool, table: Callable[[Any], Table] | None, quiet: bool = False
) -> None:
    """Print a waited-for resource; exit 1 when its job did not succeed."""
    emit(resource, as_json, table, quiet)
    job = getattr(resource, "job", None) or resource
    if getattr(job, "state", "succeeded") != "succeeded":
        fail(
            EXIT_JOB_FAILED,
            job.error or "",
            as_json,
            label=f"job {job.id} {job.state}",
            job_id=job.id,
            state=job.state,
        )
