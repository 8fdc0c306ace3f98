"""Cancel, hold, release and retry buttons: form POSTs that change a request through the API's services."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from ...domain.errors import Conflict, Forbidden, Invalid
from ...services import dashboard
from ..deps import ContextDep
from ..errors import status_of
from ..routing import ServiceRouter, run_service
from .pages import CookiePrincipal, render_detail
from .rendering import DashboardRoute
from .session import require_same_origin

router = ServiceRouter(route_class=DashboardRoute, include_in_schema=False)


@router.post("/dashboard/requests/{uuid}/{action}")
async def act(request: Request, uuid: str, action: str, ctx: ContextDep, principal: CookiePrincipal) -> Response:
    """Done: back to the request (a retry: to the new one) to see its new state. Refused: the reason, on the page."""
    require_same_origin(request)
    try:
        shown = await run_service(ctx, dashboard.act, ctx, principal, uuid, action)
    except (Invalid, Forbidden, Conflict) as refusal:
        detail = await run_service(ctx, dashboard.request_detail, ctx, principal, uuid)
        return render_detail(request, ctx, detail, refused=refusal.messages, status_code=status_of(refusal))
    return RedirectResponse(f"/dashboard/requests/{shown}", status_code=303)
