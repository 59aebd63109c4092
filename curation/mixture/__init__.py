"""Mixtures: reweighted, spaced datasets with repetition caps, a manifest and an audit.

    plan = plan_mixture(scan_report, skills, DosingPlan(...))   # pure; PlanError, warnings
    result = build_mixture(source, skills, plan, out_dir, allowed_roots=[...])
    audit = audit_mixture(out_dir, skills)                      # re-scan any time

A mixture in a Hugging Face tokenizer: `DosingPlan(..., tokenizer={"kind": "hf", "path":
".../tokenizer.json"})`, planned from a scan that counted in it (`run_scan(tokens=path)`).

The output directory follows docs/mixture-format.md; its constants are in
`curation.mixture.format`. The names below are imported when first used, so a reader of
the format (training) does not load the build's pipeline machinery (datatrove).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curation.mixture.audit import DEFAULT_TOLERANCE, AuditFailed, audit_mixture
    from curation.mixture.build import build_mixture
    from curation.mixture.danger import DANGER_EXPOSURES, DANGER_REPEATED_SHARE
    from curation.mixture.models import DosingPlan, Every, SkillDose, Target
    from curation.mixture.plan import MixturePlan, PlanError, SkillPlan, plan_mixture
    from curation.mixture.tokenizer import TokenizerSpec, load_tokenizer

_WHERE = {  # name -> its module
    "DANGER_EXPOSURES": "danger",
    "DANGER_REPEATED_SHARE": "danger",
    "DEFAULT_TOLERANCE": "audit",
    "AuditFailed": "audit",
    "DosingPlan": "models",
    "Every": "models",
    "MixturePlan": "plan",
    "PlanError": "plan",
    "SkillDose": "models",
    "SkillPlan": "plan",
    "Target": "models",
    "TokenizerSpec": "tokenizer",
    "audit_mixture": "audit",
    "build_mixture": "build",
    "load_tokenizer": "tokenizer",
    "plan_mixture": "plan",
}

__all__ = [
    "DANGER_EXPOSURES",
    "DANGER_REPEATED_SHARE",
    "DEFAULT_TOLERANCE",
    "AuditFailed",
    "DosingPlan",
    "Every",
    "MixturePlan",
    "PlanError",
    "SkillDose",
    "SkillPlan",
    "Target",
    "TokenizerSpec",
    "audit_mixture",
    "build_mixture",
    "load_tokenizer",
    "plan_mixture",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
