"""`Skillmix` and `AsyncSkillmix`: the sync and async clients. Everything but sending,
sleeping and streaming lives in `ClientCore`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx

from skillmix_client._core import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, APICall, ClientCore
from skillmix_client._exceptions import connection_error, error_from_response
from skillmix_client._types import NOT_GIVEN, NotGiven, Timeout
from skillmix_client.resources import (
    corpora,
    jobs,
    keys,
    mixtures,
    scans,
    skills,
    studies,
    verifications,
)

T = TypeVar("T")


class Skillmix(ClientCore):
    """Synchronous client. Arguments fall back to `SKILLMIX_API_KEY` and `SKILLMIX_BASE_URL`.

    >>> client = Skillmix()
    >>> job = client.jobs.create(kind="sleep", params={"seconds": 1})
    >>> client.jobs.wait(job.id, progress=True).state
    'succeeded'
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self.timeout)
        self.jobs = jobs.Jobs(self)
        self.skills = skills.Skills(self)
        self.corpora = corpora.Corpora(self)
        self.scans = scans.Scans(self)
        self.mixtures = mixtures.Mixtures(self)
        self.verifications = verifications.Verifications(self)
        self.studies = studies.Studies(self)
        self.keys = keys.Keys(self)

    def with_options(
        self,
        *,
        api_key: str | NotGiven = NOT_GIVEN,
        base_url: str | NotGiven = NOT_GIVEN,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
    ) -> Skillmix:
        """A copy with some options changed, sharing this client's connection pool."""
        return Skillmix(
            **self._options(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                default_headers=default_headers,
            ),
            http_client=self._http,
        )

    def close(self) -> None:
        """Close the connection pool (a `with_options` copy leaves it to its original)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Skillmix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: APICall[Any], *, stream: bool = False) -> httpx.Response:
        """Send with retries; return the final response, error status or not."""
        call = self._prepare(call)
        attempt = 0
        while True:
            request = self._build_request(self._http, call)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._retry_delay(attempt, request, error=exc)
                if delay is None:
                    raise connection_error(exc, request) from exc
            else:
                delay = self._retry_delay(attempt, request, response=response)
                if delay is None:
                    return response
                response.close()
            time.sleep(delay)
            attempt += 1

    def _request(self, call: APICall[T]) -> T:
        response = self._send(call)
        return self._parse(call, response)

    @contextmanager
    def _stream(self, call: APICall[Any]) -> Iterator[httpx.Response]:
        """A successful streaming response, closed on exit; an error status raises."""
        response = self._send(call, stream=True)
        try:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            yield response
        except httpx.TransportError as exc:  # the connection broke while reading the body
            raise connection_error(exc, response.request) from exc
        finally:
            response.close()


class AsyncSkillmix(ClientCore):
    """Asynchronous client: the same resources and methods as `Skillmix`, awaited.

    >>> async with AsyncSkillmix() as client:
    ...     async for job in client.jobs.list(limit=50):
    ...         print(job.id, job.state)
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self.timeout)
        self.jobs = jobs.AsyncJobs(self)
        self.skills = skills.AsyncSkills(self)
        self.corpora = corpora.AsyncCorpora(self)
        self.scans = scans.AsyncScans(self)
        self.mixtures = mixtures.AsyncMixtures(self)
        self.verifications = verifications.AsyncVerifications(self)
        self.studies = studies.AsyncStudies(self)
        self.keys = keys.AsyncKeys(self)

    def with_options(
        self,
        *,
        api_key: str | NotGiven = NOT_GIVEN,
        base_url: str | NotGiven = NOT_GIVEN,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
    ) -> AsyncSkillmix:
        """A copy with some options changed, sharing this client's connection pool."""
        return AsyncSkillmix(
            **self._options(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                default_headers=default_headers,
            ),
            http_client=self._http,
        )

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncSkillmix:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, call: APICall[Any], *, stream: bool = False) -> httpx.Response:
        call = self._prepare(call)
        attempt = 0
        while True:
            request = self._build_request(self._http, call)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self._retry_delay(attempt, request, error=exc)
                if delay is None:
                    raise connection_error(exc, request) from exc
            else:
                delay = self._retry_delay(attempt, request, response=response)
                if delay is None:
                    return response
                await response.aclose()
            await asyncio.sleep(delay)
            attempt += 1

    async def _request(self, call: APICall[T]) -> T:
        response = await self._send(call)
        return self._parse(call, response)

    @asynccontextmanager
    async def _stream(self, call: APICall[Any]) -> AsyncIterator[httpx.Response]:
        response = await self._send(call, stream=True)
        try:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
            yield response
        except httpx.TransportError as exc:
            raise connection_error(exc, response.request) from exc
        finally:
            await response.aclose()
