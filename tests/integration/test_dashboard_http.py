"""The dashboard over plain HTTP (SPEC §12): sessions, visibility, bad input, files, logs, events, scale.

What a browser adds (live updates, colours, buttons) is in tests/browser; this is the server's side.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cwl_crunch.store import Store
from tests.support.flows import commit, lock, ok, run
from tests.support.seeding import seed_runs, user_uuid
from tests.support.service import RunningService, start_service

ROW = re.compile(r'<tr data-uuid="([^"]+)">')


@contextmanager
def logged_in(service: RunningService, token: str) -> Iterator[httpx.Client]:
    """A client holding the dashboard's session cookie, as a browser would after the login URL."""
    with httpx.Client(base_url=service.url, timeout=30) as client:
        response = client.get("/", params={"token": token})
        assert response.status_code == 303 and response.headers["location"] == "/", response.text
        yield client


@pytest.fixture
def alice(service: RunningService) -> Iterator[tuple[str, httpx.Client]]:
    token = service.token("alice")
    with logged_in(service, token) as client:
        yield token, client


def _messages(response: httpx.Response) -> list[str]:
    return re.findall(r'<p class="message">(.*?)</p>', response.text, re.S)


def test_the_login_url_sets_a_strict_http_only_cookie_and_drops_the_token_from_the_url(service: RunningService) -> None:
    token = service.token("alice")
    with httpx.Client(base_url=service.url) as client:
        response = client.get("/", params={"token": token})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"crunch_session={token};")
    assert {"HttpOnly", "SameSite=strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    assert response.headers["referrer-policy"] == "no-referrer"


def test_bad_tokens_and_container_tokens_cannot_log_in(service: RunningService) -> None:
    with httpx.Client(base_url=service.url) as client:
        response = client.get("/", params={"token": "nope"})
        assert response.status_code == 401 and "That token is not valid." in response.text
        assert "set-cookie" not in response.headers
        form = client.post("/dashboard/login", data={"token": "nope"})
        assert form.status_code == 401 and "set-cookie" not in form.headers
    request = commit(service.client(service.token("alice")))
    container_token = lock(service.admin(), request["container_uuid"])["auth"]
    with httpx.Client(base_url=service.url) as client:
        response = client.get("/", params={"token": container_token})
    assert response.status_code == 401 and "a container token cannot log in" in response.text


def test_without_a_session_pages_send_to_the_login_form_and_everything_else_is_401(service: RunningService) -> None:
    request = commit(service.client(service.token("alice")))
    html = {"Accept": "text/html"}
    with httpx.Client(base_url=service.url) as client:
        assert client.get("/", headers=html).headers["location"] == "/dashboard/login"
        assert client.get(f"/dashboard/requests/{request['uuid']}", headers=html).status_code == 303
        for path in ("/?partial=1", "/dashboard/events", f"/dashboard/requests/{request['uuid']}/log/",
                     "/dashboard/files/zzzzz-4zz18-000000000000000/a.txt"):
            assert client.get(path).status_code == 401, path
        assert client.post(f"/dashboard/requests/{request['uuid']}/cancel").status_code == 401
        assert client.get("/dashboard/login").status_code == 200
    assert ok(service.admin().get(f"/container_requests/{request['uuid']}"))["priority"] == 500


def test_the_api_ignores_the_dashboard_cookie(service: RunningService, alice) -> None:
    _, client = alice
    assert client.get("/arvados/v1/container_requests").status_code == 401
    assert client.get("/arvados/v1/users/current").status_code == 401


def test_bad_input_is_a_clear_4xx_page_never_a_500(service: RunningService, alice) -> None:
    token, client = alice
    request = commit(service.client(token))
    uuid = request["uuid"]
    cases = {
        "/?page=0": (422, "page: must be a whole number from 1"),
        "/?page=-1": (422, "page: must be a whole number from 1"),
        "/?page=abc": (422, "page: must be a whole number from 1"),
        "/?page=%EF%BC%91": (422, "page: must be a whole number from 1"),  # a full-width digit one
        "/?page=" + "9" * 40: (422, "page: must be a whole number from 1"),
        "/?page=2": (404, "page 2 does not exist: there is 1 page"),
        "/?status=Exploded": (422, "status: &#39;Exploded&#39; is not one of Uncommitted, Queued"),
        "/?status=%00": (422, "is not one of"),
        "/?scope=everything": (422, "scope: must be one of top, all"),
        "/dashboard/requests/zzzzz-xvhdp-000000000000000": (404, "container request zzzzz-xvhdp-000000000000000 not found"),
        "/dashboard/requests/%00%ff": (404, "not found"),
        f"/dashboard/requests/{uuid}?children=0": (422, "children: must be a whole number from 1"),
        f"/dashboard/requests/{uuid}?children=2": (404, "page 2 does not exist"),
        f"/dashboard/requests/{uuid}?log=..%2Fsecret": (422, "is not a log file name"),
        f"/dashboard/requests/{uuid}/log/{request['container_uuid']}/..%2F..%2Fetc": (404, "no log file"),
        f"/dashboard/requests/{uuid}/log/{request['container_uuid']}/stdout.txt?follow=maybe": (422, ""),
        "/dashboard/files/zzzzz-4zz18-000000000000000/a.txt": (404, "collection zzzzz-4zz18-000000000000000 has no file"),
        "/dashboard/files/not-a-collection/a.txt": (404, "has no file"),
    }
    for path, (status, message) in cases.items():
        response = client.get(path)
        assert response.status_code == status, (path, response.status_code, response.text[:500])
        assert response.headers["content-type"].startswith("text/html"), path
        assert message in " ".join(_messages(response)), (path, _messages(response))
    unknown_action = client.post(f"/dashboard/requests/{uuid}/explode")
    assert unknown_action.status_code == 404 and "no action &#39;explode&#39;" in unknown_action.text
    assert client.get(f"/dashboard/requests/{uuid}/cancel").status_code == 405, "actions are POST only"


def test_users_see_only_their_own_requests(service: RunningService, alice) -> None:
    token, client = alice
    mine = commit(service.client(token), name="mine")
    theirs = commit(service.client(service.token("bob")), name="theirs")
    listed = ROW.findall(client.get("/").text)
    assert listed == [mine["uuid"]]
    assert client.get(f"/dashboard/requests/{theirs['uuid']}").status_code == 404
    assert client.post(f"/dashboard/requests/{theirs['uuid']}/cancel").status_code == 404
    assert client.get(f"/dashboard/requests/{theirs['uuid']}/log/").status_code == 404
    assert ok(service.admin().get(f"/container_requests/{theirs['uuid']}"))["priority"] == 500
    with logged_in(service, service.admin_token) as admin:
        assert set(ROW.findall(admin.get("/").text)) == {mine["uuid"], theirs["uuid"]}


def test_everything_a_user_wrote_is_escaped(service: RunningService, alice) -> None:
    token, client = alice
    evil = '<script>alert(1)</script>"\'&'
    request = commit(service.client(token), name=evil, description=evil)
    run(service.admin(), request["container_uuid"])
    ok(service.admin().put(f"/containers/{request['container_uuid']}", json={"runtime_status": {"error": evil}}))
    for page in (client.get("/"), client.get(f"/dashboard/requests/{request['uuid']}")):
        assert "<script>alert(1)" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"


def test_actions_are_refused_from_other_sites(service: RunningService, alice) -> None:
    token, client = alice
    request = commit(service.client(token))
    response = client.post(f"/dashboard/requests/{request['uuid']}/cancel", headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and "sent from another site" in response.text
    assert ok(service.client(token).get(f"/container_requests/{request['uuid']}"))["priority"] == 500
    same_site = client.post(f"/dashboard/requests/{request['uuid']}/cancel", headers={"Origin": service.url})
    assert same_site.status_code == 303
    assert ok(service.client(token).get(f"/container_requests/{request['uuid']}"))["state"] == "Final"


def test_hold_release_and_the_scheduling_status(service: RunningService, alice) -> None:
    token, client = alice
    request = commit(service.client(token))
    path = f"/dashboard/requests/{request['uuid']}"
    assert client.post(f"{path}/hold").headers["location"] == path
    page = client.get(path).text
    assert '<span class="status status-on-hold">On hold</span>' in page
    assert '<dd id="scheduling-status">On hold.</dd>' in page
    assert 'action-release' in page and 'action-hold' not in page
    client.post(f"{path}/release")
    assert ">Queued</span>" in client.get(path).text
    run(service.admin(), request["container_uuid"])
    refused = client.post(f"{path}/hold")
    assert refused.status_code == 422
    assert _messages(refused)[0] == "cannot hold a request whose container is Running: cancel it instead"


def test_fragments_hold_just_the_live_part(service: RunningService, alice) -> None:
    token, client = alice
    request = commit(service.client(token))
    fragment = client.get("/?partial=1").text
    assert fragment.lstrip().startswith("<table") and "<html" not in fragment
    detail = client.get(f"/dashboard/requests/{request['uuid']}?partial=1").text
    assert f'data-container="{request["container_uuid"]}"' in detail and "<html" not in detail


def test_the_event_stream_relays_the_users_events(service: RunningService, alice) -> None:
    token, client = alice
    request = commit(service.client(token))
    received: list[str] = []

    def read() -> None:
        with client.stream("GET", "/dashboard/events", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                received.append(line)
                if line.startswith("data:") and request["uuid"] in line:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.02)  # the stream is open once its first comment arrived
    ok(service.client(token).put(f"/container_requests/{request['uuid']}", json={"name": "renamed"}))
    reader.join(10)
    data = [json.loads(line[5:]) for line in received if line.startswith("data:")]
    assert [(d["object_uuid"], d["event_type"]) for d in data] == [(request["uuid"], "update")]


def test_the_log_endpoint_serves_live_lines_with_ranges(service: RunningService, alice) -> None:
    token, client = alice
    request = commit(service.client(token))
    container_uuid = request["container_uuid"]
    admin = service.admin()
    run(admin, container_uuid)  # the admin token locked it, so it may write the live log
    ok(admin.post(f"/containers/{container_uuid}/log", json={"files": {"stdout.txt": "one\ntwo\n"}}))
    path = f"/dashboard/requests/{request['uuid']}/log/{container_uuid}/stdout.txt"
    assert client.get(path).text == "one\ntwo\n"
    tail = client.get(path, headers={"Range": "bytes=4-"})
    assert (tail.status_code, tail.text) == (206, "two\n")
    page = client.get(f"/dashboard/requests/{request['uuid']}").text
    assert f'data-url="{path}" data-size="8"' in page.replace("\n       ", " ")


@pytest.fixture
def blob_service(store: Store, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(store, blob_root=tmp_path / "blobs")
    yield running
    running.stop()


def _upload(client: httpx.Client, files: dict[str, bytes]) -> str:
    manifest = {}
    for name, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        ok(client.put(f"/blobs/{sha}", content=data))
        manifest[name] = {"blob": sha, "size": len(data)}
    return ok(client.post("/collections", json={"manifest": manifest}))["portable_data_hash"]


def test_inputs_and_outputs_are_listed_and_download_as_attachments(blob_service: RunningService) -> None:
    token = blob_service.token("alice")
    api = blob_service.client(token)
    admin = blob_service.admin()
    pdh = _upload(api, {"reads/a.fq": b"@r1\nACGT\n", "evil.html": b"<script>alert(1)</script>"})
    mounts = {"/var/spool/cwl": {"kind": "tmp"}, "/keep/in": {"kind": "collection", "portable_data_hash": pdh},
              "/var/lib/cwl/cwl.input.json": {"kind": "json", "content": {"reads": "a.fq"}}}
    request = commit(api, mounts=mounts)
    run(admin, request["container_uuid"])
    output = _upload(admin, {"counts.txt": b"42\n"})
    ok(admin.put(f"/containers/{request['container_uuid']}", json={"state": "Complete", "exit_code": 0, "output": output}))
    with logged_in(blob_service, token) as client:
        page = client.get(f"/dashboard/requests/{request['uuid']}").text
        links = re.findall(r'href="(/dashboard/files/[^"]+)"', page)
        assert len(links) == 3, links  # two inputs, one output
        assert "&#34;reads&#34;: &#34;a.fq&#34;" in page  # the json mount's content
        downloads = {link.rsplit("/", 1)[-1]: client.get(link) for link in links}
        assert downloads["a.fq"].content == b"@r1\nACGT\n"
        assert downloads["counts.txt"].content == b"42\n"
        evil = downloads["evil.html"]
        assert evil.headers["content-disposition"] == "attachment; filename*=UTF-8''evil.html"
        assert evil.headers["content-type"] == "application/octet-stream"
        assert evil.headers["x-content-type-options"] == "nosniff"
    with logged_in(blob_service, blob_service.token("bob")) as bob:
        assert bob.get(links[0]).status_code == 404, "another user's collection is not theirs to read"


@pytest.mark.slow
def test_ten_thousand_requests_page_and_filter_in_the_database(service: RunningService, alice) -> None:
    _, client = alice
    seed_runs(service.store, user_uuid(service.store, "alice"), 10_000, steps=120)

    first = client.get("/")
    assert ROW.findall(first.text)[:2] == ["zzzzz-xvhdp-000000000009999", "zzzzz-xvhdp-000000000009998"]
    assert len(ROW.findall(first.text)) == 50
    assert re.search(r"1–50\s+of 10,000 requests · page 1 of 200", first.text), "workflow steps are not listed"
    last = client.get("/?page=200")
    assert ROW.findall(last.text)[-1] == "zzzzz-xvhdp-000000000000000"
    assert client.get("/?page=201").status_code == 404

    failing = client.get("/?status=Failing&page=20")
    assert re.search(r"951–1,000\s+of 1,000 requests · page 20 of 20", failing.text)
    assert ROW.findall(failing.text)[-1] == "zzzzz-xvhdp-000000000000000"
    assert failing.text.count(">Failing</span>") == 50
    completed = client.get("/?status=Completed&scope=all")
    assert re.search(r"of 9,120 requests", completed.text), "steps are listed with scope=all"
    assert client.get("/?status=Retrying").text.count("No top-level requests are Retrying.") == 1

    parent = client.get("/dashboard/requests/zzzzz-xvhdp-000000000009999?children=3").text
    assert re.search(r"101–120\s+of 120 steps · page 3 of 3", parent)


def test_the_dashboard_is_added_by_the_first_request_outside_the_api(service: RunningService) -> None:
    app = service._server.config.app
    paths = lambda: {getattr(route, "path", "") for route in app.routes}  # noqa: E731
    ok(service.client(service.token("alice")).get("/config"))
    assert "/dashboard/static" not in paths(), "an API request leaves it out"
    with httpx.Client(base_url=service.url, timeout=30) as browser:
        assert browser.get("/dashboard/nothing-here").status_code == 404  # added, and routed as always
        assert "/dashboard/static" in paths()
        assert browser.get("/", params={"token": service.token("alice")}).status_code == 303
        assert browser.get("/dashboard/static/dashboard.css").status_code == 200
