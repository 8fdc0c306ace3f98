"""Bad input is a 4xx with a message naming the problem, never a 500 (SPEC §2).

One test per class of input that once reached a database or the response encoder and failed
there (found by tests/integration/test_openapi_fuzz.py), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import flows
from tests.support.service import RunningService, request_body


def refused(response: httpx.Response, status: int = 422) -> str:
    """The error messages as one text, for substring checks."""
    return " | ".join(flows.refused(response, status))


def raw_json(client: httpx.Client, method: str, path: str, text: str) -> httpx.Response:
    """Send `text` as the JSON body unchanged (httpx would re-encode a Python object)."""
    return client.request(method, path, content=text.encode(), headers={"Content-Type": "application/json"})


def filtered(client: httpx.Client, path: str, filters: Any) -> httpx.Response:
    return client.get(path, params={"filters": filters if isinstance(filters, str) else json.dumps(filters)})


@pytest.fixture
def alice(service: RunningService) -> httpx.Client:
    return service.client(service.token("alice"))


def test_lone_surrogates_are_refused_in_bodies_and_filters(service: RunningService, alice: httpx.Client) -> None:
    # Valid JSON, but "\ud800" is no character: neither database nor UTF-8 can hold it.
    message = refused(raw_json(alice, "POST", "/container_requests", '{"name": "\\ud800"}'))
    assert "body.name: strings must be valid Unicode" in message
    message = refused(raw_json(alice, "POST", "/collections", '{"properties": {"\\ud800": 1}}'))
    assert "strings must be valid Unicode" in message
    message = refused(filtered(alice, "/container_requests", '[["name", "=", "\\ud800"]]'))
    assert message.startswith("filters: not valid JSON (or not valid Unicode)")
    assert alice.get("/container_requests").json()["items"] == []


def test_json_nested_too_deep_is_refused_and_not_stored(service: RunningService, alice: httpx.Client) -> None:
    # Deep enough that the record, once stored, could not be serialised in any later response.
    deep = "[" * 300 + "]" * 300
    message = refused(raw_json(alice, "POST", "/container_requests", f'{{"properties": {{"a": {deep}}}}}'))
    assert message.endswith("body.properties: nested more than 64 levels deep")
    assert alice.get("/container_requests").json()["items"] == []
    shallow = {"a": json.loads("[" * 20 + "]" * 20)}
    assert alice.post("/container_requests", json={"properties": shallow}).status_code == 200


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_times_beyond_the_calendar_in_utc_are_refused(service: RunningService, alice: httpx.Client, when: str) -> None:
    # Valid ISO 8601, but converting them to UTC leaves the years 1..9999.
    body = request_body(expires_at=when)
    assert "expires_at: must be an RFC 3339 time" in refused(alice.post("/container_requests", json=body))
    body = request_body(scheduling_parameters={"not_before": when})
    message = refused(alice.post("/container_requests", json=body))
    assert "scheduling_parameters.not_before: must be an RFC 3339 time" in message
    message = refused(filtered(alice, "/containers", [["created_at", "<", when]]))
    assert message == "filters: created_at needs an ISO 8601 time"
    assert filtered(alice, "/containers", [["created_at", "<", "9999-12-31T22:59:59-01:00"]]).status_code == 200


def test_integer_filters_must_fit_the_column(service: RunningService, alice: httpx.Client) -> None:
    alice.post("/container_requests", json=request_body(priority=7))
    # container_requests.priority is a 32-bit column, containers.priority a 64-bit one.
    for path, bad_filter in [
        ("/container_requests", ["priority", "=", 2**40]),
        ("/container_requests", ["priority", "in", [1, 2**31]]),
        ("/containers", ["priority", ">", 2**63]),
    ]:
        assert "is not a valid value for priority" in refused(filtered(alice, path, [bad_filter]))
    assert len(filtered(alice, "/container_requests", [["priority", "<", 2**31 - 1]]).json()["items"]) == 1
    assert filtered(alice, "/containers", [["priority", "<", 2**62]]).status_code == 200
    assert filtered(alice, "/events/batch", [["id", ">", -(2**63)]]).status_code == 200


def test_booleans_are_compared_with_equality_only(service: RunningService, alice: httpx.Client) -> None:
    alice.post("/container_requests", json=request_body(use_existing=False))
    assert len(filtered(alice, "/container_requests", [["use_existing", "=", False]]).json()["items"]) == 1
    assert filtered(alice, "/container_requests", [["use_existing", "!=", False]]).json()["items"] == []
    assert filtered(alice, "/containers", [["has_error", "=", False]]).status_code == 200
    message = refused(filtered(alice, "/container_requests", [["use_existing", "<", True]]))
    assert message == "filters: true can only be compared with = or !="


@pytest.mark.parametrize(
    "bad_filter",
    [
        ["properties.a\0b", "exists", None],  # PostgreSQL: no NUL in text
        ["properties", "exists", "a\0b"],
        ['properties.a"b', "exists", None],  # SQLite: a JSON path cannot quote a double quote
        ["properties", "exists", 'a"b'],
        ['properties.a"b', "=", "x"],
    ],
)
def test_json_keys_the_databases_cannot_look_up_are_refused(
    service: RunningService, alice: httpx.Client, bad_filter: list[Any]
) -> None:
    assert "is not a usable key (1 to 255 characters, no double quote or NUL)" in refused(
        filtered(alice, "/container_requests", [bad_filter])
    )


def test_json_keys_with_other_punctuation_still_work(service: RunningService, alice: httpx.Client) -> None:
    alice.post("/container_requests", json={"properties": {"it's a.b$[0]": "yes"}})
    found = filtered(alice, "/container_requests", [["properties.it's a.b$[0]", "=", "yes"]]).json()["items"]
    assert len(found) == 1
    assert len(filtered(alice, "/container_requests", [["properties", "exists", "it's a.b$[0]"]]).json()["items"]) == 1


def test_like_patterns_must_not_end_with_a_lone_backslash(service: RunningService, alice: httpx.Client) -> None:
    message = refused(filtered(alice, "/container_requests", [["name", "like", "test\\"]]))
    assert message == "filters: a like pattern must not end with a lone backslash"
    assert filtered(alice, "/container_requests", [["name", "like", "test\\\\"]]).status_code == 200


def test_dispatcher_fields_fit_their_columns_and_uuids_are_checked(service: RunningService) -> None:
    admin = service.admin()
    message = refused(admin.post("/dispatchers", json={"backend": "b" * 33}))
    assert message == "backend: must be a string of at most 32 characters"
    assert admin.post("/dispatchers", json={"backend": "b" * 32}).status_code == 200
    # Malformed uuids (a NUL, far too long) are unknown dispatchers, not database errors.
    for uuid in ["%00", "zzzzz-dsptc-00000000000000%00", "x" * 3000]:
        assert refused(admin.get(f"/dispatchers/{uuid}"), 404).startswith("dispatcher ")
        assert refused(admin.post(f"/dispatchers/{uuid}/ping"), 404).startswith("dispatcher ")
