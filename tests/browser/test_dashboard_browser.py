"""The dashboard in a real browser (SPEC §12), over a service driven through the API as a dispatcher would.

Each test runs on SQLite and PostgreSQL; containers are moved by hand (tests/support/flows.py),
so what the page must show is known exactly. Runs with real containers are in test_live_runs.py.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.browser import expect, is_amber, is_red, log_in
from tests.support.flows import commit, ok, run
from tests.support.seeding import seed_runs, user_uuid
from tests.support.service import RunningService

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

ERROR = 'step align (zzzzz-xvhdp-0123456789abcde) failed: exit code 1 <script>alert("x")</script>'
COUNTERS = {"jobsComplete": 12, "jobsRunning": 3, "jobsWaiting": 5, "jobsFailed": 1}


def _running(service: RunningService, token: str, **overrides: object) -> dict:
    """A committed request of the token's user whose container is Running."""
    request = commit(service.client(token), **overrides)
    run(service.admin(), request["container_uuid"])
    return request


def _set_runtime_status(service: RunningService, container_uuid: str, **status: object) -> None:
    ok(service.admin().put(f"/containers/{container_uuid}", json={"runtime_status": status}))


def _label(page: Page, request: dict) -> Locator:
    return page.locator(f'tr[data-uuid="{request["uuid"]}"] .status')


def _background(locator: Locator) -> str:
    return locator.evaluate("element => getComputedStyle(element).backgroundColor")


def _mark_page(page: Page) -> None:
    """Remember this document: `_same_page` is False once the browser has loaded another one."""
    page.evaluate("window.sameDocument = true")


def _same_page(page: Page) -> bool:
    return page.evaluate("window.sameDocument === true")


def test_a_failing_run_turns_red_live_with_its_error_in_the_tooltip_and_on_the_detail_page(service, page):
    token = service.token("alice")
    request = _running(service, token, name="doomed run")
    log_in(page, service.url, token)
    label = _label(page, request)
    expect(label).to_have_text("Running")
    _mark_page(page)

    _set_runtime_status(service, request["container_uuid"], error=ERROR, errorDetail="Traceback: line 1")

    expect(label).to_have_text("Failing")  # through the event stream, without reloading
    assert _same_page(page)
    expect(label).to_have_attribute("title", ERROR)
    assert is_red(_background(label)), _background(label)

    page.get_by_role("link", name="doomed run").click()
    banner = page.locator("#error")
    expect(banner.locator(".message")).to_have_text(ERROR)  # escaped: the script tag is text
    expect(page.locator("h1 .status")).to_have_text("Failing")
    assert banner.bounding_box()["y"] < page.locator(".facts").bounding_box()["y"], "the error comes first"


def test_a_warning_is_amber_with_the_warning_as_tooltip(service, page):
    token = service.token("alice")
    request = _running(service, token, name="slow run")
    _set_runtime_status(service, request["container_uuid"], warning="container using over 90% of memory")
    log_in(page, service.url, token)
    label = _label(page, request)
    expect(label).to_have_text("Warning")
    expect(label).to_have_attribute("title", "container using over 90% of memory")
    assert is_amber(_background(label)), _background(label)


def test_the_counters_shown_are_the_runners_runtime_status_and_follow_it(service, page):
    token = service.token("alice")
    request = _running(service, token, name="workflow")
    _set_runtime_status(service, request["container_uuid"], activity="workflow execution", **COUNTERS)
    log_in(page, service.url, token)
    counters = page.locator(f'tr[data-uuid="{request["uuid"]}"] .counters')
    expect(counters).to_have_text("12 complete · 3 running · 5 waiting · 1 failed")

    page.get_by_role("link", name="workflow").click()
    expect(page.locator(".facts .counters")).to_have_text("12 complete · 3 running · 5 waiting · 1 failed")
    expect(page.locator("#activity")).to_have_text("workflow execution")
    _mark_page(page)
    _set_runtime_status(service, request["container_uuid"], jobsComplete=13, jobsRunning=2)
    expect(page.locator(".facts .counters")).to_have_text("13 complete · 2 running · 5 waiting · 1 failed")
    assert _same_page(page)


