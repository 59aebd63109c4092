"""The server's command-line verbs (`serve`, `worker`, `db`, `keys`, `demo`), plugged into
the SDK's `skillmix` command through the `skillmix.cli` entry point (`register`)."""

from __future__ import annotations

import typer

from service.cli.server import build_app, main, register, server_app

__all__ = ["build_app", "main", "register", "server_app"]


def __getattr__(name: str) -> typer.Typer:
    # `service.cli.app`, built on first use: loading this package as the SDK's entry point
    # must not import the SDK's command back.
    if name == "app":
        return build_app()
    raise AttributeError(name)
