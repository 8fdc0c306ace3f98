"""Fuzz every operation of the published OpenAPI document against a live service (SPEC §2).

Bad input must never be a 500, on SQLite and on PostgreSQL alike (PostgreSQL is the strict one:
type mismatches, NUL characters and integer overflows surface there), and every client error
explains itself as `{"errors": ["...", ...]}`.

Per operation and role (admin, normal user) the run sends:
- schemathesis's deterministic coverage cases (missing, empty, boundary and wrongly typed values);
- EXAMPLES schema-valid and EXAMPLES schema-invalid cases that Hypothesis generates from the
  document, derandomised so CI is reproducible; about half of them are sharpened where the
  document only says "string" or "object": JSON in `filters`/`order`/`select`, hostile values in
  body fields, path parameters naming seeded objects or hostile strings;
- a deterministic sweep of hostile values through every filterable attribute, every body field
  (against seeded objects whose fields are still writable) and every path parameter.

Schemathesis's own pytest plugin is not used: it does not work with the pytest we run.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy import JSON

from cwl_crunch.store.query import OPERATORS
from cwl_crunch.store.schema import collections, container_requests, containers, events
from tests.support.service import RunningService, request_body

EXAMPLES = 20  # per operation, generation mode and role
ROLES = ("admin", "user")
# The live event stream never ends; its JSON twin /events/batch is fuzzed instead.
EXCLUDED = {("GET", "/arvados/v1/events")}

# -- hostile values where the document says only "string" or "object" ----------------------

DEEP = json.loads("[" * 300 + "]" * 300)  # deeper than a response can be serialised
STRINGS = [
    "", "\0", "a\0b", "\ud800", "\\", "a\\", '"', "'", "%", "_", "😀", "x" * 5000, "/", "..", "$[0]", "a.b",
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-02-30", "zzzzz-dz642-000000000000000",
    "0" * 64 + "+1",
]
NUMBERS = [0, -1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**400, 1e308, -1e308, 5e-324, 0.5, True, False]
scalars = st.one_of(st.sampled_from([*STRINGS, *NUMBERS, None, DEEP]), st.text(max_size=12), st.integers())
keys = st.one_of(st.sampled_from(STRINGS), st.text(max_size=8))
hostile_json = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=6,
)

_TABLES = (containers, container_requests, collections, events)
ATTRIBUTES = sorted({column.name for table in _TABLES for column in table.c})
_JSON_ATTRIBUTES = ["properties", "runtime_status", "mounts", "runtime_constraints", "manifest", "environment"]
attribute = st.one_of(
    st.sampled_from(ATTRIBUTES),
    st.builds(lambda name, key: f"{name}.{key}", st.sampled_from(_JSON_ATTRIBUTES), keys),
    st.sampled_from(STRINGS),
)
a_filter = st.tuples(attribute, st.sampled_from([*sorted(OPERATORS), "~", ""]), hostile_json).map(list)
QUERY_TWEAKS = {
    "filters": st.one_of(st.lists(a_filter, max_size=3), hostile_json).map(json.dumps),
    "order": st.one_of(
        st.lists(st.builds(str.__add__, attribute, st.sampled_from(["", " asc", " desc", " sideways"])), max_size=3)
        .map(json.dumps),
        st.builds(str.__add__, attribute, st.sampled_from(["", " desc", ",uuid"])),
    ),
    "select": st.lists(attribute, max_size=3).map(json.dumps),
}
PATH_STRINGS = ["\0", "zzzzz-dsptc-00000000000000\0", "x" * 3000, "zzzzz-xvhdp-000000000000000", "0" * 64 + "+9" * 30]

# The sweep: one value per kind of trouble a database can have with it.
SWEEP_OPERANDS = [2**40, 2**63, True, "9999-12-31T23:59:59-01:00", "a\0b", "\ud800"]
SWEEP_KEYS = ["a\0b", 'a"b', "\ud800", "x" * 300]
SWEEP_BODY_VALUES = [
    "\ud800", {"\ud800": "\0"}, {"deep": DEEP}, 2**63, 10**400, "9999-12-31T23:59:59-01:00", "x" * 100, "x" * 5000,
    {"a": [2**64, -1e308]},
]
TABLE_OF_LIST = {
    "/arvados/v1/container_requests": container_requests,
    "/arvados/v1/containers": containers,
    "/arvados/v1/collections": collections,
    "/arvados/v1/events/batch": events,
}


def filter_sweep(table: Any) -> Iterator[list[Any]]:
    """Filters trying each kind of trouble on each attribute of `table`."""
    for column in table.c:
        for operand in SWEEP_OPERANDS:
            yield [column.name, "=", operand]
        yield [column.name, "<", True]
        yield [column.name, "like", "a\\"]
        yield [column.name, "in", [2**40, 2**63]]
        if isinstance(column.type, JSON):
            for key in SWEEP_KEYS:
                yield [f"{column.name}.{key}", "exists", None]
                yield [column.name, "exists", key]


@dataclass
class Seeded:
    """Real objects in the database, by the path parameter that can name them."""

    requests: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    dispatchers: list[str] = field(default_factory=list)
    # Objects whose attributes are still writable, for the body sweep.
    draft_request: str = ""
    running_container: str = ""

    def writable(self, path: str) -> str | None:
        if path.startswith("/arvados/v1/container_requests/"):
            return self.draft_request
        if path.startswith("/arvados/v1/containers/"):
            return self.running_container
        return None

    def candidates(self, path: str, parameter: str) -> list[str]:
        if parameter == "uuid_or_pdh":
            return self.collections
        for prefix, values in (
            ("/arvados/v1/container_requests/", self.requests),
            ("/arvados/v1/containers/", self.containers),
            ("/arvados/v1/dispatchers/", self.dispatchers),
        ):
            if path.startswith(prefix):
                return values
        return []


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def seed(service: RunningService) -> Seeded:
    """Queued, Running, cancelled and draft requests, a collection and a dispatcher."""
    alice = service.client(service.token("alice"))
    admin = service.admin()
    queued = _ok(alice.post("/container_requests", json=request_body(name="queued")))
    running = _ok(alice.post("/container_requests", json=request_body(name="running", command=["sleep", "9"])))
    cancelled = _ok(alice.post("/container_requests", json=request_body(name="cancelled", command=["true"])))
    draft = _ok(alice.post("/container_requests", json=request_body(name="draft", state="Uncommitted")))
    _ok(alice.patch(f"/container_requests/{cancelled['uuid']}", json={"priority": 0}))
    dispatcher = _ok(admin.post("/dispatchers", json={"name": "fuzz", "hostname": "localhost", "backend": "local"}))
    _ok(admin.post(f"/containers/{running['container_uuid']}/lock", json={"dispatcher_uuid": dispatcher["uuid"]}))
    _ok(admin.patch(f"/containers/{running['container_uuid']}", json={"state": "Running"}))
    manifest = {"out.txt": {"blob": "0" * 64, "size": 3}, "logs/": {}}
    collection = _ok(alice.post("/collections", json={"name": "fuzz", "manifest": manifest}))
    return Seeded(
        requests=[queued["uuid"], running["uuid"], cancelled["uuid"], draft["uuid"]],
        containers=[queued["container_uuid"], running["container_uuid"], cancelled["container_uuid"]],
        collections=[collection["uuid"], collection["portable_data_hash"]],
        dispatchers=[dispatcher["uuid"]],
        draft_request=draft["uuid"],
        running_container=running["container_uuid"],
    )


def body_fields(document: dict[str, Any], operation: Any) -> list[str]:
    """The attributes of an operation's JSON body, from the OpenAPI document."""
    definition = document["paths"][operation.path][operation.method.lower()]
    schema = definition.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    for alternative in [schema, *schema.get("anyOf", [])]:
        if "$ref" in alternative:
            return sorted(document["components"]["schemas"][alternative["$ref"].rsplit("/", 1)[1]]["properties"])
    return []


