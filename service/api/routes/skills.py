"""Skills: versioned definitions (detector, generator, probe). PATCH makes a new version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from service.api.deps import CurrentProject, PageDep, SessionDep
from service.api.errors import Problem, from_validation_error
from service.api.idempotency import CreateOnceDep
from service.api.pagination import paginate
from service.api.schemas import (
    MAX_INT32,
    FamiliesPublic,
    PreviewPublic,
    PreviewRequest,
    SkillDefinition,
    SkillPublic,
    SkillsPublic,
    SkillUpdate,
    refuse_nul,
)
from service.models import Skill, SkillVersion
from service.store import skills as store

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
    *, body: Annotated[SkillDefinition, Body(examples=[SKILL_EXAMPLE])], create: CreateOnceDep
) -> JSONResponse:
    """Register a skill (version 1)."""
    try:
        refuse_nul(body.model_dump(mode="json"))  # as every other body (see StrictModel)
    except ValueError as exc:
        raise Problem(422, "validation-error", "Invalid request", f"body: {exc}") from None
    return create(
        body,
        lambda: (store.create_skill(create.session, create.project_id, body), None),
        present=lambda _, created: public(*created),
        status_code=201,
    )


@router.get("/v1/skills", operation_id="skills_list", response_model=SkillsPublic)
def list_skills(*, session: SessionDep, project: CurrentProject, page: PageDep) -> SkillsPublic:
    """This project's skills (latest versions), newest first."""
    stmt = store.query(project.id)

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
    return public(*store.load(session, project.id, skill_id, version))


@router.patch("/v1/skills/{skill_id}", operation_id="skills_update", response_model=SkillPublic)
def update_skill(
    *, skill_id: str, body: SkillUpdate, session: SessionDep, project: CurrentProject
) -> SkillPublic:
    """Change a skill: the result is a new version; earlier versions never change."""
    skill, current = store.load(session, project.id, skill_id)
    changes = body.model_dump(exclude_unset=True)
    try:
        definition = SkillDefinition.model_validate(store.merged_definition(current.spec, changes))
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    row = store.update_skill(session, skill, definition)
    session.commit()
    return public(skill, row)


@router.delete(
    "/v1/skills/{skill_id}", operation_id="skills_delete", status_code=204, response_class=Response
)
def delete_skill(*, skill_id: str, session: SessionDep, project: CurrentProject) -> Response:
    """Delete a skill; scans and mixtures that used it keep their versions."""
    skill, _ = store.load(session, project.id, skill_id)
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
    skill, row = store.load(session, project.id, skill_id, body.version)
    spec = store.to_spec(skill.id, row)
    found = store.preview(spec, body.text, body.samples, body.seed, body.probe_samples)
    return PreviewPublic.model_validate({"skill_id": skill.id, "version": row.version, **found})


@router.get("/v1/skill-families", operation_id="skill_families_list", response_model=FamiliesPublic)
def list_families(*, project: CurrentProject) -> FamiliesPublic:
    """The built-in generator families, with a JSON schema of each one's parameters."""
    return FamiliesPublic.model_validate({"data": store.families()})
