"""Which install part (pyproject.toml's extras) a command needs, checked before it imports
it: typer and the standard library only, so the check itself runs in any install."""

from __future__ import annotations

import importlib.util

import typer

# What each install part brings (pyproject.toml's extras), checked before a verb imports it.
EXTRAS = {
    "service": ("fastapi", "uvicorn", "sqlalchemy", "alembic", "celery", "pydantic_settings"),
    "training": ("torch",),
    "tracking": ("mlflow",),
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
