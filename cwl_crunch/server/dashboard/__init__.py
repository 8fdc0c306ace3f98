"""The web dashboard (SPEC §12): server-rendered pages at `/`, live through the event stream.

No front-end build: Jinja2 templates (templates/) and one small script and stylesheet (static/).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import actions, live, login, pages
from .rendering import Templates

STATIC_PATH = "/dashboard/static"


def install(app: FastAPI) -> None:
    """Add the dashboard's routes and static files to `app`."""
    app.state.dashboard_templates = Templates()
    for module in (pages, login, actions, live):
        app.include_router(module.router)
    app.mount(STATIC_PATH, StaticFiles(packages=[("cwl_crunch.server.dashboard", "static")]), name="dashboard-static")
