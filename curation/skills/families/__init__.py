"""Built-in generator families, by name.

To add one: write a module with a `FamilyParams` subclass (every field with a
default or a description) and a `Family` subclass, then list it in FAMILIES.
"""

from __future__ import annotations

import random
import sys
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from curation.skills.families.base import ENUMERATE_LIMIT, Family
from curation.skills.families.copying import Copying
from curation.skills.families.examples import Examples
from curation.skills.families.modular_addition import ModularAddition
from curation.skills.families.multi_digit_addition import MultiDigitAddition
from curation.skills.families.number_comparison import NumberComparison
from curation.skills.families.token_pair import TokenPair

FAMILIES: dict[str, type[Family]] = {
    family.name: family
    for family in (
        ModularAddition,
        NumberComparison,
        TokenPair,
        Copying,
        MultiDigitAddition,
        Examples,
    )
}

__all__ = [
    "ENUMERATE_LIMIT",
    "FAMILIES",
    "Family",
    "build_family",
    "family_catalog",
    "validate_params",
]


def _family_class(name: str) -> type[Family]:
    if name not in FAMILIES:
        raise ValueError(
            f"unknown generator family {name!r}; known families: {', '.join(FAMILIES)}"
        )
    return FAMILIES[name]


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Params with defaults filled in, or ValueError naming each offending field."""
    family = _family_class(name)
    try:
        return family.Params.model_validate(params).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'params'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ValueError(f"invalid params for family {name!r}: {problems}") from None


def build_family(name: str, params: dict[str, Any]) -> Family:
    family = _family_class(name)
    return family(family.Params.model_validate(params))


def family_catalog() -> list[dict[str, Any]]:
    """Every family: description, JSON schema of its params, an instance with default params."""
    catalog = []
    for name, family in FAMILIES.items():
        try:
            example = build_family(name, {}).draw(random.Random(0))
        except ValidationError:  # a family whose params have no defaults (examples)
            example = None
        catalog.append(
            {
                "family": name,
                "description": (sys.modules[family.__module__].__doc__ or "").strip(),
                "params_schema": family.Params.model_json_schema(),
                "finite_limit": ENUMERATE_LIMIT,
                "example": None if example is None else asdict(example),
            }
        )
    return catalog
