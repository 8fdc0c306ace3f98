"""Pages: the Jinja2 environment, error pages, and the headers every dashboard response carries.

Autoescaping is on for every template: request names, errors and log text all come from users.
Pages load only the dashboard's own script and stylesheet (a strict Content-Security-Policy, no
inline script), so an escaping slip still could not run code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.exceptions import HTTPException

from ...domain.errors import CrunchError, Unauthenticated
from ..errors import status_of
from . import formatting

LOGIN_PATH = "/dashboard/login"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class Templates:
    """The dashboard's templates, loaded from the package (so an installed wheel finds them too)."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("cwl_crunch.server.dashboard", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(age=formatting.age, cost=formatting.cost, size=formatting.size,
                                slug=formatting.slug, iso=formatting.iso)

    def page(self, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**values)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def templates(request: Request) -> Templates:
    return request.app.state.dashboard_templates


def error_page(request: Request, status_code: int, messages: list[str], headers: dict[str, str] | None = None) -> Response:
    response = templates(request).page("error.html", status_code, messages=messages, code=status_code,
                                       logged_in=False)
    response.headers.update(headers or {})
    return response


def _wants_a_page(request: Request) -> bool:
    """A person navigating (not a script fetching a fragment, a log or events): send them to log in."""
    return (request.method == "GET" and "partial" not in request.query_params
            and "text/html" in request.headers.get("accept", ""))


def _refusal(request: Request, error: Exception) -> Response:
    """What a dashboard route answers instead of raising: a page, never the API's JSON."""
    if isinstance(error, Unauthenticated):
        if _wants_a_page(request):
            return RedirectResponse(LOGIN_PATH, status_code=303)
        return error_page(request, 401, error.messages)
    if isinstance(error, CrunchError):
        return error_page(request, status_of(error), error.messages)
    if isinstance(error, RequestValidationError):
        return error_page(request, 422, [str(problem.get("msg", "invalid input")) for problem in error.errors()][:5])
    assert isinstance(error, HTTPException)
    return error_page(request, error.status_code, [str(error.detail)], dict(error.headers or {}))


class DashboardRoute(APIRoute):
    """A route whose errors are pages and whose responses carry SECURITY_HEADERS."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except (CrunchError, RequestValidationError, HTTPException) as error:
                response = _refusal(request, error)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return run
