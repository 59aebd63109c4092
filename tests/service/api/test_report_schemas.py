"""The report models of the OpenAPI document (service/api/schemas.py) against what the libraries
really write: a real scan, mixture (with its automatic baseline) and verification, and every
key of every report (at any depth) must be a declared field. The models keep unknown keys
(`extra="allow"`), so a drift would otherwise go unnoticed: this test is what catches it."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service.api.schemas import MixtureAudit, MixtureManifest, ScanReport, VerificationReport
from service.cli.embedded import refresh_settings
from service.worker import runner
from tests.service.api.test_mixtures import scanned  # noqa: F401  (fixture)
from tests.service.api.test_verifications import treatment  # noqa: F401  (fixture)
from tests.service.conftest import auth


def undeclared(annotation: Any, value: Any, where: str, seen: set[type]) -> list[str]:
    """Paths in `value` (JSON data) that `annotation` does not declare; `seen` collects the
    models visited. Recursion stops at `Any` (e.g. a skill's stored spec)."""
    if value is None:
        return []
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        return undeclared(models[0], value, where, seen) if models else []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        assert isinstance(value, dict), (where, value)
        seen.add(annotation)
        found = []
        for key, item in value.items():
            field = annotation.model_fields.get(key)
            if field is None:
                found.append(f"{where}.{key} (in {annotation.__name__})")
            else:
                found += undeclared(field.annotation, item, f"{where}.{key}", seen)
        return found
    if origin is list:
        return [
            p
            for i, item in enumerate(value)
            for p in undeclared(args[0], item, f"{where}[{i}]", seen)
        ]
    if origin is dict:
        return [
            p
            for k, item in value.items()
            for p in undeclared(args[1], item, f"{where}[{k!r}]", seen)
        ]
    return []


def check(model: type[BaseModel], report: dict[str, Any], seen: set[type]) -> None:
    model.model_validate(report)  # a response carrying it cannot fail validation (a 500)
    assert undeclared(model, report, model.__name__, seen) == []


def test_every_key_the_libraries_write_is_a_declared_field(
    client: TestClient,
    key_a: str,
    treatment: dict,  # noqa: F811
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("SKILLMIX_TRAINING_WORKERS", "1")
    refresh_settings()
    sid, headers = treatment["skill"]["id"], auth(key_a)

    def result(job_id: str) -> dict[str, Any]:
        """The job's result as stored: the libraries' dicts, not passed through a model."""
        return client.get(f"/v1/jobs/{job_id}", headers=headers).json()["result"]

    seen: set[type] = set()
    scan = client.get(f"/v1/scans/{treatment['scan']['id']}", headers=headers).json()
    check(ScanReport, result(scan["job"]["id"]), seen)
    # The API passes the report through: the same keys, not one more (no added nulls).
    assert scan["report"] == result(scan["job"]["id"])

    r = client.post(
        "/v1/verifications",
        headers=headers,
        json={
            "arms": {"upweighted": treatment["mixture"]["id"], "baseline": "auto"},
            "skill_ids": [sid],
            "sizes": ["nano"],
            "seeds": [0],
            "token_budget": 8 * 4096,
            "eval_every": 4,
            "device": "cpu",
        },
    )
    assert r.status_code == 202, r.text
    ver = r.json()
    for mixture_id in ver["arms"].values():
        mixture = client.get(f"/v1/mixtures/{mixture_id}", headers=headers).json()
        assert runner.execute(mixture["job"]["id"]) == "succeeded"
        built = result(mixture["job"]["id"])
        check(MixtureManifest, built["manifest"], seen)
        check(MixtureAudit, built["audit"], seen)
        done = client.get(f"/v1/mixtures/{mixture_id}", headers=headers).json()
        assert (done["manifest"], done["audit"]) == (built["manifest"], built["audit"])
    assert runner.execute_all(ver["job"]["id"]) == "succeeded"
    check(VerificationReport, result(ver["job"]["id"]), seen)
    done = client.get(f"/v1/verifications/{ver['id']}", headers=headers).json()
    assert done["report"] == result(ver["job"]["id"])
    # The run went deep enough to mean something: the nested models were all reached.
    names = {m.__name__ for m in seen}
    assert {"SkillFrequency", "GapSummary", "PlannedSkill", "SkillAudit", "Verdict"} <= names
    assert {"EffectVsBaseline", "RunEvaluation", "SkillScores", "CorpusChange"} <= names


def test_the_openapi_document_describes_every_report_field() -> None:
    """Each report model is a described object in the document, not a bare `object` (which
    a serializer's return annotation would make it)."""
    from service.api import schemas
    from service.api.app import app

    components = app.openapi()["components"]["schemas"]
    reports = [
        model
        for model in vars(schemas).values()
        if isinstance(model, type) and issubclass(model, schemas.Report) and model.model_fields
    ]
    assert len(reports) > 40
    for model in reports:
        assert set(components[model.__name__]["properties"]) == set(model.model_fields), model
    report = components["ScanPublic"]["properties"]["report"]["anyOf"][0]
    assert report == {"$ref": "#/components/schemas/ScanReport"}
