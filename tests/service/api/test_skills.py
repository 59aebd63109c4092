"""The skills resource: versions, preview with planted instances, safe detectors, limits,
and project isolation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from curation.skills.preview import MAX_PREVIEW_MATCHES
from service.db import session_scope
from service.models import Skill, SkillVersion
from tests.service.conftest import auth

MOD97 = {
    "name": "mod-add-97",
    "description": "modular addition",
    "detector": {"kind": "regex", "pattern": r"\b\d+ \+ \d+ mod 97 = \d+"},
    "generator": {"family": "modular_addition", "params": {"modulus": 97}},
    "probe": {"fraction": 0.5},
}


def add(client: TestClient, key: str, body: dict) -> dict:
    r = client.post("/v1/skills", json=body, headers=auth(key))
    assert r.status_code == 201, r.text
    return r.json()


def counts() -> tuple[int, int]:
    with session_scope() as s:
        return (
            s.scalar(select(func.count()).select_from(Skill)) or 0,
            s.scalar(select(func.count()).select_from(SkillVersion)) or 0,
        )


def test_create_read_list_patch_makes_versions(client: TestClient, key_a: str) -> None:
    skill = add(client, key_a, MOD97)
    assert skill["version"] == 1 and skill["name"] == "mod-add-97"
    assert skill["generator"]["params"]["modulus"] == 97
    r = client.patch(f"/v1/skills/{skill['id']}", json={"description": "v2"}, headers=auth(key_a))
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["latest_version"]) == (2, 2)
    v1 = client.get(f"/v1/skills/{skill['id']}", params={"version": 1}, headers=auth(key_a))
    assert v1.json()["description"] == "modular addition"  # old version unchanged
    assert (
        client.get(f"/v1/skills/{skill['id']}", headers=auth(key_a)).json()["description"] == "v2"
    )
    listed = client.get("/v1/skills", headers=auth(key_a)).json()
    assert [s["id"] for s in listed["data"]] == [skill["id"]]


def test_preview_returns_exactly_the_planted_instances(client: TestClient, key_a: str) -> None:
    regex = add(client, key_a, MOD97)
    keywords = add(
        client,
        key_a,
        {
            "name": "langs",
            "detector": {
                "kind": "keywords",
                "keywords": ["OCaml", "Rust"],
                "case_sensitive": False,
            },
        },
    )
    builtin = add(
        client,
        key_a,
        {
            "name": "cmp",
            "detector": {"kind": "builtin"},
            "generator": {"family": "number_comparison", "params": {}},
        },
    )
    text = "We know 12 + 90 mod 97 = 5 and rust, ocaml (not Rusty). "
    cmp_sample = client.post(
        f"/v1/skills/{builtin['id']}/preview", json={"samples": 1}, headers=auth(key_a)
    ).json()["samples"][0]["text"]
    text += cmp_sample + " end"
    expected = {
        regex["id"]: [("12 + 90 mod 97 = 5", text.index("12 + 90"))],
        keywords["id"]: [("rust", text.index("rust")), ("ocaml", text.index("ocaml"))],
        builtin["id"]: [(cmp_sample, text.index(cmp_sample))],
    }
    for skill_id, planted in expected.items():
        r = client.post(f"/v1/skills/{skill_id}/preview", json={"text": text}, headers=auth(key_a))
        assert r.status_code == 200, r.text
        got = [(m["text"], m["start"]) for m in r.json()["matches"]]
        assert got == planted, skill_id
        assert r.json()["matches_truncated"] is False
        for m in r.json()["matches"]:
            assert text[m["start"] : m["end"]] == m["text"]


def test_preview_samples_train_and_probe_disjoint(client: TestClient, key_a: str) -> None:
    skill = add(
        client,
        key_a,
        {
            "name": "pairs",
            "detector": {"kind": "builtin"},
            "generator": {"family": "token_pair", "params": {}},
        },
    )
    r = client.post(
        f"/v1/skills/{skill['id']}/preview",
        json={"samples": 50, "probe_samples": 50},
        headers=auth(key_a),
    ).json()
    assert len(r["samples"]) == 50 and len(r["probe"]) == 50
    assert not {i["key"] for i in r["samples"]} & {i["key"] for i in r["probe"]}
    probe_text = r["probe"][0]["text"]
    hit = client.post(
        f"/v1/skills/{skill['id']}/preview", json={"text": probe_text}, headers=auth(key_a)
    ).json()["matches"]
    assert [m["in_probe"] for m in hit] == [True]


def test_unsafe_and_absurd_definitions_are_4xx_and_store_nothing(
    client: TestClient, key_a: str
) -> None:
    bad = [
        ({"name": "b", "detector": {"kind": "regex", "pattern": r"(a+)\1"}}, "backreference"),
        ({"name": "b", "detector": {"kind": "regex", "pattern": r"foo(?=bar)"}}, "look"),
        ({"name": "b", "detector": {"kind": "regex", "pattern": ""}}, "pattern"),
        ({"name": "b", "detector": {"kind": "keywords", "keywords": []}}, "keywords"),
        ({"name": "b", "detector": {"kind": "keywords", "keywords": ["x" * 300]}}, "keywords"),
        (
            {"name": "b", "detector": {"kind": "builtin"}, "generator": {"family": "telepathy"}},
            "unknown generator family",
        ),
        (
            {
                "name": "b",
                "detector": {"kind": "builtin"},
                "generator": {"family": "modular_addition", "params": {"modulus": -5}},
            },
            "modulus",
        ),
        ({"name": "b", "detector": {"kind": "builtin"}}, "needs a generator"),
        ({"name": "b", "detector": {"kind": "sorcery"}}, "detector"),
        ({"detector": {"kind": "regex", "pattern": "x"}}, "name"),
    ]
    for body, needle in bad:
        r = client.post("/v1/skills", json=body, headers=auth(key_a))
        assert r.status_code == 422, (body, r.text)
        assert needle in r.json()["detail"], (needle, r.json()["detail"])
    assert counts() == (0, 0)
    skill = add(client, key_a, MOD97)
    r = client.patch(
        f"/v1/skills/{skill['id']}",
        json={"detector": {"kind": "regex", "pattern": r"(x)\1"}},
        headers=auth(key_a),
    )
    assert r.status_code == 422 and "backreference" in r.json()["detail"]
    assert counts() == (1, 1)
    dup = client.post("/v1/skills", json=MOD97, headers=auth(key_a))
    assert dup.status_code == 409


@pytest.mark.timeout(60)
def test_pathological_patterns_run_in_linear_time(client: TestClient, key_a: str) -> None:
    # Under a backtracking engine either pattern would not finish on these texts in any
    # lifetime; RE2 answers in milliseconds. The timeout, not a timed assertion, says so.
    for pattern, text in ((r"(a+)+$", "a" * 100_000 + "!"), (r"(x+x+)+y", "x" * 100_000)):
        skill = add(
            client, key_a, {"name": pattern, "detector": {"kind": "regex", "pattern": pattern}}
        )
        r = client.post(
            f"/v1/skills/{skill['id']}/preview", json={"text": text}, headers=auth(key_a)
        )
        assert r.status_code == 200 and r.json()["matches"] == []


@pytest.mark.timeout(120)
def test_preview_lists_the_first_matches_and_stops_early_on_nested_keywords(
    client: TestClient, key_a: str
) -> None:
    """400,000 characters, each a match or a hit of 200 nested keywords: the preview lists the
    first matches, at most MAX_PREVIEW_MATCHES, those a scan finds first, and says more may
    follow (the work it does is counted in tests/curation/skills/test_matcher.py)."""
    nested = ["é" * n for n in range(1, 201)]
    text = "é" * 400_000
    cases = [  # detector, every match a scan finds, how many the preview lists at least
        ({"kind": "keywords", "keywords": nested}, [], 0),  # whole words: none
        (
            {"kind": "keywords", "keywords": nested, "word_boundaries": False},
            [(i, i + 200) for i in range(0, 400_000, 200)],
            1,  # then the hit budget runs out
        ),
        ({"kind": "regex", "pattern": "é"}, [(i, i + 1) for i in range(400_000)], 100),
    ]
    for i, (detector, everything, least) in enumerate(cases):
        skill = add(client, key_a, {"name": f"dense-{i}", "detector": detector})
        r = client.post(
            f"/v1/skills/{skill['id']}/preview", json={"text": text}, headers=auth(key_a)
        )
        assert r.status_code == 200, r.text[:300]
        got = [(m["start"], m["end"]) for m in r.json()["matches"]]
        assert got == everything[: len(got)] and least <= len(got) <= MAX_PREVIEW_MATCHES
        assert r.json()["matches_truncated"] is True


def test_a_large_real_keyword_list_works(client: TestClient, key_a: str) -> None:
    firsts = [
        "Ada",
        "Grace",
        "Alan",
        "Edsger",
        "Barbara",
        "Donald",
        "Ken",
        "Dennis",
        "Niklaus",
        "John",
        "Frances",
        "Tony",
        "Leslie",
        "Margaret",
        "Robin",
        "Radia",
        "Shafi",
        "Silvio",
        "Whitfield",
        "Martin",
    ]
    lasts = [
        f"{a}{b}"
        for a in (
            "Lo",
            "Ho",
            "Ri",
            "Ka",
            "Mu",
            "Be",
            "Sa",
            "To",
            "Pe",
            "Ne",
            "Wi",
            "Da",
            "Fe",
            "Gu",
            "Ja",
        )
        for b in (
            "velace",
            "pper",
            "tchie",
            "rp",
            "ller",
            "rner",
            "ndberg",
            "rvalds",
            "rlis",
            "umann",
            "lson",
            "vis",
            "rreira",
            "tierrez",
            "nsen",
            "mington",
            "bbins",
        )
    ]
    names = [f"{f} {last}{i}" for i in range(7) for f in firsts for last in lasts][:30_000]
    body = {"name": "people", "detector": {"kind": "keywords", "keywords": names}}
    r = client.post("/v1/skills", json=body, headers=auth(key_a))
    assert r.status_code == 201, r.text[:500]
    hit = client.post(
        f"/v1/skills/{r.json()['id']}/preview",
        json={"text": f"met {names[12345]} today"},
        headers=auth(key_a),
    )
    assert [m["text"] for m in hit.json()["matches"]] == [names[12345]]


def test_skills_of_a_are_invisible_to_b(client: TestClient, key_a: str, key_b: str) -> None:
    skill = add(client, key_a, MOD97)
    for method, path, body in [
        ("GET", f"/v1/skills/{skill['id']}", None),
        ("PATCH", f"/v1/skills/{skill['id']}", {"description": "x"}),
        ("DELETE", f"/v1/skills/{skill['id']}", None),
        ("POST", f"/v1/skills/{skill['id']}/preview", {"text": "x"}),
    ]:
        r = client.request(method, path, json=body, headers=auth(key_b))
        assert r.status_code == 404, (method, r.text)
    assert client.get("/v1/skills", headers=auth(key_b)).json()["data"] == []
    # B may use the same name in its own project.
    add(client, key_b, MOD97)


def test_delete_hides_the_skill_keeps_versions_and_frees_the_name(
    client: TestClient, key_a: str
) -> None:
    skill = add(client, key_a, MOD97)
    assert client.delete(f"/v1/skills/{skill['id']}", headers=auth(key_a)).status_code == 204
    assert client.get(f"/v1/skills/{skill['id']}", headers=auth(key_a)).status_code == 404
    assert counts() == (1, 1)
    add(client, key_a, MOD97)


def test_families_are_listed_with_param_schemas(client: TestClient, key_a: str) -> None:
    families = client.get("/v1/skill-families", headers=auth(key_a)).json()["data"]
    names = {f["family"] for f in families}
    assert {
        "modular_addition",
        "number_comparison",
        "token_pair",
        "copying",
        "multi_digit_addition",
        "examples",
    } <= names
    mod = next(f for f in families if f["family"] == "modular_addition")
    assert "modulus" in mod["params_schema"]["properties"]
