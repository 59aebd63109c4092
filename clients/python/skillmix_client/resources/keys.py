"""API keys of the client's project (an admin key's; a member key gets
PermissionDeniedError). A created or rotated key is in `.key`, this once."""

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
from skillmix_client.types import ApiKey, CreatedApiKey, Page


def create(
    *,
    name: str | NotGiven = NOT_GIVEN,
    expires_in_seconds: int | None | NotGiven = NOT_GIVEN,
    role: str | NotGiven = NOT_GIVEN,
    extra_body: Mapping[str, Any] | None = None,
) -> APICall[CreatedApiKey]:
    """Create a key in this project. `role`: `member` (default) or `admin`."""
    fields = {"name": name, "expires_in_seconds": expires_in_seconds, "role": role}
    return APICall(
        "POST", "/v1/keys", CreatedApiKey.model_validate, body=body_of(fields, extra_body)
    )


def list_(*, limit: int | None = None, after: str | None = None) -> APICall[Page[ApiKey]]:
    """This project's keys (live, expired and revoked), newest first, across all pages."""
    return list_call("/v1/keys", ApiKey, limit, after)


def revoke(key_id: str) -> APICall[ApiKey]:
    """Revoke a key; API processes that verified it recently accept it for up to their auth
    cache's lifetime (SKILLMIX_AUTH_CACHE_SECONDS) more."""
    return APICall("POST", f"/v1/keys/{path_param(key_id)}/revoke", ApiKey.model_validate)


def rotate(key_id: str, *, grace_seconds: int | NotGiven = NOT_GIVEN) -> APICall[CreatedApiKey]:
    """A new key with the old one's name and role; the old one keeps working for
    `grace_seconds` (server default: an hour; 0 revokes it at once)."""
    return APICall(
        "POST",
        f"/v1/keys/{path_param(key_id)}/rotate",
        CreatedApiKey.model_validate,
        body=body_of({"grace_seconds": grace_seconds}),
    )


class Keys(SyncResource):
    create = sync_call(create)
    list = sync_list(list_)
    revoke = sync_call(revoke)
    rotate = sync_call(rotate)


class AsyncKeys(AsyncResource):
    create = async_call(create)
    list = async_list(list_)
    revoke = async_call(revoke)
    rotate = async_call(rotate)
