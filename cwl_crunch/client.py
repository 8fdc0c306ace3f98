"""The one HTTP client of the container service, used by crunch-run, the dispatchers and the runner.

Standard library only (`http.client`): crunch-run starts once per container, and importing an
HTTP library costs more than the request it sends (httpx alone takes ~0.1 s to import here).
One keep-alive connection per client and thread; connection failures are retried with a short
backoff (the API server may be restarting), HTTP errors are not.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

RETRIES = 5


class ApiError(Exception):
    """The API answered with an error status; `errors` are its messages."""

    def __init__(self, status: int, errors: list[str], method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: {status} {'; '.join(errors) or 'error'}")
        self.status = status
        self.errors = errors


class Client:
    def __init__(self, api_url: str, token: str, timeout: float = 60.0) -> None:
        """`api_url`: the server's base URL (`http://host:port`, with or without `/arvados/v1`)."""
        parsed = urllib.parse.urlsplit(api_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not an http(s) URL: {api_url!r}")
        self.url = api_url
        self._scheme = parsed.scheme
        self._netloc = parsed.netloc
        self._prefix = parsed.path.rstrip("/").removesuffix("/arvados/v1") + "/arvados/v1"
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = timeout
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []  # every thread's, for `close`
        self._opened_lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            factory = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = factory(self._netloc, timeout=self._timeout)
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._opened_lock:
                if conn in self._opened:
                    self._opened.remove(conn)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        raw: bytes | Path | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send a request; the decoded JSON answer (None for HEAD or an empty body)."""
        status, answer, _ = self.request_raw(method, path, body, params=params, raw=raw, headers=headers)
        if status >= 400:
            raise ApiError(status, _messages(answer), method, path)
        if method == "HEAD" or not answer:
            return None
        return json.loads(answer)

    def request_raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        raw: bytes | Path | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, http.client.HTTPMessage]:
        target = self._prefix + path
        if params:
            encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items() if v is not None}
            target += "?" + urllib.parse.urlencode(encoded)
        sent, payload = self._message(body, headers)
        payload = raw if payload is None else payload
        attempt, may_be_stale = 0, True
        while True:
            conn = self._connection()
            kept_alive = conn.sock is not None  # open since an earlier request
            try:
                if isinstance(payload, Path):  # streamed from the file, reopened for each attempt
                    with payload.open("rb") as body:
                        conn.request(method, target, body=body,
                                     headers={**sent, "Content-Length": str(payload.stat().st_size)})
                else:
                    conn.request(method, target, body=payload, headers=sent)
                response = conn.getresponse()
                data = response.read()
                return response.status, data, response.headers
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError) as error:
                self._drop_connection()
                if kept_alive and may_be_stale and isinstance(error, ConnectionError):
                    # The server closed the connection while it was idle (uvicorn does after 5 s):
                    # a new one at once, not after a pause meant for a server in trouble.
                    may_be_stale = False
                    continue
                if attempt == RETRIES:
                    raise
                time.sleep(min(2.0, 0.1 * 2**attempt))
                attempt += 1

    def begin(self, method: str, path: str, body: Any = None) -> Callable[[], Any]:
        """Send a request now; a function that waits for its answer (decoded as by `request`).
        The caller works while the server does, and uses no other request of this thread's
        meanwhile (they share its connection). A connection error on either side sends the
        request again when the answer is wanted, as `request` would have."""
        sent, payload = self._message(body)
        conn = self._connection()
        try:
            conn.request(method, self._prefix + path, body=payload, headers=sent)
        except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
            self._drop_connection()
            return partial(self.request, method, path, body)

        def answer() -> Any:
            try:
                response = conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
                self._drop_connection()
                return self.request(method, path, body)
            if response.status >= 400:
                raise ApiError(response.status, _messages(data), method, path)
            return json.loads(data) if data and method != "HEAD" else None

        return answer

    def _message(self, body: Any, headers: Mapping[str, str] | None = None) -> tuple[dict[str, str], bytes | None]:
        """The headers and the encoded JSON body (None without one) of a request."""
        sent = dict(self._headers, **(headers or {}))
        if body is None:
            return sent, None
        sent["Content-Type"] = "application/json"
        return sent, json.dumps(body).encode()

    def stream(self, path: str, params: Mapping[str, str] | None = None) -> http.client.HTTPResponse:
        """GET a response that stays open (`?follow=1`), on a connection of its own: read it with
        `read1` until it ends, then close it. Raises ApiError for an error status."""
        factory = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = factory(self._netloc, timeout=None)
        target = self._prefix + path + ("?" + urllib.parse.urlencode(params) if params else "")
        conn.request("GET", target, headers=self._headers)
        response = conn.getresponse()
        if response.status >= 400:
            answer = response.read()
            conn.close()
            raise ApiError(response.status, _messages(answer), "GET", path)
        return response

    # -- resources ----------------------------------------------------------------------

    def get(self, resource: str, uuid: str) -> dict[str, Any]:
        return self.request("GET", f"/{resource}/{uuid}")

    def create(self, resource: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/{resource}", dict(fields))

    def update(self, resource: str, uuid: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("PUT", f"/{resource}/{uuid}", dict(fields))

    def list(self, resource: str, *, filters: list[Any] | None = None, order: str | None = None,
             limit: int = 1000, select: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every matching item, page by page (offset paging, no total count)."""
        offset = 0
        while True:
            params = {"filters": filters or [], "order": order, "limit": str(limit), "offset": str(offset),
                      "select": select, "count": "none"}
            page = self.request("GET", f"/{resource}", params=params)["items"]
            yield from page
            if len(page) < limit:
                return
            offset += len(page)

    # -- blobs ---------------------------------------------------------------------------

    def has_blob(self, sha256: str) -> bool:
        status, _, _ = self.request_raw("HEAD", f"/blobs/{sha256}")
        if status >= 500:
            raise ApiError(status, [], "HEAD", f"/blobs/{sha256}")
        return status == 200

    def put_blob(self, sha256: str, data: bytes | Path) -> None:
        """Store a blob: bytes, or a file streamed from disk."""
        self.request("PUT", f"/blobs/{sha256}", raw=data, headers={"Content-Type": "application/octet-stream"})

    def get_blob(self, sha256: str) -> bytes:
        status, data, _ = self.request_raw("GET", f"/blobs/{sha256}")
        if status != 200:
            raise ApiError(status, _messages(data), "GET", f"/blobs/{sha256}")
        return data

    def close(self) -> None:
        """Close every thread's connection (a thread still using the client opens a new one)."""
        self._local.conn = None
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


def _messages(answer: bytes) -> list[str]:
    try:
        errors = json.loads(answer).get("errors", [])
    except (ValueError, AttributeError):
        return [answer[:200].decode(errors="replace")] if answer else []
    return [str(e) for e in errors] if isinstance(errors, list) else [str(errors)]
