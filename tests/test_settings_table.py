"""The README's settings table names every setting of the one settings object, and nothing
else, with the default the object has: it cannot drift from service/settings.py."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def table_rows() -> dict[str, str]:
    """`variable` cells of the "## Configuration" table -> their default cell."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            names = re.findall(r"`([A-Z_]+)`", cells[0])
            defaults = [d.strip() for d in cells[1].split(",")]
            if len(defaults) != len(names):  # one default for the row, in prose
                defaults = [cells[1]] * len(names)
            rows.update(zip(names, defaults, strict=True))
    return rows


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"SKILLMIX_{field.upper()}"


def test_every_setting_is_in_the_readme_table_and_nothing_else() -> None:
    documented = set(table_rows())
    expected = {env_name(f) for f in Settings.model_fields}
    assert documented - expected == set(), "README rows for settings that do not exist"
    assert expected - documented == set(), "settings missing from the README table"


def test_plain_defaults_in_the_table_are_the_objects() -> None:
    """Where the table gives a literal default (a number or a word in backticks), it is the
    settings object's own; prose defaults ("the data dir") are computed ones."""
    rows = table_rows()
    for field, info in Settings.model_fields.items():
        cell = rows[env_name(field)]
        literal = re.fullmatch(r"`([^`]+)`", cell)
        default = info.get_default(call_default_factory=True)
        if literal is None or default is None:
            continue
        if isinstance(default, list):
            default = ",".join(default)
        elif isinstance(default, float):
            default = f"{default:g}"
        assert literal.group(1) == str(default), (field, cell)
