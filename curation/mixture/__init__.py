"""Mixtures: reweighted, spaced datasets with repetition caps, a manifest and an audit.

    plan = plan_mixture(scan_report, skills, DosingPlan(...))   # pure; PlanError, warnings
    result = build_mixture(source, skills, plan, out_dir, allowed_roots=[...])
    audit = audit_mixture(out_dir, skills)                      # re-scan any time

The output directory follows docs/mixture-format.md.
"""

from curation.mixture.audit import DEFAULT_TOLERANCE, AuditFailed, audit_mixture
from curation.mixture.build import build_mixture
from curation.mixture.danger import DANGER_EXPOSURES, DANGER_REPEATED_SHARE
from curation.mixture.models import DosingPlan, Every, SkillDose, Target
from curation.mixture.plan import MixturePlan, PlanError, SkillPlan, plan_mixture

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
    "audit_mixture",
    "build_mixture",
    "plan_mixture",
]
