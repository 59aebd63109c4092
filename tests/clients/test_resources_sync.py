"""The SDK's resource methods beyond jobs, against the real service."""

from __future__ import annotations

import pytest
from skillmix_client import NotFoundError, Skillmix, UnprocessableEntityError


def test_skills_roundtrip(client: Skillmix) -> None:
    families = {f.family: f for f in client.skills.families()}
    assert "modulus" in (families["modular_addition"].params_schema or {})["properties"]
    skill = client.skills.create(
        name="mod-add-97",
        detector={"kind": "builtin"},
        generator={"family": "modular_addition", "params": {"modulus": 97}},
    )
    preview = client.skills.preview(
        skill.id, text="so 12 + 90 mod 97 = 5 holds", samples=3, probe_samples=2
    )
    assert [m["text"] for m in preview.matches] == ["12 + 90 mod 97 = 5"]
    assert len(preview.samples) == 3 and len(preview.probe) == 2
    updated = client.skills.update(skill.id, description="v2")
    assert (updated.version, updated.latest_version) == (2, 2)
    assert [s.id for s in client.skills.list()] == [skill.id]
    client.skills.delete(skill.id)
    with pytest.raises(NotFoundError):
        client.skills.retrieve(skill.id)


def test_bad_skill_raises_422_with_errors(client: Skillmix) -> None:
    with pytest.raises(UnprocessableEntityError) as info:
        client.skills.create(name="x", detector={"kind": "regex", "pattern": "(a)\\1"})
    assert "backreference" in (info.value.detail or "")
    assert info.value.errors
