"""Per-API-key request rate limit, by GCRA (the generic cell rate algorithm).

GCRA is a token bucket kept as one number per key: the theoretical arrival time (TAT) of
the next request at the steady rate. A request at `now` is allowed when
`now >= TAT - tolerance`, and then moves TAT one interval on; `tolerance` is what lets a
burst of requests through at once. The state is a single timestamp that expires when the
bucket is full again, so an idle key costs nothing.

With several API processes (uvicorn workers, replicas) the count must be shared: then it
lives in Redis, updated by one Lua script (one round trip, atomic, timed by the Redis
server's clock). The embedded default has no Redis and one API process: a dict will do.
If Redis cannot be reached the limiter lets requests through (and says so in the log once
per outage) rather than failing every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import redis

from service.settings import Settings

log = logging.getLogger("skillmix.api")

REDIS_PREFIX = "skillmix:ratelimit:"
# After Redis failed, requests skip it (and are allowed) for this long before trying again,
# so an outage does not add a connection timeout to every request.
REDIS_RETRY_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until a refused request would be allowed


ALLOW = Decision(True)


@dataclass(frozen=True)
class Rate:
    """`per_minute` sustained; `burst` requests at once from an idle start."""

    per_minute: int
    burst: int

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @property
    def tolerance(self) -> float:
        return self.interval * (self.burst - 1)


class RateLimiter(Protocol):
    rate: Rate
    # Whether hit() waits on I/O: the API then calls it in a thread, off the event loop.
    blocking: bool

    def hit(self, key: str) -> Decision:
        """Count one request for `key`; refused requests are not counted."""
        ...


class LocalRateLimiter:
    """GCRA in this process: right for one API process (the embedded default)."""

    PRUNE_AT = 10_000  # keys remembered before the idle ones are dropped
    blocking = False

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Decision:
        with self._lock:
            now = self.clock()
            tat = max(self._tat.get(key, now), now)
            wait = tat - self.rate.tolerance - now
            if wait > 0:
                return Decision(False, wait)
            self._tat[key] = tat + self.rate.interval
            if len(self._tat) > self.PRUNE_AT:
                self._tat = {k: t for k, t in self._tat.items() if t > now}
            return ALLOW


# KEYS[1]: the key's TAT in ms. ARGV: interval and tolerance in ms.
# Returns {1, 0} when allowed, {0, ms to wait} when not.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return {0, math.ceil(wait)} end
tat = tat + interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.max(1, math.ceil(tat - now)))
return {1, 0}
"""


class RedisRateLimiter:
    """GCRA in Redis, shared by every API process that uses the same Redis."""

    blocking = True

    def __init__(self, url: str, rate: Rate, prefix: str = REDIS_PREFIX) -> None:
        self.rate, self.prefix = rate, prefix
        self._redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._script = self._redis.register_script(GCRA_LUA)
        self._args = (self.rate.interval * 1000, self.rate.tolerance * 1000)
        self._lock = threading.Lock()
        self._down_until: float | None = None  # set while Redis is taken to be down

    def hit(self, key: str) -> Decision:
        down_until = self._down_until
        if down_until is not None and time.monotonic() < down_until:
            return ALLOW
        try:
            allowed, wait_ms = self._script(keys=[self.prefix + key], args=self._args)
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                if self._down_until is None:
                    log.warning("rate limit: Redis unreachable, allowing requests: %s", exc)
                self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
            return ALLOW
        if down_until is not None:
            with self._lock:
                if self._down_until is not None:
                    log.info("rate limit: Redis reachable again, limiting requests")
                self._down_until = None
        return ALLOW if allowed else Decision(False, int(wait_ms) / 1000)


def from_settings(settings: Settings) -> RateLimiter | None:
    """The limiter the settings ask for: None when off, Redis when the broker is Redis."""
    if settings.rate_limit_per_minute <= 0:
        return None
    rate = Rate(settings.rate_limit_per_minute, settings.effective_rate_limit_burst)
    url = settings.broker_url or ""
    if urlsplit(url).scheme in ("redis", "rediss"):
        return RedisRateLimiter(url, rate)
    return LocalRateLimiter(rate)
