"""The dashboard watching real containers: the API server, a real `crunchctl dispatch` and crunch-runs
in bubblewrap (tests/support/cluster.py), and chromium looking at them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.browser import expect, log_in
from tests.support.cluster import Cluster, sqlite_cluster
from tests.support.flows import ok

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow
GiB = 1 << 30
# About six seconds of output, a line every 0.3 s: several live-log batches (one a second).
PRINTER = "for i in $(seq 1 20); do echo line $i; sleep 0.3; done"


@pytest.fixture
def cluster(tmp_path: Path, sqlite_template: Path) -> Iterator[Cluster]:
    """A service over SQLite with a blob store; each test starts the dispatcher when it wants one."""
    with sqlite_cluster(tmp_path, sqlite_template) as running:
        yield running


def _start_dispatcher(cluster: Cluster) -> None:
    cluster.start_dispatcher("--vcpus", "4", "--ram", str(4 * GiB))


def _open_request(page: Page, cluster: Cluster, token: str, request: dict) -> None:
    log_in(page, cluster.service.url, token)
    page.goto(f"{cluster.service.url}/dashboard/requests/{request['uuid']}")


def _tail_lines(page: Page) -> int:
    return page.evaluate("(document.getElementById('log-tail').textContent.match(/ line \\d+$/gm) || []).length")


def test_the_log_tail_grows_while_the_container_prints(cluster, page):
    _start_dispatcher(cluster)
    token = cluster.service.token("alice")
    request = cluster.submit(cluster.service.client(token), name="printer", command=["sh", "-c", PRINTER])
    cluster.wait_for(request["container_uuid"], lambda c: c["state"] == "Running")
    _open_request(page, cluster, token, request)
    page.evaluate("window.sameDocument = true")

    page.wait_for_function("() => / line \\d+$/m.test(document.getElementById('log-tail').textContent)")
    seen = _tail_lines(page)
    assert seen < 20, "the container had finished before the page could watch it grow"
    page.wait_for_function(
        f"() => (document.getElementById('log-tail').textContent.match(/ line \\d+$/gm) || []).length > {seen}")
    page.wait_for_function("() => / line 20$/m.test(document.getElementById('log-tail').textContent)",
                           timeout=30_000)
    assert page.evaluate("window.sameDocument === true"), "the tail must grow without reloading the page"
    assert _tail_lines(page) == 20, page.locator("#log-tail").text_content()
    cluster.wait_final(request["container_uuid"])
    expect(page.locator("h1 .status")).to_have_text("Completed")  # and the page noticed the end, live


def test_the_cancel_button_stops_a_running_request(cluster, page):
    _start_dispatcher(cluster)
    token = cluster.service.token("alice")
    request = cluster.submit(cluster.service.client(token), name="sleeper",
                             command=["sh", "-c", "echo started; sleep 120"])
    cluster.wait_for(request["container_uuid"], lambda c: c["state"] == "Running")
    _open_request(page, cluster, token, request)
    expect(page.locator("h1 .status")).to_have_text("Running")

    began = time.monotonic()
    page.locator("button.action-cancel").click()
    expect(page.locator("h1 .status")).to_have_text("Cancelling")  # the page after the POST
    container = cluster.wait_final(request["container_uuid"], timeout=30)
    assert container["state"] == "Cancelled" and time.monotonic() - began < 30
    expect(page.locator("h1 .status")).to_have_text("Cancelled")  # live, through the event stream
    assert ok(cluster.service.client(token).get(f"/container_requests/{request['uuid']}"))["state"] == "Final"


def test_a_held_request_is_not_dispatched_until_released(cluster, page):
    token = cluster.service.token("alice")
    user = cluster.service.client(token)
    held = cluster.submit(user, name="held", command=["echo", "released at last"])
    _open_request(page, cluster, token, held)
    expect(page.locator("h1 .status")).to_have_text("Queued")
    page.locator("button.action-hold").click()
    expect(page.locator("h1 .status")).to_have_text("On hold")
    expect(page.locator("#scheduling-status")).to_have_text("On hold.")

    # A dispatcher that runs other work meanwhile leaves the held request alone.
    _start_dispatcher(cluster)
    other = cluster.submit(user, name="other", command=["true"])
    cluster.wait_final(other["container_uuid"])
    assert cluster.container(held["container_uuid"])["state"] == "Queued"
    expect(page.locator("h1 .status")).to_have_text("On hold")

    page.locator("button.action-release").click()
    container = cluster.wait_final(held["container_uuid"], timeout=30)
    assert (container["state"], container["exit_code"]) == ("Complete", 0)
    expect(page.locator("h1 .status")).to_have_text("Completed")
    expect(page.locator("#log-tail")).to_contain_text("released at last")
