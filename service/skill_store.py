"""Skills in the database: append-only versions of a `curation` skill definition."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from curation.skills.probes import probe_match_keys
from curation.skills.spec import SkillDefinition, SkillSpec
from service.models import Skill, SkillVersion, utcnow


def get_skill(session: Session, project_id: str, skill_id: str) -> Skill | None:
    skill = session.get(Skill, skill_id)
    if skill is None or skill.project_id != project_id or skill.deleted_at is not None:
        return None
    return skill


def get_version(session: Session, skill_id: str, version: int) -> SkillVersion | None:
    return session.scalar(
        select(SkillVersion).where(
            SkillVersion.skill_id == skill_id, SkillVersion.version == version
        )
    )


def latest_versions(session: Session, skill_ids: list[str]) -> dict[str, SkillVersion]:
    """The latest version of each skill, in one query (a page of skills, not one each)."""
    if not skill_ids:
        return {}
    rows = session.scalars(
        select(SkillVersion)
        .join(
            Skill,
            (Skill.id == SkillVersion.skill_id) & (Skill.latest_version == SkillVersion.version),
        )
        .where(Skill.id.in_(skill_ids))
    )
    return {row.skill_id: row for row in rows}


def name_taken(session: Session, project_id: str, name: str, except_id: str = "") -> bool:
    found = session.scalar(
        select(Skill.id).where(
            Skill.project_id == project_id, Skill.active_name == name, Skill.id != except_id
        )
    )
    return found is not None


def add_skill(session: Session, project_id: str, definition: SkillDefinition) -> Skill:
    skill = Skill(
        project_id=project_id, name=definition.name, active_name=definition.name, latest_version=1
    )
    session.add(skill)
    session.flush()
    session.add(SkillVersion(skill_id=skill.id, version=1, spec=definition.model_dump(mode="json")))
    session.flush()
    return skill


def add_version(session: Session, skill: Skill, definition: SkillDefinition) -> SkillVersion:
    """Record a new version; earlier versions (and whatever used them) stay as they were."""
    skill.latest_version += 1
    skill.name = skill.active_name = definition.name
    skill.updated_at = utcnow()
    row = SkillVersion(
        skill_id=skill.id, version=skill.latest_version, spec=definition.model_dump(mode="json")
    )
    session.add(row)
    session.flush()
    return row


def delete_skill(skill: Skill) -> None:
    """Hide the skill and free its name; its versions stay for the scans that used them."""
    skill.deleted_at = utcnow()
    skill.active_name = None


_PROBE_KEYS: dict[tuple[str, int], frozenset[str]] = {}


def cached_probe_match_keys(spec: SkillSpec) -> frozenset[str]:
    """Probe match keys per skill version (versions never change, so this never goes stale;
    computing them can take seconds for a large family)."""
    key = (spec.id, spec.version)
    if key not in _PROBE_KEYS:
        if len(_PROBE_KEYS) > 256:
            _PROBE_KEYS.clear()
        _PROBE_KEYS[key] = probe_match_keys(spec) if spec.generator else frozenset()
    return _PROBE_KEYS[key]


def to_spec(skill_id: str, row: SkillVersion) -> SkillSpec:
    return SkillSpec.model_validate({**row.spec, "id": skill_id, "version": row.version})


def merged_definition(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A PATCH body applied to the current definition (top-level fields replace)."""
    return {**current, **changes}
