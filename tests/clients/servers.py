"""Serve any ASGI app on a loopback port from a thread, and ASGI wrappers around the real
app that inject the failures a client must survive (they never replace the server's logic:
requests still reach the real app unless a test says otherwise)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.cli.embedded import free_port


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers on {base_url}")
        time.sleep(0.05)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)


async def _respond(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class UnavailableAfterCreate:
    """The first `failures` POSTs to `path` reach the real app (so the resource IS created)
    but the client gets 503 with `Retry-After: 0` instead of the answer, as when a proxy
    times out after the upstream did the work. Later POSTs pass through."""

    def __init__(self, app: ASGIApp, path: str, failures: int = 2) -> None:
        self.app, self.path, self.failures = app, path, failures
        self.posts: list[dict[str, str]] = []  # headers of each POST seen
        self.answers: list[int] = []  # the real app's status for each POST

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        self.posts.append({k.decode(): v.decode() for k, v in scope["headers"]})
        if len(self.posts) > self.failures:
            await self.app(scope, receive, send)
            return

        async def swallow(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.answers.append(message["status"])

        await self.app(scope, receive, swallow)
        problem = b'{"type": "urn:skillmix:problem:unavailable", "title": "Unavailable"}'
        headers = {"content-type": "application/problem+json", "retry-after": "0"}
        await _respond(send, 503, headers, problem)


class BrokenEvents:
    """`/events` streams fail: `truncated` sends a keep-alive and closes without `end` (a
    proxy cutting the stream); `bad-gateway` answers 502. Everything else is the real app."""

    def __init__(self, app: ASGIApp, mode: str) -> None:
        self.app, self.mode = app, mode
        self.hits = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/events"):
            await self.app(scope, receive, send)
            return
        self.hits += 1
        if self.mode == "truncated":
            await _respond(send, 200, {"content-type": "text/event-stream"}, b": hello\n\n")
        else:
            await _respond(send, 502, {"content-type": "text/plain"}, b"bad gateway")
