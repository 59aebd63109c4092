"""Resources are written once, as functions that turn keyword arguments into an `APICall`;
`sync_call`/`async_call` (and the `_list` pair) make those into methods of the sync and
async resource classes, keeping each function's signature and docstring for type checkers
and `help()`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from skillmix_client._core import APICall
from skillmix_client._pagination import AsyncPager, SyncPager
from skillmix_client.types import Page

if TYPE_CHECKING:
    from skillmix_client._client import AsyncSkillmix, Skillmix

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _wraps(method: F, build: Callable[..., Any]) -> F:
    """Give the method the builder's docstring, parameters (after `self`) and name (`list_`,
    so named to spare the builtin in its module, becomes `list`)."""
    functools.update_wrapper(method, build)
    del method.__wrapped__  # type: ignore[attr-defined]
    signature = inspect.signature(build)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[this, *signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )
    method.__name__ = method.__qualname__ = build.__name__.rstrip("_")
    return method


class SyncResource:
    def __init__(self, client: Skillmix) -> None:
        self._client = client


class AsyncResource:
    def __init__(self, client: AsyncSkillmix) -> None:
        self._client = client


def sync_call(build: Callable[P, APICall[T]]) -> Callable[Concatenate[SyncResource, P], T]:
    def method(self: SyncResource, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._client._request(build(*args, **kwargs))

    return _wraps(method, build)


def async_call(
    build: Callable[P, APICall[T]],
) -> Callable[Concatenate[AsyncResource, P], Awaitable[T]]:
    async def method(self: AsyncResource, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._client._request(build(*args, **kwargs))

    return _wraps(method, build)


def sync_list(
    build: Callable[P, APICall[Page[T]]],
) -> Callable[Concatenate[SyncResource, P], SyncPager[T]]:
    def method(self: SyncResource, /, *args: P.args, **kwargs: P.kwargs) -> SyncPager[T]:
        return SyncPager(self._client, build(*args, **kwargs))

    return _wraps(method, build)


def async_list(
    build: Callable[P, APICall[Page[T]]],
) -> Callable[Concatenate[AsyncResource, P], AsyncPager[T]]:
    def method(self: AsyncResource, /, *args: P.args, **kwargs: P.kwargs) -> AsyncPager[T]:
        return AsyncPager(self._client, build(*args, **kwargs))

    return _wraps(method, build)


def list_call(path: str, model: type[Any], limit: int | None, after: str | None) -> APICall[Any]:
    """GET a paginated collection of `model`."""
    params = {k: v for k, v in {"limit": limit, "after": after}.items() if v is not None}
    return APICall("GET", path, Page[model].model_validate, params=params)  # type: ignore[valid-type]
