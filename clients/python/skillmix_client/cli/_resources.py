"""`skillmix` client verbs for jobs, skills and corpora, through the SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from skillmix_client.cli._common import (
    ApiKey,
    AsJson,
    BaseUrl,
    Quiet,
    client,
    console,
    dump,
    emit,
    finish_job,
    read_definition,
    rows_table,
)

# -- jobs ------------------------------------------------------------------------------

jobs_app = typer.Typer(help="Jobs: state, progress, artifacts.", no_args_is_help=True)


def jobs_table(jobs: list[Any]) -> Table:
    return rows_table(
        "jobs",
        ["id", "kind", "state", "progress", "attempts", "error"],
        [
            [
                j.id,
                j.kind,
                j.state,
                f"{100 * j.progress.fraction:.0f}% {j.progress.message}",
                j.attempts,
                j.error,
            ]
            for j in jobs
        ],
    )


@jobs_app.command("list")
def jobs_list(
    limit: int = 20, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """The newest jobs."""
    with client(base_url, api_key, as_json) as c:
        jobs = [j for j, _ in zip(c.jobs.list(limit=limit), range(limit), strict=False)]
    emit(jobs, as_json, jobs_table)


@jobs_app.command("show")
def jobs_show(
    job_id: str, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """One job."""
    with client(base_url, api_key, as_json) as c:
        emit(c.jobs.retrieve(job_id), as_json, lambda j: jobs_table([j]))


@jobs_app.command("wait")
def jobs_wait(
    job_id: str, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """Follow a job to its end; exit 1 unless it succeeded."""
    with client(base_url, api_key, as_json) as c:
        job = c.jobs.wait(job_id, progress=not as_json)
    finish_job(job, as_json, lambda j: jobs_table([j]))


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """Cancel a queued or running job."""
    with client(base_url, api_key, as_json) as c:
        emit(c.jobs.cancel(job_id), as_json, lambda j: jobs_table([j]))


@jobs_app.command("retry")
def jobs_retry(
    job_id: str, as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """Send a failed or cancelled job again (it resumes from what it had completed)."""
    with client(base_url, api_key, as_json) as c:
        emit(c.jobs.retry(job_id), as_json, lambda j: jobs_table([j]))


@jobs_app.command("artifacts")
def jobs_artifacts(
    job_id: str,
    download: Annotated[
        Path | None, typer.Option(help="Download every artifact into this folder.")
    ] = None,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List (or download) a job's artifacts."""
    with client(base_url, api_key, as_json) as c:
        artifacts = list(c.jobs.artifacts(job_id))
        if download:
            download.mkdir(parents=True, exist_ok=True)
            for a in artifacts:
                c.jobs.download_artifact(job_id, a.name, download)
    emit(
        artifacts,
        as_json,
        lambda arts: rows_table(
            "artifacts",
            ["name", "type", "bytes"],
            [[a.name, a.media_type, "being drawn" if a.size is None else a.size] for a in arts],
        ),
    )


# -- skills ----------------------------------------------------------------------------

skills_app = typer.Typer(help="Skills: register, list, show, preview.", no_args_is_help=True)


def skills_table(skills: list[Any]) -> Table:
    return rows_table(
        "skills",
        ["id", "name", "version", "detector", "generator"],
        [
            [s.id, s.name, s.version, s.detector.get("kind"), (s.generator or {}).get("family", "")]
            for s in skills
        ],
    )


@skills_app.command("add")
def skills_add(
    path: Annotated[Path, typer.Argument(help="YAML or JSON skill file, or -.")],
    as_json: AsJson = False,
    quiet: Quiet = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Register a skill from a file."""
    definition = read_definition(path)
    with client(base_url, api_key, as_json) as c:
        emit(c.skills.create(**definition), as_json, lambda s: skills_table([s]), quiet)


@skills_app.command("list")
def skills_list(as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """This project's skills."""
    with client(base_url, api_key, as_json) as c:
        emit(list(c.skills.list()), as_json, skills_table)


@skills_app.command("show")
def skills_show(skill_id: str, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """One skill's full definition (JSON)."""
    with client(base_url, api_key) as c:
        emit(c.skills.retrieve(skill_id), True)


@skills_app.command("preview")
def skills_preview(
    skill_id: str,
    text: Annotated[str | None, typer.Option(help="Text to match.")] = None,
    file: Annotated[Path | None, typer.Option(help="Read the text from a file.")] = None,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Matches in a text, plus sample train and held-out instances."""
    body = text if text is not None else (file.read_text() if file else "")
    with client(base_url, api_key, as_json) as c:
        preview = c.skills.preview(skill_id, text=body)
    if as_json:
        emit(preview, True)
        return
    console.print(
        rows_table(
            "matches",
            ["start", "end", "text", "held-out"],
            [[m["start"], m["end"], m["text"], m["in_probe"]] for m in dump(preview)["matches"]],
        )
    )
    if preview.matches_truncated:
        console.print("(the first matches only: more may follow)")
    for label in ("samples", "probe"):
        console.print(
            rows_table(
                label,
                ["prompt", "answer"],
                [[i["prompt"], i["answer"]] for i in dump(preview)[label]],
            )
        )


# -- corpora -----------------------------------------------------------------

corpora_app = typer.Typer(help="Corpora: register and list sources.", no_args_is_help=True)


def corpora_table(corpora: list[Any]) -> Table:
    return rows_table(
        "corpora",
        ["id", "name", "format", "files", "bytes", "uri"],
        [[c.id, c.name, c.format, c.files, f"{c.total_bytes:,}", c.uri] for c in corpora],
    )


@corpora_app.command("add")
def corpora_add(
    name: Annotated[str, typer.Option(help="A name for the corpus.")],
    uri: Annotated[str, typer.Option(help="Path or glob under an allowed root.")],
    format: Annotated[str, typer.Option(help="jsonl, jsonl.gz, parquet or hf_disk.")],
    text_key: str = "text",
    id_key: str | None = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Register a corpus (validated before it is stored)."""
    with client(base_url, api_key, as_json) as c:
        corpus = c.corpora.create(
            name=name, uri=uri, format=format, text_key=text_key, id_key=id_key
        )
    emit(corpus, as_json, lambda x: corpora_table([x]), quiet)


@corpora_app.command("list")
def corpora_list(as_json: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """This project's corpora."""
    with client(base_url, api_key, as_json) as c:
        emit(list(c.corpora.list()), as_json, corpora_table)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(skills_app, name="skills")
    app.add_typer(corpora_app, name="corpora")
