"""Web pages under /ui: server-rendered (Jinja2) views of a project's skills, scans, mixtures
and verifications, with charts drawn in the browser from the API's JSON (uPlot, vendored
in static/vendor). See `install` and CONTRIBUTING.md ("Add a /ui page")."""

from __future__ import annotations

import inspect
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse, Response

from service.api.ui import views
from service.api.ui.app import (
    HERE,
    PREFIX,
    UiSecurityHeaders,
    is_page,
    render,
    session_of,
)
from service.api.ui.session import CsrfRefused, Signer, SignInRequired
from service.problems import Problem
from service.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Add the /ui pages, their static files and their error pages to `app`."""
    app.state.ui_signer = Signer(settings)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(views.router)
    app.add_middleware(UiSecurityHeaders)

    api_problem = app.exception_handlers[Problem]

    async def _problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        if not is_page(request):
            answer = api_problem(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        session = session_of(request)
        viewer = None
        if session and session.key:  # the page frame (nav, sign out) for a signed-in browser
            viewer = getattr(request.state, "ui_viewer", None)
        return render(
            request,
            "error.html",
            viewer,
            status_code=exc.status,
            title=exc.title,
            detail=exc.detail,
        )

    async def _sign_in(request: Request, exc: Exception) -> Response:
        if not is_page(request) or request.method != "GET":
            response: Response = Response("Sign in at /ui/sign-in.", status_code=401)
        else:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(
                f"{PREFIX}/sign-in?next={quote(target, safe='')}", status_code=303
            )
        if request.cookies.get("skillmix_ui"):
            Signer.clear(response)
        return response

    async def _csrf(request: Request, exc: Exception) -> Response:
        return render(
            request,
            "error.html",
            None,
            status_code=403,
            title="Form refused",
            detail="The form's CSRF token is missing or does not match this session; "
            "reload the page and send it again.",
        )

    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(CsrfRefused, _csrf)
