"""Every error becomes `{"errors": [...]}` with the right status; bad input is never a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..domain import errors

log = logging.getLogger(__name__)

STATUS = {
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Invalid: 422,
}


def status_of(error: errors.CrunchError) -> int:
    """The HTTP status of an error class (the dashboard renders the same statuses as pages)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _describe(problem: dict) -> str:
    where = ".".join(str(p) for p in problem.get("loc", ()) if p not in ("body", "query", "path"))
    message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")  # our validators' own text
    return f"{where}: {message}" if where and not message.startswith("body") else message


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.CrunchError)
    async def _crunch(_: Request, error: errors.CrunchError) -> JSONResponse:
        status = status_of(error)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"errors": error.messages}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"errors": [_describe(p) for p in error.errors()][:20]}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"errors": [str(error.detail)]}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"action": "error", "path": request.url.path})
        return JSONResponse({"errors": ["internal server error (logged on the server)"]}, status_code=500)
