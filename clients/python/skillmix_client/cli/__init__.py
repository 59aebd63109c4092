"""The `skillmix` command's client verbs (jobs, skills, corpora, scans, mixtures,
verifications), shipped with the SDK as openai-python ships its CLI: they speak HTTP and
need only `pip install 'skillmix-client[cli]'`.

The server distribution (`skillmix[service]`) adds its verbs (serve, worker, db, keys,
demo) through the `skillmix.cli` entry-point group: each entry is a function that takes
the root `typer.Typer` and registers commands on it. Both distributions install a
`skillmix` script; whichever wins, it builds the same command from what is installed.
"""

from __future__ import annotations

import contextlib
import logging
from importlib import metadata
from typing import Annotated

import typer

from skillmix_client._version import __version__
from skillmix_client.cli import _resources, _runs, _studies
from skillmix_client.cli._common import console
from skillmix_client.cli._runs import audit_table, frequency_table, verdict_table
from skillmix_client.cli._studies import study_table

# The tables are public: `skillmix demo` prints them too.
__all__ = [
    "audit_table",
    "console",
    "frequency_table",
    "main",
    "make_app",
    "study_table",
    "verdict_table",
]

PLUGIN_GROUP = "skillmix.cli"
log = logging.getLogger("skillmix_client.cli")


def _versions() -> str:
    parts = [f"skillmix-client {__version__}"]
    with contextlib.suppress(metadata.PackageNotFoundError):  # the SDK alone
        parts.insert(0, f"skillmix {metadata.version('skillmix')}")
    return ", ".join(parts)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(_versions())
        raise typer.Exit()


def make_app(*, plugins: bool = True) -> typer.Typer:
    """A fresh root command: the client verbs, then (with `plugins`) every installed
    `skillmix.cli` entry point's verbs."""
    app = typer.Typer(
        help="skillmix: rare-skill upweighting for pretraining data.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        version: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=_show_version,
                is_eager=True,
                help="Print the installed skillmix versions and exit.",
            ),
        ] = False,
    ) -> None:
        """skillmix: rare-skill upweighting for pretraining data."""

    _resources.register(app)
    _runs.register(app)
    _studies.register(app)
    if plugins:
        for entry in metadata.entry_points(group=PLUGIN_GROUP):
            entry.load()(app)
    return app


def main() -> None:
    """The `skillmix` script of the SDK distribution."""
    make_app()()
