"""Logging in (a token in the URL the service prints, or pasted into a form) and out."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from ...domain.errors import Forbidden, Unauthenticated
from ...services.context import Context
from ..deps import ContextDep
from ..routing import ServiceRouter
from .rendering import LOGIN_PATH, DashboardRoute, templates
from .session import end_session, form_field, principal_of, require_same_origin, start_session

router = ServiceRouter(route_class=DashboardRoute, include_in_schema=False)


async def log_in(request: Request, ctx: Context, secret: str | None) -> Response:
    """Check the token, keep it in the session cookie and go to the list, without the token in the URL."""
    try:
        await principal_of(ctx, secret)
    except (Unauthenticated, Forbidden) as error:
        refusal = error.messages[0] if isinstance(error, Forbidden) else (
            "That token is not valid." if secret else "Paste a token to log in.")
        response = templates(request).page("login.html", 401, refusal=refusal, logged_in=False)
    else:
        response = RedirectResponse("/", status_code=303)
        start_session(response, request, secret or "")
    # The token may be in this URL: never pass it on to another site.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get(LOGIN_PATH)
async def login_form(request: Request) -> Response:
    return templates(request).page("login.html", refusal=None, logged_in=False)


@router.post(LOGIN_PATH)
async def login(request: Request, ctx: ContextDep) -> Response:
    require_same_origin(request)
    return await log_in(request, ctx, await form_field(request, "token"))


@router.post("/dashboard/logout")
async def logout(request: Request) -> Response:
    """Forget the session cookie (the token itself stays valid: it is the user's, not the browser's)."""
    require_same_origin(request)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    end_session(response, request)
    return response
