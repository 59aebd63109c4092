"""The `skillmix` script of the server distribution: the whole command, or what to install
when a part is missing (`pip install skillmix` alone brings the libraries, no command)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from service.cli import build_app

        app = build_app()
    except ModuleNotFoundError as exc:
        if exc.name not in {"typer", "click", "rich", "yaml", "skillmix_client"}:
            raise
        sys.stderr.write(
            f"error: the skillmix command needs skillmix's service extra ({exc.name} is not "
            "installed): pip install 'skillmix[service]' (server and client verbs), or "
            "pip install 'skillmix-client[cli]' (client verbs only)\n"
        )
        sys.exit(2)
    app()
