"""Python SDK for skillmix: sync (`Skillmix`) and async (`AsyncSkillmix`) clients."""

from skillmix_client import types
from skillmix_client._client import AsyncSkillmix, Skillmix
from skillmix_client._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    SkillmixError,
    UnprocessableEntityError,
    WaitTimeoutError,
)
from skillmix_client._logs import setup_from_env
from skillmix_client._pagination import AsyncPager, SyncPager
from skillmix_client._types import NOT_GIVEN, NotGiven
from skillmix_client._version import __version__

setup_from_env()

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncPager",
    "AsyncSkillmix",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "NotGiven",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Skillmix",
    "SkillmixError",
    "SyncPager",
    "UnprocessableEntityError",
    "WaitTimeoutError",
    "__version__",
    "types",
]
