"""Dependencies shared by the routes: the service context and the caller's principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..domain.principal import Principal
from ..services import auth
from ..services.context import Context
from ..services.listing import ListParams
from ..store.query import DEFAULT_LIMIT, parse_json_param
from .routing import run_service

_bearer = HTTPBearer(auto_error=False, description="A cwl-crunch token")


async def get_context(request: Request) -> Context:
    """Async because it does no I/O: FastAPI runs sync dependencies in a worker thread each."""
    return request.app.state.ctx


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller: from the token cache when it can, else from the database (see routing.py)."""
    ctx: Context = request.app.state.ctx
    secret = credentials.credentials if credentials else None
    return auth.cached_principal(ctx, secret) or await run_service(ctx, auth.authenticate, ctx, secret)


def list_params(
    filters: str | None = None,
    order: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    select: str | None = None,
    count: str = "exact",
) -> ListParams:
    """SPEC §2 list parameters; filters, order and select are JSON."""
    order_value = order
    if order is not None and order.lstrip().startswith("["):
        order_value = parse_json_param("order", order, None)
    return ListParams(
        filters=parse_json_param("filters", filters, []),
        order=order_value,
        limit=limit,
        offset=offset,
        select=parse_json_param("select", select, None),
        count=count != "none",
    )


ContextDep = Annotated[Context, Depends(get_context)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ListDep = Annotated[ListParams, Depends(list_params)]
