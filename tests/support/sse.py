"""A Server-Sent Events reader for tests: reads a stream in a thread, one parsed event at a time."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Received:
    id: int
    event: str
    data: dict[str, Any]
    at: float  # time.monotonic() when the event's last line arrived


class EventStream:
    """`GET /arvados/v1/events` read by a background thread; `disconnect()` drops the connection."""

    def __init__(self, base_url: str, token: str, *, params: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=None))
        self._request = self._client.build_request(
            "GET", "/events", params=params or {}, headers={"Authorization": f"Bearer {token}", **(headers or {})}
        )
        self._events: queue.Queue[Received] = queue.Queue()
        self._open = threading.Event()
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._open.wait(10):
            raise AssertionError("the event stream did not open")

    def _read(self) -> None:
        try:
            response = self._client.send(self._request, stream=True)
        except httpx.HTTPError:
            self._open.set()
            return
        try:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            self._socket = response.extensions["network_stream"].get_extra_info("socket")
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if line.startswith(":"):
                    self._open.set()  # the server sends a comment first: the start point is fixed
                elif line == "":
                    if "data" in fields:
                        self._events.put(Received(int(fields["id"]), fields.get("event", ""),
                                                  json.loads(fields["data"]), time.monotonic()))
                    fields = {}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except (httpx.HTTPError, OSError):
            pass  # disconnected
        finally:
            response.close()
            self._open.set()

    def next(self, timeout: float = 5.0) -> Received:
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None

    def until(self, predicate: Any, timeout: float = 5.0) -> list[Received]:
        """Every event up to and including the first one matching `predicate`."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            event = self.next(max(deadline - time.monotonic(), 0.001))
            seen.append(event)
            if predicate(event):
                return seen

    def pending(self) -> list[Received]:
        """Events already received and not yet taken."""
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """Whether the server ended the stream within `timeout` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def disconnect(self) -> None:
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._client.close()
