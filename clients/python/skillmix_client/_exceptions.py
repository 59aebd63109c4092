"""The exception tree. Every error the SDK raises is a `SkillmixError`; answers from the
server with an error status are `APIError`s keyed on the status, carrying the RFC 9457
problem fields (`type`, `title`, `detail`, `instance`) and the whole body."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_PREFIX = "urn:skillmix:problem:"


class SkillmixError(Exception):
    """Base of every error raised by this SDK."""


class APIConnectionError(SkillmixError):
    """The request never got an answer (connection refused, reset, DNS...), after retries."""

    def __init__(self, request: httpx.Request, message: str = "Connection error.") -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """The request timed out, after retries."""

    def __init__(self, request: httpx.Request) -> None:
        super().__init__(request, "Request timed out.")


class WaitTimeoutError(SkillmixError, TimeoutError):
    """`wait(..., timeout=...)` ran out before the job reached a final state."""

    def __init__(self, job_id: str, timeout: float, last: Any = None) -> None:
        state = getattr(last, "state", "unknown")
        super().__init__(f"Job {job_id} is still {state} after {timeout:g}s.")
        self.job_id, self.timeout, self.last = job_id, timeout, last


class APIError(SkillmixError):
    """The server answered with an error status (4xx/5xx)."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        problem = body if isinstance(body, dict) else {}
        self.response = response
        self.request = response.request
        self.status: int = response.status_code
        self.body = body
        self.type: str | None = problem.get("type")
        self.title: str | None = problem.get("title")
        self.detail: str | None = problem.get("detail")
        self.instance: str | None = problem.get("instance")
        self.request_id: str | None = response.headers.get("x-request-id")
        summary = self.title or response.reason_phrase
        if self.detail:
            summary += f": {self.detail}"
        elif not problem and body:
            summary += f": {str(body)[:500]}"
        super().__init__(f"{self.status} {summary}")

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def slug(self) -> str | None:
        """The problem type without its URN prefix, e.g. `job-finished`."""
        if self.type and self.type.startswith(PROBLEM_PREFIX):
            return self.type[len(PROBLEM_PREFIX) :]
        return self.type


class BadRequestError(APIError):
    pass


class AuthenticationError(APIError):
    pass


class PermissionDeniedError(APIError):
    pass


class NotFoundError(APIError):
    pass


class ConflictError(APIError):
    pass


class PayloadTooLargeError(APIError):
    pass


class UnprocessableEntityError(APIError):
    @property
    def errors(self) -> list[dict[str, Any]]:
        """Per-field validation errors: `[{"loc": [...], "msg": ..., "type": ...}]`."""
        return list(self.body.get("errors") or []) if isinstance(self.body, dict) else []


class RateLimitError(APIError):
    pass


class InternalServerError(APIError):
    pass


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error response whose body has been read."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    status = response.status_code
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIError)
    return cls(response, body)


def connection_error(exc: httpx.TransportError, request: httpx.Request) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(request)
    return APIConnectionError(request, f"Connection error: {exc}")
