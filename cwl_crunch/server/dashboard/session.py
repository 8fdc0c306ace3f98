"""Dashboard sessions: the user's token kept in an HttpOnly, SameSite=Strict cookie.

A browser cannot send `Authorization: Bearer` on a link or a form, so the dashboard's own routes
read the token from a cookie instead; the JSON API never looks at it (deps.get_principal reads the
header only), so a page can never turn the cookie into API calls. HttpOnly keeps the token away
from scripts; SameSite=Strict keeps other sites' pages from sending it, which is what makes form
POSTs safe from cross-site forgery (an Origin check backs that up for older browsers).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi import Request, Response

from ...domain.errors import Forbidden, Invalid, Unauthenticated
from ...domain.principal import Principal
from ...services import auth
from ...services.context import Context
from ..routing import run_service

COOKIE = "crunch_session"
MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_FORM_BYTES = 8192


async def principal_of(ctx: Context, secret: str | None) -> Principal:
    """The user behind `secret`; container tokens are refused (they act for one container only)."""
    principal = auth.cached_principal(ctx, secret) or await run_service(ctx, auth.authenticate, ctx, secret)
    if principal.is_container:
        raise Forbidden("a container token cannot log in to the dashboard: use a user's token")
    return principal


async def cookie_principal(request: Request) -> Principal:
    """The dependency of every dashboard route that shows or changes something."""
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise Unauthenticated("log in to use the dashboard")
    return await principal_of(request.app.state.ctx, secret)


def start_session(response: Response, request: Request, secret: str) -> None:
    response.set_cookie(COOKIE, secret, max_age=MAX_AGE_SECONDS, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def end_session(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def require_same_origin(request: Request) -> None:
    """Refuse a state-changing POST sent from another site's page (browsers name the page's origin)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("this form was sent from another site; open the dashboard and try again")


async def form_field(request: Request, name: str) -> str | None:
    """One field of an application/x-www-form-urlencoded body (the login form's token)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Invalid(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise Invalid("the form could not be read") from None
    values = fields.get(name)
    return values[0].strip() if values else None
