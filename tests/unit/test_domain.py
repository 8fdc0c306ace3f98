"""Pure domain rules, tested by value."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cwl_crunch.domain import retry, runtime_status
from cwl_crunch.domain.collections import nest, portable_data_hash, validate_manifest
from cwl_crunch.domain.errors import Invalid, InvalidTransition
from cwl_crunch.domain.priority import container_priority, request_priority_of, request_rank
from cwl_crunch.domain.reuse import differences, field_digests, reuse_fields, reuse_key
from cwl_crunch.domain.states import ContainerState, require_container_transition, require_request_transition
from cwl_crunch.domain.status import derived_status
from cwl_crunch.domain.validation import validate_for_commit

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


def test_transition_messages_name_both_states():
    with pytest.raises(InvalidTransition, match="^cannot change state from Cancelled to Running$"):
        require_container_transition(ContainerState.CANCELLED, ContainerState.RUNNING)
    with pytest.raises(InvalidTransition, match=r"^cannot change state from \(new\) to Locked$"):
        require_container_transition(None, ContainerState.LOCKED)
    require_container_transition(ContainerState.LOCKED, ContainerState.QUEUED)
    require_request_transition(None, "Committed")  # type: ignore[arg-type]


@pytest.mark.parametrize("attempts,seconds", [(1, 2), (2, 4), (3, 8), (8, 256), (9, 300), (100, 300)])
def test_backoff_doubles_from_two_seconds_capped_at_five_minutes(attempts, seconds):
    assert retry.backoff(attempts) == timedelta(seconds=seconds)


@pytest.mark.parametrize("cause", ["setup", "unsatisfiable", "timeout", "user", "process", None])
def test_only_infrastructure_failures_are_retried(cause):
    assert not retry.should_retry(cause, 1, 3)
    assert retry.should_retry("infrastructure", 1, 3)
    assert not retry.should_retry("infrastructure", 3, 3)


def test_priority_orders_by_request_priority_then_age():
    old = request_rank(500, NOW)
    new = request_rank(500, NOW + timedelta(seconds=1))
    higher = request_rank(501, NOW + timedelta(days=365))
    assert higher > old > new > 0
    assert request_rank(0, NOW) == 0
    assert container_priority([old, 0, new]) == old
    assert container_priority([]) == 0
    assert request_priority_of(old) == 500


def test_reuse_key_ignores_map_order_and_fills_constraint_defaults():
    a = {"command": ["x"], "environment": {"A": "1", "B": "2"}, "runtime_constraints": {}}
    b = {"command": ["x"], "environment": {"B": "2", "A": "1"}, "runtime_constraints": {"vcpus": 1, "API": False}}
    assert reuse_key(reuse_fields(a)) == reuse_key(reuse_fields(b))
    c = {**a, "command": ["y"]}
    assert reuse_key(reuse_fields(a)) != reuse_key(reuse_fields(c))
    differing = [k for k, v in field_digests(reuse_fields(c)).items() if field_digests(reuse_fields(a))[k] != v]
    assert differing == ["command"]


def test_secret_mounts_enter_the_key_only_as_a_digest():
    fields = reuse_fields({"secret_mounts": {"/s": {"kind": "text", "content": "hunter2"}}})
    assert "hunter2" not in str(fields)
    other = reuse_fields({"secret_mounts": {"/s": {"kind": "text", "content": "other"}}})
    assert reuse_key(fields) != reuse_key(other)


def test_collection_mounts_compare_by_content_hash():
    pdh = "a" * 64 + "+10"
    by_uuid = reuse_fields({"mounts": {"/in": {"kind": "collection", "portable_data_hash": pdh, "uuid": "x"}}})
    by_hash = reuse_fields({"mounts": {"/in": {"kind": "collection", "portable_data_hash": pdh}}})
    assert reuse_key(by_uuid) == reuse_key(by_hash)


def test_differences_are_leaf_paths():
    assert differences({"ram": 4, "vcpus": 1}, {"ram": 8, "vcpus": 1}, "runtime_constraints") == [
        "runtime_constraints.ram: 4 != 8"
    ]
    assert differences({"A": "1"}, {}, "environment") == ['environment.A: "1" != (absent)']


def test_runtime_status_merge_and_validation():
    assert runtime_status.merge({"a": "1", "error": "x"}, {"error": None, "b": "2"}) == {"a": "1", "b": "2"}
    with pytest.raises(Invalid):
        runtime_status.validate_patch({"warning": 3})
    with pytest.raises(Invalid):
        runtime_status.validate_patch(["not", "a", "dict"])
    assert runtime_status.validate_patch({"jobsFailed": 2, "custom": [1]}) == {"jobsFailed": 2, "custom": [1]}


def _spec(**overrides):
    spec = {"command": ["true"], "cwd": "/", "output_path": "/out", "mounts": {"/out": {"kind": "tmp"}}, "priority": 1}
    spec.update(overrides)
    return spec


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"output_path": "/elsewhere"}, "output_path: '/elsewhere' must be the target of a mount"),
        ({"command": []}, "command: must be a non-empty list of strings"),
        ({"environment": {"A=B": "1"}}, "environment: invalid variable name 'A=B'"),
        ({"environment": {"A": 1}}, "environment.A: must be a string"),
        ({"runtime_constraints": {"ram": 0}}, "runtime_constraints.ram: must be a positive integer"),
        ({"runtime_constraints": {"vcpus": 1.5}}, "runtime_constraints.vcpus: must be a positive integer"),
        ({"priority": 1001}, "priority: must be an integer from 0 to 1000"),
        ({"mounts": {"/out": {"kind": "nfs"}}}, "mounts['/out'].kind: must be one of collection, file, json, text, tmp"),
        ({"mounts": {"/out": {"kind": "tmp"}, "stdout": {"kind": "file", "path": "/etc/passwd"}}},
         "mounts['stdout'].path: stdout must be a file under output_path"),
        ({"scheduling_parameters": {"not_before": "tomorrow"}}, "scheduling_parameters.not_before: must be an RFC 3339 time"),
    ],
)
def test_commit_validation_names_the_field(overrides, message):
    with pytest.raises(Invalid) as caught:
        validate_for_commit(_spec(**overrides))
    assert message in caught.value.messages


def test_portable_data_hash_is_content_addressed():
    one = {"a.txt": {"blob": "a" * 64, "size": 1}, "b/": {}}
    same = {"b/": {}, "a.txt": {"size": 1, "blob": "a" * 64}}
    assert portable_data_hash(one) == portable_data_hash(same)
    digest, size = portable_data_hash(one).split("+")
    assert len(digest) == 64 and int(size) > 0
    assert nest({"x": 1}, "log for container c") == {"log for container c/x": 1}
    with pytest.raises(Invalid):
        validate_manifest({"../etc/passwd": {"blob": "a" * 64, "size": 1}})


@pytest.mark.parametrize(
    "request_fields,container,expected",
    [
        ({"state": "Uncommitted"}, None, "Uncommitted"),
        ({"state": "Committed", "held": True}, {"state": "Queued"}, "On hold"),
        ({"state": "Committed", "priority": 0}, {"state": "Running"}, "Cancelling"),
        ({"state": "Committed", "container_count": 2}, {"state": "Queued"}, "Retrying"),
        ({"state": "Committed"}, {"state": "Running", "runtime_status": {"error": "x"}}, "Failing"),
        ({"state": "Committed"}, {"state": "Running", "runtime_status": {"warning": "x"}}, "Warning"),
        ({"state": "Final"}, {"state": "Complete", "exit_code": 0, "finished_at": NOW}, "Completed"),
        ({"state": "Final"}, {"state": "Complete", "exit_code": 0, "finished_at": NOW - timedelta(1)}, "Reused"),
        ({"state": "Final"}, {"state": "Complete", "exit_code": 1, "finished_at": NOW}, "Failed"),
        ({"state": "Final"}, {"state": "Cancelled", "runtime_status": {"cause": "setup"}}, "Failed"),
        ({"state": "Final"}, {"state": "Cancelled", "runtime_status": {"cause": "user"}}, "Cancelled"),
    ],
)
def test_derived_status(request_fields, container, expected):
    request = {"priority": 500, "container_count": 1, "created_at": NOW, **request_fields}
    assert derived_status(request, container) == expected


def test_identifiers_with_a_trailing_newline_are_refused() -> None:
    """`$` would match before a final newline; every identifier pattern must match the whole string."""
    from cwl_crunch.domain.uuids import UUID_RE
    from cwl_crunch.domain.validation import PDH_RE

    blob = "a" * 64
    with pytest.raises(Invalid):
        validate_manifest({"f": {"blob": blob + "\n", "size": 1}})
    assert validate_manifest({"f": {"blob": blob, "size": 1}})
    assert not PDH_RE.match(blob + "+1\n") and PDH_RE.match(blob + "+1")
    assert not UUID_RE.match("zzzzz-dz642-aaaaaaaaaaaaaaa\n") and UUID_RE.match("zzzzz-dz642-aaaaaaaaaaaaaaa")
