"""The dashboard's pure parts, by value: formatting, which buttons a request offers, query parameters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cwl_crunch.domain.errors import Invalid
from cwl_crunch.domain.status import possible_actions
from cwl_crunch.server.dashboard import formatting, params

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("seconds,text", [
    (0, "just now"), (4, "just now"), (42, "42 s ago"), (300, "5 min ago"), (7200, "2 h ago"),
    (86400, "1 day ago"), (3 * 86400 + 5, "3 days ago"),
])
def test_age_reads_in_the_largest_whole_unit(seconds, text):
    assert formatting.age(NOW - timedelta(seconds=seconds), NOW) == text


def test_costs_sizes_and_status_classes():
    assert formatting.cost(0.0) == "—"
    assert formatting.cost(1234.5) == "$1,234.50"
    assert [formatting.size(n) for n in (0, 1023, 1536, 5 << 20, 3 << 30)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 GiB"]
    assert formatting.slug("On hold") == "on-hold"
    assert formatting.iso(NOW) == "2026-11-22T10:00:00.000000Z"


@pytest.mark.parametrize("request_fields,container,actions", [
    ({"state": "Uncommitted"}, None, ()),
    ({"state": "Committed"}, {"state": "Queued"}, ("cancel", "hold")),
    ({"state": "Committed"}, {"state": "Locked"}, ("cancel", "hold")),
    ({"state": "Committed", "held": True}, {"state": "Queued"}, ("cancel", "release")),
    ({"state": "Committed"}, {"state": "Running"}, ("cancel",)),
    ({"state": "Committed", "priority": 0}, {"state": "Running"}, ()),
    ({"state": "Final"}, {"state": "Complete", "exit_code": 0}, ()),
    ({"state": "Final"}, {"state": "Complete", "exit_code": 1}, ("retry",)),
    ({"state": "Final"}, {"state": "Cancelled"}, ("retry",)),
    ({"state": "Final", "properties": {"retried_as": "zzzzz-xvhdp-000000000000001"}}, {"state": "Cancelled"}, ()),
])
def test_possible_actions(request_fields, container, actions):
    assert possible_actions({"priority": 500, **request_fields}, container) == actions


def test_page_numbers_are_whole_numbers_from_one():
    assert params.page_number(None) == 1
    assert params.page_number("") == 1
    assert params.page_number("12") == 12
    for bad in ("0", "-1", "1.5", "x", "１", "9" * 10):
        with pytest.raises(Invalid):
            params.page_number(bad)


def test_urls_keep_only_the_parameters_that_are_set():
    assert params.url("/", status=None, page=None) == "/"
    assert params.url("/", status="On hold", page=2) == "/?status=On+hold&page=2"
