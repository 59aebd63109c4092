"""Wiring of the /ui pages into the API app: templates, static files, security headers, the
session dependencies and the HTML answers to refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.deps import authenticate
from service.api.ui.session import CsrfRefused, Signer, SignInRequired, UiSession, Viewer
from service.problems import Problem

HERE = Path(__file__).parent
PREFIX = "/ui"
templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape: .html files
templates.env.globals["static"] = lambda name: f"{PREFIX}/static/{name}"


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell: integers whole, others to `digits` significant digits
    (one decimal from 100 up), so a cell reads as the API's value rounded."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}g}"


templates.env.filters["fmt"] = fmt

# No inline script or style anywhere: every script and stylesheet is a file of this package.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class UiSecurityHeaders:
    """CSP, nosniff and no framing on every /ui answer (pages, static files, errors)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(PREFIX + "/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {h for h, _ in SECURITY_HEADERS}
                ]
                headers += SECURITY_HEADERS
                if not static:  # pages carry a project's data: never cached
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def signer(request: Request) -> Signer:
    found: Signer = request.app.state.ui_signer
    return found


def session_of(request: Request) -> UiSession | None:
    return signer(request).read(request)


async def current_viewer(request: Request) -> Viewer:
    """The signed-in project, its key checked as the API checks a bearer key; no session
    (or a key no longer valid) raises SignInRequired."""
    session = session_of(request)
    if session is None or session.key is None:
        raise SignInRequired()
    try:
        project = await authenticate(request, session.key)
    except Problem as exc:
        if exc.status == 401:
            raise SignInRequired(exc.detail) from None
        raise
    viewer = Viewer(project=project, csrf=session.csrf)
    request.state.ui_viewer = viewer  # for the frame of an error page
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


async def form_of(request: Request, viewer: ViewerDep) -> dict[str, Any]:
    """A signed-in form post's fields (a list for a repeated field), once its CSRF token
    matched the session's."""
    form = await request.form()
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(name, []).append(value)
    if not UiSession(key=None, csrf=viewer.csrf).csrf_ok(first(fields, "csrf_token")):
        raise CsrfRefused()
    return fields


FormDep = Annotated[dict[str, Any], Depends(form_of)]


def first(fields: dict[str, Any], name: str, default: str = "") -> str:
    values = fields.get(name) or [default]
    return str(values[0])


def render(
    request: Request,
    template: str,
    viewer: Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    context.setdefault("page", template.removesuffix(".html"))
    return templates.TemplateResponse(
        request,
        template,
        {"viewer": viewer, "csrf": viewer.csrf if viewer else "", **context},
        status_code=status_code,
    )


def is_page(request: Request) -> bool:
    path = request.url.path
    return (path == PREFIX or path.startswith(PREFIX + "/")) and not path.endswith(
        ("/events", ".json")
    )