def test_an_action_the_api_refuses_shows_its_message(service, page):
    token = service.token("alice")
    request = _running(service, token, name="running")
    log_in(page, service.url, token)
    page.goto(f"{service.url}/dashboard/requests/{request['uuid']}")
    expect(page.locator("button.action-cancel")).to_be_visible()
    expect(page.locator("button.action-hold")).to_have_count(0)  # not offered for a Running request

    # As a page opened while the request was still Queued would send it:
    with page.expect_navigation() as navigation:
        page.evaluate("""uuid => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = `/dashboard/requests/${uuid}/hold`;
            document.body.append(form);
            form.submit();
        }""", request["uuid"])
    assert navigation.value.status == 422
    expect(page.locator(".banner-refused .message")).to_have_text(
        "cannot hold a request whose container is Running: cancel it instead")
    expect(page.locator("h1 .status")).to_have_text("Running")


def test_retry_of_a_failed_request_shows_the_new_request(service, page):
    token = service.token("alice")
    request = _running(service, token, name="flaky")
    ok(service.admin().put(f"/containers/{request['container_uuid']}",
                           json={"state": "Cancelled", "runtime_status": {"cause": "setup", "error": "no such command"}}))
    log_in(page, service.url, token)
    page.goto(f"{service.url}/dashboard/requests/{request['uuid']}")
    expect(page.locator("h1 .status")).to_have_text("Failed")
    page.locator("button.action-retry").click()
    expect(page.locator(".facts a", has_text=request["uuid"])).to_be_visible()  # "Retry of <old uuid>"
    expect(page.locator("h1 .status")).to_have_text("Queued")
    new_uuid = page.url.rsplit("/", 1)[-1]
    assert new_uuid != request["uuid"]
    assert ok(service.client(token).get(f"/container_requests/{new_uuid}"))["properties"]["retry_of"] == request["uuid"]


def test_login_by_the_printed_url_or_the_form_and_logout(service, page):
    token = service.token("alice")
    response = page.goto(f"{service.url}/?token=not-a-valid-token")
    assert response.status == 401
    expect(page.locator(".banner-error")).to_have_text("That token is not valid.")
    assert page.context.cookies() == []
    page.goto(f"{service.url}/")
    assert page.url == f"{service.url}/dashboard/login"

    log_in(page, service.url, token)  # lands on "/", the token gone from the address bar
    (cookie,) = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/")
    assert page.evaluate("document.cookie") == "", "scripts must not see the token"
    api = page.request.get(f"{service.url}/arvados/v1/container_requests")
    assert api.status == 401, "the JSON API takes bearer tokens only, never the dashboard's cookie"

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{service.url}/dashboard/login")
    assert page.context.cookies() == []
    page.locator("#token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{service.url}/")
    expect(page.locator("h1")).to_have_text("Container requests")


@pytest.mark.slow
def test_ten_thousand_requests_paginate_and_filter_by_status(service, page):
    token = service.token("alice")
    seed_runs(service.store, user_uuid(service.store, "alice"), 10_000)
    log_in(page, service.url, token)
    rows = page.locator("table.requests tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first.locator(".name")).to_have_text("run 09999")
    expect(page.locator(".pager .position")).to_have_text(re.compile(r"1–50\s+of 10,000 requests · page 1 of 200"))

    page.get_by_role("link", name="older ›").click()
    expect(rows.first.locator(".name")).to_have_text("run 09949")
    page.get_by_role("link", name="oldest »").click()
    position = page.locator(".pager .position")
    expect(position).to_have_text(re.compile(r"9,951–10,000\s+of 10,000 requests · page 200 of 200"))
    expect(rows.last.locator(".name")).to_have_text("run 00000")

    page.locator("select[name=status]").select_option("Failing")  # submits the filter by itself
    expect(page.locator(".pager .position")).to_have_text(re.compile(r"1–50\s+of 1,000 requests · page 1 of 20"))
    expect(rows.first.locator(".name")).to_have_text("run 09990")
    assert set(page.locator("table.requests .status").all_inner_texts()) == {"Failing"}
    _print_timings(service, token)


def _print_timings(service: RunningService, token: str) -> None:
    """Reported, not asserted: the time a page takes with 10,000 requests (run with -s to see it)."""
    with httpx.Client(base_url=service.url) as client:
        client.get("/", params={"token": token})
        for path in ("/", "/?page=200", "/?status=Failing", "/?status=Completed&page=180"):
            times = []
            for _ in range(5):
                began = time.perf_counter()
                assert client.get(path).status_code == 200
                times.append(time.perf_counter() - began)
            print(f"{service.store.dialect}: GET {path} with 10,000 requests: best {min(times) * 1000:.1f} ms "
                  f"of 5, median {sorted(times)[2] * 1000:.1f} ms")
