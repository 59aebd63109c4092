"""The transport-free core shared by the sync and async clients: configuration, building a
request from an `APICall`, the retry policy, and turning a response into a model or an
exception. The two clients only differ in how they send and sleep."""

from __future__ import annotations

import dataclasses
import email.utils
import os
import platform
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from skillmix_client._exceptions import SkillmixError, error_from_response
from skillmix_client._logs import log
from skillmix_client._types import NotGiven, Timeout
from skillmix_client._version import __version__

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True)
class APICall(Generic[T]):
    """One endpoint call, before any I/O: what to send and how to read the answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, Any] | None = None
    body: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    timeout: httpx.Timeout | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def with_params(self, **params: Any) -> APICall[T]:
        return dataclasses.replace(self, params={**(self.params or {}), **params})


def path_param(value: str) -> str:
    """Quote an id or name for use as one path segment."""
    if not value:
        raise ValueError("expected a non-empty id")
    return quote(str(value), safe="")


def query(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def to_timeout(value: Timeout) -> httpx.Timeout:
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), capped
    at MAX_RETRY_AFTER; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: ~0.5s, 1s, 2s... up to MAX_RETRY_DELAY, each shortened
    by up to a quarter at random so that clients retrying together spread out."""
    delay = min(INITIAL_RETRY_DELAY * 2.0**attempt, MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * random.random())


def should_retry(response: httpx.Response) -> bool:
    hint = str(response.headers.get("x-should-retry", "")).lower()
    if hint in ("true", "false"):
        return hint == "true"
    return response.status_code in RETRY_STATUSES or response.status_code >= 500


class ClientCore:
    """Configuration and request/response logic common to `Skillmix` and `AsyncSkillmix`."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: Timeout,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        api_key = api_key or os.environ.get("SKILLMIX_API_KEY")
        if not api_key:
            raise SkillmixError(
                "No API key: pass api_key=... or set SKILLMIX_API_KEY "
                "(create one with `skillmix keys create --project NAME`)."
            )
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.api_key = api_key
        self.base_url = (
            base_url or os.environ.get("SKILLMIX_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self.timeout = to_timeout(timeout)
        self.max_retries = max_retries
        self.default_headers = dict(default_headers or {})

    def _options(self, **changes: Any) -> dict[str, Any]:
        """Constructor arguments for a copy of this client with `changes` applied."""
        options = {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "default_headers": self.default_headers,
        }
        options.update({k: v for k, v in changes.items() if not isinstance(v, NotGiven)})
        return options

    def _prepare(self, call: APICall[T]) -> APICall[T]:
        """Fix what must stay the same across retries: a POST's Idempotency-Key."""
        if call.method == "POST" and not call.idempotency_key:
            return dataclasses.replace(call, idempotency_key=str(uuid.uuid4()))
        return call

    def _build_request(
        self, http: httpx.Client | httpx.AsyncClient, call: APICall[Any]
    ) -> httpx.Request:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": f"skillmix-client/{__version__} Python/{platform.python_version()}",
            **self.default_headers,
            **call.headers,
        }
        if call.idempotency_key:
            headers["Idempotency-Key"] = call.idempotency_key
        return http.build_request(
            call.method,
            self.base_url + call.path,
            params=call.params,
            json=call.body,
            headers=headers,
            timeout=call.timeout or self.timeout,
        )

    def _retry_delay(
        self,
        attempt: int,
        request: httpx.Request,
        response: httpx.Response | None = None,
        error: Exception | None = None,
    ) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to stop. Logs the retry."""
        if attempt >= self.max_retries:
            return None
        if response is not None:
            if not should_retry(response):
                return None
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            delay = backoff(attempt) if retry_after is None else retry_after
            reason = f"status={response.status_code}"
        else:
            delay = backoff(attempt)
            reason = f"error={type(error).__name__}: {error}"
        log.debug(
            "retrying %s %s: attempt %d of %d in %.2fs (%s)",
            request.method,
            request.url,
            attempt + 1,
            self.max_retries,
            delay,
            reason,
        )
        return delay

    @staticmethod
    def _parse(call: APICall[T], response: httpx.Response) -> T:
        """The parsed body of a read response, or the exception for an error status."""
        if response.is_error:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return call.parse(None)
        return call.parse(response.json())