# -- running and judging cases ---------------------------------------------------------------


class ServerErrors(logging.Handler):
    """Collects the exceptions the service logged for its 500s (it runs in this process)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            first_line = str(error).splitlines()[0][:300] if str(error) else ""
            self.seen.append(f"{type(error).__name__}: {first_line}")


@pytest.fixture
def server_errors() -> Iterator[ServerErrors]:
    handler = ServerErrors()
    logger = logging.getLogger("cwl_crunch")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def error_shape_problem(response: Any) -> str | None:
    """Why a 4xx body is not `{"errors": [non-empty strings]}`, or None if it is."""
    try:
        body = response.json()
    except ValueError:
        return f"4xx body is not JSON: {response.text[:200]!r}"
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"errors"} or not isinstance(errors, list) or not errors:
        return f"4xx body is not {{'errors': [...]}}: {body!r}"[:300]
    if not all(isinstance(e, str) and e for e in errors):
        return f"4xx errors are not all non-empty strings: {errors!r}"[:300]
    return None


@dataclass
class Run:
    """One role's fuzzing run: what it sent, what came back, what was wrong."""

    schema: Any
    document: dict[str, Any]
    seeded: Seeded
    headers: dict[str, str]
    server_errors: ServerErrors
    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    problems: dict[tuple[str, str], str] = field(default_factory=dict)
    seconds: Counter[str] = field(default_factory=Counter)  # per phase

    def check(self, operation: Any, case: Any) -> None:
        """Send one case; record a 5xx (with the exception the server logged) or a malformed 4xx."""
        logged = len(self.server_errors.seen)
        response = case.call(headers=self.headers, timeout=30)
        self.calls[operation.label] += 1
        self.statuses[response.status_code] += 1
        problem = None
        if response.status_code >= 500:
            problem = f"{response.status_code}: {'; '.join(self.server_errors.seen[logged:]) or response.text[:200]}"
        elif response.status_code >= 400:
            problem = error_shape_problem(response)
        if problem is not None:
            self.problems.setdefault((operation.label, problem), case.as_curl_command(headers=self.headers))

    def coverage(self, operation: Any) -> None:
        """Schemathesis's deterministic boundary cases for one operation."""
        config = self.schema.config.generation_for(operation=operation)
        modes = list(GenerationMode)
        for case in self.schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=config):
            self.check(operation, case)

    def fuzz(self, operation: Any) -> None:
        """Generated schema-valid cases, then schema-invalid ones."""
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            self.generated(operation, mode)

    def generated(self, operation: Any, mode: GenerationMode) -> None:
        """EXAMPLES cases generated by Hypothesis, about half of them sharpened by `sharpen`."""

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: each problem is recorded as sent
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
        def send(case: Any, data: st.DataObject) -> None:
            if data.draw(st.booleans(), label="sharpen"):
                self.sharpen(operation, case, data)
            self.check(operation, case)

        try:
            send()
        except Unsatisfiable:
            # Nothing schema-invalid can be sent (e.g. only a free-form string in the path).
            assert mode == GenerationMode.NEGATIVE, f"{operation.label}: no {mode.value} case could be generated"

    def sharpen(self, operation: Any, case: Any, data: st.DataObject) -> None:
        """Aim a generated case at what the document cannot describe."""
        for parameter in operation.path_parameters:
            choices = self.seeded.candidates(operation.path, parameter.name) + PATH_STRINGS
            case.path_parameters = {**case.path_parameters, parameter.name: data.draw(st.sampled_from(choices))}
        names = [p.name for p in operation.query if p.name in QUERY_TWEAKS]
        if names:
            name = data.draw(st.sampled_from(names))
            case.query = {**(case.query or {}), name: data.draw(QUERY_TWEAKS[name])}
        fields = body_fields(self.document, operation)
        if fields and isinstance(case.body, dict):
            name = data.draw(st.sampled_from(fields))
            case.body = {**case.body, name: data.draw(hostile_json)}

    def sweep(self, operation: Any) -> None:
        """Hostile values through every filterable attribute, body field and path parameter."""
        case = operation.Case
        table = TABLE_OF_LIST.get(operation.path)
        if table is not None and operation.method.upper() == "GET":
            for item in filter_sweep(table):
                self.check(operation, case(query={"filters": json.dumps([item])}))
            for item in ["\ud800", "uuid \0", "uuid desc desc", *(f"{c.name} desc" for c in table.c)]:
                self.check(operation, case(query={"order": json.dumps([item])}))
            self.check(operation, case(query={"select": json.dumps(["uuid", "\ud800", "\0"])}))
        names = [p.name for p in operation.path_parameters]
        for value in PATH_STRINGS if names else []:
            self.check(operation, case(path_parameters={name: value for name in names}))
        fields = body_fields(self.document, operation)
        target = self.seeded.writable(operation.path)
        path = {name: target for name in names} if target else {name: "x" for name in names}
        for name in fields:
            for value in SWEEP_BODY_VALUES:
                # Sent as text: schemathesis's own copy of a body stops short of the deepest values.
                body = json.dumps({name: value}).encode()
                self.check(operation, case(path_parameters=path, body=body, media_type="application/json"))

    def summary(self) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        phases = ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in self.seconds.items())
        return f"{len(self.calls)} operations, {sum(self.calls.values())} requests ({statuses}; {phases})"


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_no_server_errors(service: RunningService, role: str, server_errors: ServerErrors) -> None:
    seeded = seed(service)
    token = service.admin_token if role == "admin" else service.token("alice")
    document = httpx.get(f"{service.url}/openapi.json").json()
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False, "database": "none"}})
    schema = schemathesis.openapi.from_dict(document, config=config)
    schema.config.update(base_url=service.url)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if (op.method.upper(), op.path) not in EXCLUDED]
    assert len(operations) >= 30, "the OpenAPI document lost operations"

    run = Run(schema, document, seeded, {"Authorization": f"Bearer {token}"}, server_errors)
    started = time.monotonic()
    for operation in operations:
        for phase in (run.coverage, run.sweep, run.fuzz):
            phase_started = time.monotonic()
            phase(operation)
            run.seconds[phase.__name__] += time.monotonic() - phase_started
    print(f"\nfuzz[{role}]: {run.summary()} in {time.monotonic() - started:.1f} s")

    problems = [f"{label}: {problem}\n    {curl}" for (label, problem), curl in sorted(run.problems.items())]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
    assert set(run.calls) == {op.label for op in operations}, "some operations were never called"
