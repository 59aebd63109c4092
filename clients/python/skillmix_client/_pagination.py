"""Lists that walk every page by themselves: `for job in client.jobs.list(limit=50)` (or
`async for`); `.pages()` gives the raw pages. Nothing is fetched until iteration starts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from skillmix_client._core import APICall
from skillmix_client.types import Page

if TYPE_CHECKING:
    from skillmix_client._client import AsyncSkillmix, Skillmix

T = TypeVar("T")


def _next_call(call: APICall[Page[T]], page: Page[T]) -> APICall[Page[T]] | None:
    if not page.has_more or not page.next_after:
        return None
    return call.with_params(after=page.next_after)


class SyncPager(Generic[T]):
    def __init__(self, client: Skillmix, first: APICall[Page[T]]) -> None:
        self._client, self._first = client, first

    def pages(self) -> Iterator[Page[T]]:
        call: APICall[Page[T]] | None = self._first
        while call is not None:
            page = self._client._request(call)
            yield page
            call = _next_call(call, page)

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.data


class AsyncPager(Generic[T]):
    def __init__(self, client: AsyncSkillmix, first: APICall[Page[T]]) -> None:
        self._client, self._first = client, first

    async def pages(self) -> AsyncIterator[Page[T]]:
        call: APICall[Page[T]] | None = self._first
        while call is not None:
            page = await self._client._request(call)
            yield page
            call = _next_call(call, page)

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.data:
                yield item
