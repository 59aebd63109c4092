"""Skills: versioned detectors, generators and probe sets. PATCH makes a new version."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skillmix_client._core import APICall, path_param
from skillmix_client._resource import (
    AsyncResource,
    SyncResource,
    async_call,
    async_list,
    list_call,
    sync_call,
    sync_list,
)
from skillmix_client._types import NOT_GIVEN, NotGiven, body_of
from skillmix_client.types import Page, Skill, SkillFamily, SkillPreview

OptionalDict = Mapping[str, Any] | None


def _path(skill_id: str, *rest: str) -> str:
    return "/".join(["/v1/skills", path_param(skill_id), *rest])


def create(
    *,
    name: str,
    detector: Mapping[str, Any],
    description: str | NotGiven = NOT_GIVEN,
    generator: OptionalDict | NotGiven = NOT_GIVEN,
    probe: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    idempotency_key: str | None = None,
    extra_body: OptionalDict = None,
) -> APICall[Skill]:
    """Register a skill. `detector`: `{"kind": "regex", "pattern": ...}`,
    `{"kind": "keywords", "keywords": [...], "case_sensitive": False}` or `{"kind": "builtin"}`;
    `generator`: `{"family": ..., "params": {...}}`; `probe`: `{"fraction": 0.5}`."""
    fields = {
        "name": name,
        "description": description,
        "detector": detector,
        "generator": generator,
        "probe": probe,
    }
    return APICall(
        "POST",
        "/v1/skills",
        Skill.model_validate,
        body=body_of(fields, extra_body),
        idempotency_key=idempotency_key,
    )


def list_(*, limit: int | None = None, after: str | None = None) -> APICall[Page[Skill]]:
    """This project's skills, newest first, across all pages."""
    return list_call("/v1/skills", Skill, limit, after)


def retrieve(skill_id: str) -> APICall[Skill]:
    """One skill (its latest version)."""
    return APICall("GET", _path(skill_id), Skill.model_validate)


def update(
    skill_id: str,
    *,
    name: str | NotGiven = NOT_GIVEN,
    description: str | NotGiven = NOT_GIVEN,
    detector: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    generator: OptionalDict | NotGiven = NOT_GIVEN,
    probe: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    extra_body: OptionalDict = None,
) -> APICall[Skill]:
    """Change a skill, making a new version; only the arguments given are sent
    (`generator=None` removes the generator)."""
    fields = {
        "name": name,
        "description": description,
        "detector": detector,
        "generator": generator,
        "probe": probe,
    }
    return APICall("PATCH", _path(skill_id), Skill.model_validate, body=body_of(fields, extra_body))


def delete(skill_id: str) -> APICall[None]:
    """Delete a skill."""
    return APICall("DELETE", _path(skill_id), lambda _: None)


def preview(
    skill_id: str,
    *,
    text: str | NotGiven = NOT_GIVEN,
    samples: int | NotGiven = NOT_GIVEN,
    probe_samples: int | NotGiven = NOT_GIVEN,
    seed: int | NotGiven = NOT_GIVEN,
    version: int | NotGiven = NOT_GIVEN,
    extra_body: OptionalDict = None,
) -> APICall[SkillPreview]:
    """Match the detector against `text`; sample `samples` train-split and `probe_samples`
    held-out instances (of `version`, default the latest)."""
    fields = {
        "text": text,
        "samples": samples,
        "probe_samples": probe_samples,
        "seed": seed,
        "version": version,
    }
    return APICall(
        "POST",
        _path(skill_id, "preview"),
        SkillPreview.model_validate,
        body=body_of(fields, extra_body),
    )


def _families(body: Any) -> list[SkillFamily]:
    items = body["data"] if isinstance(body, dict) else body
    return [SkillFamily.model_validate(item) for item in items]


def families() -> APICall[list[SkillFamily]]:
    """The built-in generator families and their parameters (`GET /v1/skill-families`)."""
    return APICall("GET", "/v1/skill-families", _families)


class Skills(SyncResource):
    create = sync_call(create)
    list = sync_list(list_)
    retrieve = sync_call(retrieve)
    update = sync_call(update)
    delete = sync_call(delete)
    preview = sync_call(preview)
    families = sync_call(families)


class AsyncSkills(AsyncResource):
    create = async_call(create)
    list = async_list(list_)
    retrieve = async_call(retrieve)
    update = async_call(update)
    delete = async_call(delete)
    preview = async_call(preview)
    families = async_call(families)
