"""Client configuration: arguments, environment fallbacks and `with_options`."""

from __future__ import annotations

import inspect

import httpx
import pytest
from skillmix_client import AsyncSkillmix, NotFoundError, Skillmix, SkillmixError


def test_a_missing_key_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKILLMIX_API_KEY", raising=False)
    with pytest.raises(SkillmixError, match="SKILLMIX_API_KEY"):
        Skillmix()
    with pytest.raises(SkillmixError, match="skillmix keys create"):
        AsyncSkillmix()


def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKILLMIX_API_KEY", "sk_env")
    monkeypatch.setenv("SKILLMIX_BASE_URL", "http://skillmix.internal:9000/")
    client = Skillmix()
    assert client.api_key == "sk_env" and client.base_url == "http://skillmix.internal:9000"
    assert Skillmix(api_key="sk_arg", base_url="http://h").api_key == "sk_arg"
    monkeypatch.delenv("SKILLMIX_BASE_URL")
    assert Skillmix().base_url == "http://127.0.0.1:8000"
    assert client.max_retries == 2 and client.timeout == httpx.Timeout(60.0, connect=5.0)


def test_with_options_shares_the_pool() -> None:
    client = Skillmix(api_key="sk_a", base_url="http://h", timeout=5)
    copy = client.with_options(max_retries=0, timeout=1.5)
    assert copy._http is client._http
    assert (copy.max_retries, copy.timeout, copy.api_key) == (0, httpx.Timeout(1.5), "sk_a")
    assert (client.max_retries, client.timeout) == (2, httpx.Timeout(5))
    assert client.with_options(timeout=None).timeout == httpx.Timeout(None)
    copy.close()
    assert not client._http.is_closed
    client.close()
    assert client._http.is_closed


def test_resources_share_one_surface() -> None:
    names = ("jobs", "skills", "corpora", "scans", "mixtures", "verifications")
    sync, aio = Skillmix(api_key="k"), AsyncSkillmix(api_key="k")
    for name in names:
        public = {m for m in dir(getattr(sync, name)) if not m.startswith("_")}
        assert public == {m for m in dir(getattr(aio, name)) if not m.startswith("_")}, name
        for method in public:
            params = inspect.signature(getattr(getattr(sync, name), method)).parameters
            assert params == inspect.signature(getattr(getattr(aio, name), method)).parameters
    assert {"wait", "create", "list", "retrieve"} <= set(dir(sync.scans))


def test_unknown_ids_of_other_resources_are_not_found(client: Skillmix) -> None:
    with pytest.raises(NotFoundError):
        client.with_options(max_retries=0).skills.retrieve("skill_missing")
