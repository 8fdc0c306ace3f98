"""The HTTP API server: thin FastAPI routes over the services."""

from .app import create_app

__all__ = ["create_app"]
