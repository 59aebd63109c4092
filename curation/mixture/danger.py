"""Warnings for plans that enter the repeated-data danger zone (SCIENCE.md section 3).

Hernandez et al. 2022 (arXiv:2205.10487): repeating 0.1% of the data 100 times,
so that 10% of the training tokens were repeats, degraded an 800M model to the
level of a 400M one; the damage peaks where the repeated slice can be memorised,
and copying/induction heads suffer most. A rare skill's unique instances are
exactly such a small slice, so a plan is flagged on both axes of that example,
one order of magnitude before it: exposures per unique instance, and the share
of the mixture's tokens that are repeated copies. The thresholds are judgement
calls (the paper gives one harmful point, not a boundary), hence parameters of
`plan_mixture`.
"""

from __future__ import annotations

from typing import Any

DANGER_EXPOSURES = 10.0
"""Mean exposures per unique instance (corpus copies + placed copies) from which a plan
is warned: a tenth of the paper's 100 repeats of a 0.1% slice."""

DANGER_REPEATED_SHARE = 0.01
"""Share of the mixture's tokens in repeated copies from which a plan is warned: a tenth
of the paper's 10% of tokens (0.1% of the data x 100)."""

PAPER = "Hernandez et al. 2022: 0.1% of the data repeated 100x (10% of tokens) cost an 800M "
PAPER += "model half its effective size"


def warning(kind: str, message: str, skill_id: str | None = None, **numbers: Any) -> dict:
    """One plan warning: a stable `kind`, a message for a person, and the numbers behind it."""
    return {"kind": kind, "skill_id": skill_id, "message": message, **numbers}


def skill_label(skill_id: str, name: str | None = None) -> str:
    """A skill as a message names it for a person: by its name; by its id only without one
    (the id stays in the warning's `skill_id`)."""
    return f"skill {name!r}" if name else f"skill {skill_id}"


def repetition_warnings(
    skill_id: str,
    exposures: float,
    unique: int,
    repeated_tokens: float,
    mixture_tokens: int,
    danger_exposures: float = DANGER_EXPOSURES,
    danger_repeated_share: float = DANGER_REPEATED_SHARE,
    *,
    name: str | None = None,
) -> list[dict]:
    """Warnings for one skill; `exposures` is the mean over its `unique` placed instances;
    the messages call the skill by its `name`."""
    label = skill_label(skill_id, name)
    warnings = []
    if unique and exposures >= danger_exposures:
        warnings.append(
            warning(
                "repeated_exposures",
                f"{label}: each of its {unique:,} unique instances would be seen "
                f"{exposures:.1f} times on average (threshold {danger_exposures:g}); a small "
                f"slice repeated this often can be memorised instead of the rule ({PAPER}). "
                "Use source=synthesize with a larger generator, or lower the target.",
                skill_id,
                value=exposures,
                threshold=danger_exposures,
                unique_instances=unique,
            )
        )
    share = repeated_tokens / mixture_tokens if mixture_tokens else 0.0
    if share >= danger_repeated_share:
        warnings.append(
            warning(
                "repeated_token_share",
                f"{label}: repeated copies would take {share:.2%} of the mixture's "
                f"tokens (threshold {danger_repeated_share:.2%}) ({PAPER}). Prefer fresh "
                "instances (source=synthesize), or lower the target.",
                skill_id,
                value=share,
                threshold=danger_repeated_share,
            )
        )
    return warnings
