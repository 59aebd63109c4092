"""The `skillmix` script: the command, or which extra to install when it is missing."""

from __future__ import annotations

import sys

CLI_MODULES = {"typer", "click", "rich", "yaml"}


def main() -> None:
    try:
        from skillmix_client.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if exc.name not in CLI_MODULES:
            raise
        sys.stderr.write(
            f"error: the skillmix command needs the SDK's cli extra ({exc.name} is not "
            "installed): pip install 'skillmix-client[cli]'\n"
        )
        sys.exit(2)
    cli_main()
