"""Following the service's event stream (SSE): resumed where it stopped, polled while it is down."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from .client import ApiError, Client

logger = logging.getLogger(__name__)
POLL_SECONDS = 2.0


class EventFollower:
    """Calls `handle(event)` for every event after the moment `start()` returns, in order.

    `filters` (the API's list syntax over event attributes, e.g. `[["object_kind", "=", ...]]`)
    are applied by the server, so events nobody here wants are neither sent nor parsed.
    """

    def __init__(self, api: Client, handle: Callable[[dict[str, Any]], None],
                 filters: list[list[Any]] | None = None) -> None:
        self.api = api
        self.handle = handle
        self.filters = filters
        self.since: int | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Returns once the stream is open, so no later event can be missed."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the service's event stream did not open")

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream()
            except (OSError, ApiError, ValueError) as error:
                logger.debug("event stream interrupted (%s); polling until it is back", error)
                self._ready.set()
                self._poll_once()
                self._stop.wait(POLL_SECONDS)

    def _stream(self) -> None:
        response = self.api.stream("/events", self._params())
        try:
            event_id: str | None = None
            while not self._stop.is_set():
                line = response.readline()
                if not line:
                    return
                text = line.decode().rstrip("\r\n")
                if text.startswith(": stream open after "):
                    if self.since is None:
                        self.since = int(text.rsplit(" ", 1)[1])
                    self._ready.set()
                elif text.startswith("id: "):
                    event_id = text[4:]
                elif text.startswith("data: "):
                    event = json.loads(text[6:])
                    self.handle(event)
                    self.since = int(event_id or event["id"])
        finally:
            response.close()

    def _params(self) -> dict[str, str]:
        params = {"since": str(self.since)} if self.since is not None else {}
        if self.filters:
            params["filters"] = json.dumps(self.filters)
        return params

    def _poll_once(self) -> None:
        if self.since is None:
            return
        try:
            answer = self.api.request("GET", "/events/batch", params=self._params())
        except (OSError, ApiError):
            return
        for event in answer["items"]:
            self.handle(event)
            self.since = int(event["id"])
