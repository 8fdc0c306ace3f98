"""A run's child requests: submitted, followed through events, finished, counted and reported."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..client import ApiError, Client
from ..domain.progress import ChildState, Progress, child_state
from ..follow import EventFollower
from .keepfs import Keep
from .report import Reporter, log_tail

if TYPE_CHECKING:
    from .job import CrunchJob

logger = logging.getLogger("cwltool.crunch")
REQUEST_KIND = "arvados#containerRequest"
CONTAINER_KIND = "arvados#container"
CREATED_MEMORY = 10_000  # container creations remembered until their request is submitted
# A submitted request's container is checked for being Running already (reused while running)
# this long after submission, when its "create" event has had time to arrive and show it is new.
REFRESH_DELAY = 0.25
CHECK_BATCH = 100


class Children:
    def __init__(self, api: Client, keep: Keep, reporter: Reporter, *, engine: str | None = None,
                 reuse: bool = True, priority: int = 500, on_error: str = "continue") -> None:
        self.api = api
        self.keep = keep
        self.reporter = reporter
        self.progress: Progress = reporter.progress
        self.engine = engine
        self.reuse = reuse
        self.priority = priority
        self.on_error = on_error
        self.jobs: dict[str, CrunchJob] = {}
        self.names: dict[str, str] = {}
        # container → the requests it serves (identical steps share one container through reuse)
        self._requests_of: dict[str, set[str]] = {}
        self._current: dict[str, str] = {}  # request → its latest container
        self._results: dict[str, dict[str, Any]] = {}  # our finished containers, from their final events
        self._created: set[str] = set()  # containers whose "create" event has been seen
        self._finishing: set[str] = set()  # requests whose _finish has started
        self._final_early: set[str] = set()
        self._unchecked: dict[str, tuple[float, str]] = {}  # request → (submitted at, its container)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="finish")
        self._events = EventFollower(api, self._on_event)
        self._closing = threading.Event()
        self._checker = threading.Thread(target=self._check_reused, name="reused", daemon=True)
        self.stopping = False

    def start(self) -> None:
        self._events.start()
        self._checker.start()
        self.reporter.start()

    def close(self) -> None:
        self._closing.set()
        self._events.stop()
        if self._checker.is_alive():
            self._checker.join()
        self._pool.shutdown(wait=True)
        self.reporter.stop()

    def pending(self) -> bool:
        with self._lock:
            return bool(self.jobs)

    # -- submitting ------------------------------------------------------------------------

    def submit(self, job: CrunchJob, request: dict[str, Any]) -> None:
        if self.stopping:
            logger.info("[step %s] not submitted: the run is stopping after a failure", job.name)
            job.finish({})
            return
        record = self.api.create("container_requests", request)
        for mount in request["mounts"].values():  # saved with the request: known from now on
            if "manifest" in mount:
                self.keep.remember(mount["portable_data_hash"], mount["manifest"])
        uuid, container_uuid = record["uuid"], record.get("container_uuid")
        with self._lock:
            self.jobs[uuid] = job
            self.names[uuid] = job.name
            if container_uuid:
                self._requests_of.setdefault(container_uuid, set()).add(uuid)
                self._current[uuid] = container_uuid
            done = record["state"] == "Final" or uuid in self._final_early
        self.progress.update(uuid, ChildState.WAITING)
        self.reporter.changed()
        logger.info("[step %s] %s%s", job.name, uuid, " (reused a finished container)" if done else "")
        if done:
            self._pool.submit(self._finish, uuid)
        elif container_uuid:
            with self._lock:
                self._unchecked[uuid] = (time.monotonic(), container_uuid)

    def cancel_all(self) -> None:
        """Priority 0 for every child still going (Ctrl-C, or --on-error kill)."""
        with self._lock:
            uuids = list(self.jobs)
        for uuid in uuids:
            try:
                self.api.update("container_requests", uuid, {"priority": 0})
            except (ApiError, OSError) as error:
                logger.warning("cannot cancel %s: %s", uuid, error)

    # -- following -------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        uuid, kind = event.get("object_uuid"), event.get("object_kind")
        properties = event.get("properties") or {}
        if kind == REQUEST_KIND:
            with self._lock:
                known = uuid in self.jobs
                if known and properties.get("container_uuid"):
                    self._requests_of.setdefault(properties["container_uuid"], set()).add(uuid)
                    self._current[uuid] = properties["container_uuid"]
                if properties.get("new_state") == "Final" and not known:
                    self._final_early.add(uuid)
            if known and properties.get("new_state") == "Final":
                self._pool.submit(self._finish, uuid)
        elif kind == CONTAINER_KIND and properties.get("new_state"):
            with self._lock:
                if event.get("event_type") == "create":
                    if len(self._created) > CREATED_MEMORY:  # others' containers too, with a user token
                        self._created.clear()  # forgetting costs a GET per child, not correctness
                    self._created.add(uuid)  # new, so Queued: no refresh needed to learn its state
                requests = list(self._requests_of.get(uuid, ()))
                if requests and "exit_code" in properties:  # a final event carries the result
                    self._results[uuid] = {"uuid": uuid, "state": properties["new_state"],
                                           "exit_code": properties["exit_code"], "output": properties.get("output"),
                                           "output_properties": {"sha1": properties.get("output_sha1")}}
                    if properties.get("output") and properties.get("output_manifest") is not None:
                        self.keep.remember(properties["output"], properties["output_manifest"])  # small: no GET
            state = child_state(properties["new_state"])
            if any([self.progress.update(request_uuid, state) for request_uuid in requests]):
                self.reporter.changed()

    def _check_reused(self) -> None:
        """A reused container may be Running already, and no event will say so: the containers of
        requests submitted REFRESH_DELAY ago whose creation was not seen are read, in one list."""
        while not self._closing.wait(REFRESH_DELAY):
            due = time.monotonic() - REFRESH_DELAY
            with self._lock:
                ready = {uuid: c for uuid, (at, c) in self._unchecked.items() if at <= due}
                for uuid in ready:
                    del self._unchecked[uuid]
                unknown = {uuid: c for uuid, c in ready.items()
                           if c not in self._created and uuid in self.jobs and uuid not in self._finishing}
                self._created.difference_update(ready.values())
            if not unknown:
                continue
            containers = sorted(set(unknown.values()))
            running: set[str] = set()
            try:
                for start in range(0, len(containers), CHECK_BATCH):  # the filter travels in the URL
                    running.update(c["uuid"] for c in self.api.list(
                        "containers", select=["uuid"],
                        filters=[["uuid", "in", containers[start:start + CHECK_BATCH]], ["state", "=", "Running"]]))
            except (ApiError, OSError) as error:
                logger.debug("cannot check reused containers: %s", error)  # progress only: no harm done
                continue
            if any([self.progress.update(uuid, ChildState.RUNNING) for uuid, c in unknown.items() if c in running]):
                self.reporter.changed()

    def _finish(self, uuid: str) -> None:
        # Claimed once: a request reused whole is Final when created, and its Final event may be
        # seen after submit() has already scheduled this; finishing a job twice fails the step.
        with self._lock:
            job = self.jobs.get(uuid)
            if job is None or uuid in self._finishing:
                return
            self._finishing.add(uuid)
        try:
            with self._lock:
                container_uuid = self._current.get(uuid)
                result = self._results.get(container_uuid or "")
            if container_uuid is None:  # never had a container, or its event has not been seen
                container_uuid = self.api.get("container_requests", uuid).get("container_uuid")
            # A success is finished from its final event (the output collection holds the digests);
            # anything else is read whole, for the report.
            if result is not None and job.outcome(result) == "success":
                container = result
            else:
                container = self.api.get("containers", container_uuid) if container_uuid else {}
            if job.outcome(container) != "success":
                self._failed(job, self.api.get("container_requests", uuid), container)
                job.finish(container)
            elif job.finish(container) == "success":
                self.progress.update(uuid, ChildState.COMPLETE)
            else:
                self._failed(job, self.api.get("container_requests", uuid), container,
                             "its outputs could not be collected")
        except Exception:
            logger.exception("[step %s] cannot be finished", job.name)
            job.finish({})
        finally:
            with self._lock:
                self.jobs.pop(uuid, None)
                self._finishing.discard(uuid)
                container_uuid = self._current.get(uuid, "")
                sharing = self._requests_of.get(container_uuid)
                if sharing is not None:
                    sharing.discard(uuid)
                if not sharing:
                    self._results.pop(container_uuid, None)
            self.reporter.changed()

    def _failed(self, job: CrunchJob, request: dict[str, Any], container: dict[str, Any], reason: str = "") -> None:
        uuid, reason = request["uuid"], reason or _reason(container)
        message = f"step {job.name} ({uuid}) failed: {reason}"
        tail = log_tail(self.keep, request)
        first = self.progress.fail(uuid, message, "\n".join(tail[-10:]))
        self.reporter.failed(first)
        logger.error("[step %s] (%s) failed: %s%s", job.name, uuid, reason,
                     "".join(f"\n  {line}" for line in tail))
        if self.on_error in ("stop", "kill"):
            self.stopping = True
        if self.on_error == "kill":
            threading.Thread(target=self.cancel_all, daemon=True).start()


def _reason(container: dict[str, Any]) -> str:
    if not container:
        return "it was not run"
    code = container.get("exit_code")
    if container.get("state") == "Complete" and code is not None:
        hint = " (killed: it may have run out of memory; raise ramMin)" if code == 137 else ""
        return f"exit code {code}{hint}"
    error = (container.get("runtime_status") or {}).get("error")
    return f"cancelled: {error}" if error else "cancelled"
