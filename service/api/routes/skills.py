"""Skills: versioned definitions (detector, generator, probe). PATCH makes a new version."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select

from curation.skills.families import family_catalog
from curation.skills.matcher import SkillMatcher
from curation.skills.preview import MAX_PREVIEW_MATCHES
from curation.skills.probes import probe_instances, sample_instances
from curation.skills.spec import SkillDefinition
from service import skill_store as store
from service.api.deps import CurrentProject, IdempotencyKey, PageDep, SessionDep
from service.api.errors import Problem, from_validation_error, not_found
from service.api.idempotency import create_once
from service.api.pagination import paginate
from service.models import Skill, SkillVersion
from service.schemas import (
    MAX_INT32,
    FamiliesPublic,
    InstancePublic,
    MatchPublic,
    PreviewPublic,
    PreviewRequest,
    SkillPublic,
    SkillsPublic,
    SkillUpdate,
    refuse_nul,
)

router = APIRouter(tags=["skills"])


def public(skill: Skill, row: SkillVersion) -> SkillPublic:
    return SkillPublic(
        id=skill.id,
        version=row.version,
        latest_version=skill.latest_version,
        created_at=skill.created_at,
        updated_at=row.created_at,
        **row.spec,
    )


def _name_conflict(name: str) -> Problem:
    return Problem(
        409,
        "name-taken",
        "Skill name taken",
        f"This project already has a skill named {name!r}; pick another name or "
        "PATCH the existing skill to make a new version.",
    )


def _load(
    session: SessionDep, project_id: str, skill_id: str, version: int | None = None
) -> tuple[Skill, SkillVersion]:
    skill = store.get_skill(session, project_id, skill_id)
    if skill is None:
        raise not_found("Skill", skill_id)
    row = store.get_version(session, skill.id, version or skill.latest_version)
    if row is None:
        raise Problem(
            404,
            "not-found",
            "Skill version not found",
            f"Skill {skill_id} has versions 1..{skill.latest_version}.",
        )
    return skill, row


SKILL_EXAMPLE = {
    "name": "mod-add-97",
    "description": "a + b mod 97 = c",
    "detector": {"kind": "regex", "pattern": "\\b\\d+ \\+ \\d+ mod 97 = \\d+"},
    "generator": {"family": "modular_addition", "params": {"modulus": 97}},
    "probe": {"fraction": 0.5},
}


@router.post(
    "/v1/skills", operation_id="skills_create", status_code=201, response_model=SkillPublic
)
def create_skill(
    *,
    body: Annotated[SkillDefinition, Body(examples=[SKILL_EXAMPLE])],
    request: Request,
    session: SessionDep,
    project: CurrentProject,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Register a skill (version 1)."""
    try:
        refuse_nul(body.model_dump(mode="json"))  # as every other body (see StrictModel)
    except ValueError as exc:
        raise Problem(422, "validation-error", "Invalid request", f"body: {exc}") from None

    def create() -> tuple[dict[str, Any], None]:
        if store.name_taken(session, project.id, body.name):
            raise _name_conflict(body.name)
        skill = store.add_skill(session, project.id, body)
        row = store.get_version(session, skill.id, 1)
        assert row is not None
        return public(skill, row).model_dump(mode="json"), None

    return create_once(
        session,
        request,
        body,
        project_id=project.id,
        key=idempotency_key,
        status_code=201,
        create=create,
    )


@router.get("/v1/skills", operation_id="skills_list", response_model=SkillsPublic)
def list_skills(*, session: SessionDep, project: CurrentProject, page: PageDep) -> SkillsPublic:
    """This project's skills (latest versions), newest first."""
    stmt = select(Skill).where(Skill.project_id == project.id, Skill.deleted_at.is_(None))

    versions: dict[str, SkillVersion] = {}

    def prefetch(skills: list[Skill]) -> None:
        versions.update(store.latest_versions(session, [skill.id for skill in skills]))

    def latest(skill: Skill) -> SkillPublic:
        return public(skill, versions[skill.id])

    return SkillsPublic.model_validate(
        paginate(session, stmt, Skill.id, page, latest, prefetch=prefetch)
    )


@router.get("/v1/skills/{skill_id}", operation_id="skills_retrieve", response_model=SkillPublic)
def read_skill(
    *,
    skill_id: str,
    session: SessionDep,
    project: CurrentProject,
    version: Annotated[int | None, Query(ge=1, le=MAX_INT32)] = None,
) -> SkillPublic:
    """One skill, at its latest version or the one asked for."""
    return public(*_load(session, project.id, skill_id, version))


@router.patch("/v1/skills/{skill_id}", operation_id="skills_update", response_model=SkillPublic)
def update_skill(
    *, skill_id: str, body: SkillUpdate, session: SessionDep, project: CurrentProject
) -> SkillPublic:
    """Change a skill: the result is a new version; earlier versions never change."""
    skill, current = _load(session, project.id, skill_id)
    changes = body.model_dump(exclude_unset=True)
    try:
        definition = SkillDefinition.model_validate(store.merged_definition(current.spec, changes))
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    if store.name_taken(session, project.id, definition.name, except_id=skill.id):
        raise _name_conflict(definition.name)
    row = store.add_version(session, skill, definition)
    session.commit()
    return public(skill, row)


@router.delete(
    "/v1/skills/{skill_id}", operation_id="skills_delete", status_code=204, response_class=Response
)
def delete_skill(*, skill_id: str, session: SessionDep, project: CurrentProject) -> Response:
    """Delete a skill; scans and mixtures that used it keep their versions."""
    skill, _ = _load(session, project.id, skill_id)
    store.delete_skill(skill)
    session.commit()
    return Response(status_code=204)


@router.post(
    "/v1/skills/{skill_id}/preview", operation_id="skills_preview", response_model=PreviewPublic
)
def preview_skill(
    *, skill_id: str, body: PreviewRequest, session: SessionDep, project: CurrentProject
) -> PreviewPublic:
    """Run the detector on a text, and sample train and held-out (probe) instances."""
    skill, row = _load(session, project.id, skill_id, body.version)
    spec = store.to_spec(skill.id, row)
    probe_keys = store.cached_probe_match_keys(spec)
    first, complete = SkillMatcher([spec]).first_matches(body.text, spec.id, MAX_PREVIEW_MATCHES)
    matches = [
        MatchPublic(
            start=m.start,
            end=m.end,
            text=body.text[m.start : m.end],
            key=m.key,
            in_probe=m.key in probe_keys,
        )
        for m in first
    ]
    samples: list[InstancePublic] = []
    probe: list[InstancePublic] = []
    if spec.generator is not None:
        try:
            samples = [
                InstancePublic(**asdict(i))
                for i in sample_instances(spec, body.samples, seed=body.seed)
            ]
        except ValueError as exc:
            raise Problem(422, "empty-split", "Cannot sample the train split", str(exc)) from None
        probe = [InstancePublic(**asdict(i)) for i in probe_instances(spec, body.probe_samples)]
    return PreviewPublic(
        skill_id=skill.id,
        version=row.version,
        matches=matches,
        matches_truncated=not complete,
        samples=samples,
        probe=probe,
    )


@router.get("/v1/skill-families", operation_id="skill_families_list", response_model=FamiliesPublic)
def list_families(*, project: CurrentProject) -> FamiliesPublic:
    """The built-in generator families, with a JSON schema of each one's parameters."""
    return FamiliesPublic.model_validate({"data": family_catalog()})
