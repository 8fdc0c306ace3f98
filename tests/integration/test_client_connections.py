"""The API client's connections: a server closing an idle keep-alive connection costs a new
connection, not a retry pause; a server in trouble still gets the pauses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cwl_crunch import client as client_module
from cwl_crunch.client import Client


class _ClosesIdleConnections(BaseHTTPRequestHandler):
    """Answers every request, then closes the connection without saying so (no `Connection:
    close`): what a server does to a keep-alive connection that stayed idle too long."""

    protocol_version = "HTTP/1.1"
    closes = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.connections.add(self.client_address)  # type: ignore[attr-defined]
        self._answer({"path": self.path})

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        """Answers once the test lets it (`server.release`), with what it was sent."""
        self.server.connections.add(self.client_address)  # type: ignore[attr-defined]
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.puts.append(sent)  # type: ignore[attr-defined]
        self.server.release.wait(5)  # type: ignore[attr-defined]
        self.server.answered.append(sent)  # type: ignore[attr-defined]
        self._answer({"path": self.path, "sent": sent})

    def _answer(self, answer: dict[str, Any]) -> None:
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = self.closes

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def closing_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClosesIdleConnections)
    server.connections = set()  # type: ignore[attr-defined]
    server.puts, server.answered, server.release = [], [], threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_closed_idle_connection_is_replaced_at_once(closing_server: ThreadingHTTPServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", pauses.append)
    api = Client(f"http://127.0.0.1:{closing_server.server_address[1]}", "t")

    answers = [api.request("GET", f"/things/{n}") for n in range(3)]

    assert [a["path"] for a in answers] == [f"/arvados/v1/things/{n}" for n in range(3)]
    assert len(closing_server.connections) == 3  # type: ignore[attr-defined]
    assert pauses == []


def test_a_refused_connection_is_still_retried_with_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", pauses.append)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClosesIdleConnections)
    port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    api = Client(f"http://127.0.0.1:{port}", "t")

    with pytest.raises(ConnectionRefusedError):
        api.request("GET", "/things")

    assert len(pauses) == client_module.RETRIES
    assert pauses == sorted(pauses) and pauses[0] > 0


def test_a_begun_request_is_sent_at_once_and_answered_when_asked(closing_server: ThreadingHTTPServer) -> None:
    api = Client(f"http://127.0.0.1:{closing_server.server_address[1]}", "t")
    answer = api.begin("PUT", "/things/1", {"state": "Running"})
    # The call did not wait for the server, which holds its answer back until told.
    assert closing_server.answered == []  # type: ignore[attr-defined]
    closing_server.release.set()  # type: ignore[attr-defined]
    assert answer() == {"path": "/arvados/v1/things/1", "sent": {"state": "Running"}}
    assert closing_server.puts == [{"state": "Running"}]  # type: ignore[attr-defined]


def test_a_begun_request_on_a_closed_idle_connection_is_sent_again(closing_server: ThreadingHTTPServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", pauses.append)
    closing_server.release.set()  # type: ignore[attr-defined]
    api = Client(f"http://127.0.0.1:{closing_server.server_address[1]}", "t")
    api.request("GET", "/things")  # the server closes this connection after answering

    answer = api.begin("PUT", "/things/1", {"state": "Running"})

    assert answer()["sent"] == {"state": "Running"}
    assert closing_server.puts == [{"state": "Running"}]  # type: ignore[attr-defined]
    assert len(closing_server.connections) == 2 and pauses == []  # type: ignore[attr-defined]


class _KeepsConnections(_ClosesIdleConnections):
    closes = False


def test_close_closes_the_connection_of_every_thread_that_used_the_client() -> None:
    """A crunch-run worker goes on to its next container: the heartbeat, cancel-watch and live
    log threads' connections must not outlive the container they served."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepsConnections)
    server.connections = set()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = Client(f"http://127.0.0.1:{server.server_port}", "token")
        connections = []

        def use() -> None:
            api.request("GET", "/config")
            connections.append(api._connection())

        threads = [threading.Thread(target=use) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        use()
        assert len({id(c) for c in connections}) == 3 and all(c.sock is not None for c in connections)
        api.close()
        assert all(c.sock is None for c in connections), "every thread's connection closed"
        assert api.request("GET", "/config")["path"].endswith("/config"), "still usable afterwards"
        assert len(server.connections) == 4  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
