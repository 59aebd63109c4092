"""Skills in the database: append-only versions of a `curation` skill definition."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from curation.skills.families import family_catalog
from curation.skills.matcher import SkillMatcher
from curation.skills.preview import MAX_PREVIEW_MATCHES
from curation.skills.probes import probe_instances, probe_match_keys, sample_instances
from curation.skills.spec import SkillDefinition, SkillSpec
from service.models import Skill, SkillVersion, utcnow
from service.problems import Problem, not_found


def query(project_id: str) -> Select[Skill]:
    """The project's skills (not deleted), for a page."""
    return select(Skill).where(Skill.project_id == project_id, Skill.deleted_at.is_(None))


def get_skill(session: Session, project_id: str, skill_id: str) -> Skill | None:
    skill = session.get(Skill, skill_id)
    if skill is None or skill.project_id != project_id or skill.deleted_at is not None:
        return None
    return skill


def load(
    session: Session, project_id: str, skill_id: str, version: int | None = None
) -> tuple[Skill, SkillVersion]:
    """The project's skill at `version` (default: its latest); 404 for either missing."""
    skill = get_skill(session, project_id, skill_id)
    if skill is None:
        raise not_found("Skill", skill_id)
    row = get_version(session, skill.id, version or skill.latest_version)
    if row is None:
        raise Problem(
            404,
            "not-found",
            "Skill version not found",
            f"Skill {skill_id} has versions 1..{skill.latest_version}.",
        )
    return skill, row


def load_specs(session: Session, refs: list[dict[str, Any]]) -> list[SkillSpec]:
    """The pinned skill versions `[{"id", "version"}, ...]` a scan or mixture uses."""
    specs = []
    for ref in refs:
        row = get_version(session, ref["id"], ref["version"])
        if row is None:
            raise LookupError(f"skill {ref['id']} version {ref['version']} is missing")
        specs.append(to_spec(ref["id"], row))
    return specs


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


def name_conflict(name: str) -> Problem:
    return Problem(
        409,
        "name-taken",
        "Skill name taken",
        f"This project already has a skill named {name!r}; pick another name or "
        "PATCH the existing skill to make a new version.",
    )


def create_skill(
    session: Session, project_id: str, definition: SkillDefinition
) -> tuple[Skill, SkillVersion]:
    """Version 1 of a new skill; 409 when the project has a live skill of that name."""
    if name_taken(session, project_id, definition.name):
        raise name_conflict(definition.name)
    skill = add_skill(session, project_id, definition)
    row = get_version(session, skill.id, 1)
    assert row is not None
    return skill, row


def update_skill(session: Session, skill: Skill, definition: SkillDefinition) -> SkillVersion:
    """A new version (409 if its name is another live skill's)."""
    if name_taken(session, skill.project_id, definition.name, except_id=skill.id):
        raise name_conflict(definition.name)
    return add_version(session, skill, definition)


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


def preview(
    spec: SkillSpec, text: str, samples: int, seed: int, probe_samples: int
) -> dict[str, Any]:
    """The detector's first matches in `text` (each marked if it is a probe instance), and
    sampled train and probe instances of the skill's generator."""
    probe_keys = cached_probe_match_keys(spec)
    first, complete = SkillMatcher([spec]).first_matches(text, spec.id, MAX_PREVIEW_MATCHES)
    matches = [
        {
            "start": m.start,
            "end": m.end,
            "text": text[m.start : m.end],
            "key": m.key,
            "in_probe": m.key in probe_keys,
        }
        for m in first
    ]
    train: list[dict[str, Any]] = []
    probe: list[dict[str, Any]] = []
    if spec.generator is not None:
        try:
            train = [asdict(i) for i in sample_instances(spec, samples, seed=seed)]
        except ValueError as exc:
            raise Problem(422, "empty-split", "Cannot sample the train split", str(exc)) from None
        probe = [asdict(i) for i in probe_instances(spec, probe_samples)]
    return {
        "matches": matches,
        "matches_truncated": not complete,
        "samples": train,
        "probe": probe,
    }


def families() -> list[dict[str, Any]]:
    """The built-in generator families, with a JSON schema of each one's parameters."""
    return family_catalog()
