"""The dispatcher loop (SPEC §6): one `tick(now)` does a whole round, `run()` repeats it.

A round: ping the API; reconcile the containers this dispatcher holds with the crunch-runs its
backend has alive (unlock Locked ones whose crunch-run is gone: after a restart, or a crash
before it started) and let the backend follow them (Slurm: cancel unwanted jobs, renice, say why
jobs wait); then walk the queue by priority, locking and starting what fits in the free capacity
(everything but surplus workflow runners, when the backend schedules itself), failing what can
never fit (unsatisfiable), and publishing why the rest waits (`statuses.py`).
"""

from __future__ import annotations

import logging
import math
import platform
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..client import ApiError, Client
from ..domain.states import LOCKED_STATUS
from ..follow import EventFollower
from .backends import Backend, BackendUnavailable, Capacity, Tracking, Unsatisfiable
from .queue_events import CONTAINER_KIND, QUEUE_FIELDS, changes_the_queue, queue_entry, worth_a_round
from .statuses import QUEUE_STATUS_DELAY, QueueStatuses

log = logging.getLogger(__name__)
GiB = 1 << 30
# While the event stream is followed, the queue is listed afresh at most this often: in between,
# the events keep it current (new work joins from its create event; requeued work or a new
# priority makes the next round list it). Listing a long queue is the most a round asks of the
# API (a 500-container scatter's queue: about 7 ms of the server's time, twice a second).
QUEUE_LISTING_SECONDS = 5.0
BACKEND_RETRY_SECONDS = (1.0, 60.0)  # after the backend refused work for now: first and longest pause


@dataclass
class Usage:
    vcpus: float = 0.0
    ram: int = 0
    supervisors: int = 0

    def add(self, container: dict[str, Any]) -> None:
        if _is_supervisor(container):
            self.supervisors += 1
        else:
            self.vcpus += _vcpus(container)
            self.ram += _ram(container)


class Dispatcher:
    def __init__(self, api: Client, backend: Backend, *, name: str = "", ping_seconds: float = 5.0) -> None:
        self.api = api
        self.backend = backend
        self.name = name or f"{backend.name}@{platform.node()}"
        self.ping_seconds = ping_seconds
        self.uuid: str | None = None
        self._last_ping = 0.0
        self.statuses = QueueStatuses(api)
        # The queue as last listed, with the work announced since, reused by rounds that follow a
        # state change; listed again at least every QUEUE_LISTING_SECONDS (without the event
        # stream, every round).
        self._queue: list[dict[str, Any]] = []
        self._queue_listed = -math.inf
        self._queue_stale = threading.Event()
        self._arrived: deque[dict[str, Any]] = deque()  # new work the event stream announced (`heard`)
        # What our live crunch-runs hold, as of the last reconciliation plus what we started since.
        self._started: dict[str, dict[str, Any]] = {}
        self._reconciled = -math.inf
        # Locked containers waiting in the backend's own queue (Slurm): since when, what was said.
        self._backend_waiting: dict[str, float] = {}
        self._backend_status: dict[str, str] = {}
        # After the backend could not take work: no starts before this time, and why.
        self._paused_until = -math.inf
        self._pause = 0.0
        self._pause_reason = ""

    def register(self, remembered: Path | None = None) -> str:
        """Register, or take up again the identity saved in `remembered` (so that after a restart
        this dispatcher finds the containers it had locked and adopts or unlocks them)."""
        if remembered is not None and remembered.exists():
            uuid = remembered.read_text().strip()
            try:
                self.api.request("POST", f"/dispatchers/{uuid}/ping")
                self.uuid = uuid
                self.backend.bind(uuid)
                return uuid
            except ApiError as error:
                if error.status != 404:
                    raise
        record = self.api.create("dispatchers", {"name": self.name, "hostname": platform.node(),
                                                 "backend": self.backend.name})
        self.uuid = record["uuid"]
        if remembered is not None:
            remembered.write_text(self.uuid)
        self.backend.bind(self.uuid)
        return self.uuid

    def run(self, interval: float = 0.5, stop: threading.Event | None = None) -> None:
        """Rounds whenever a container changes (the event stream), and every `interval` regardless,
        until `stop` is set (never, without one)."""
        if self.uuid is None:
            self.register()
        wake = threading.Event()

        def on_event(event: dict[str, Any]) -> None:
            if self.heard(event):
                wake.set()

        follower = EventFollower(self.api, on_event, filters=[["object_kind", "=", CONTAINER_KIND]])
        listing = max(interval, QUEUE_LISTING_SECONDS)
        try:
            follower.start()
        except RuntimeError as error:
            log.warning("no event stream (%s): polling every %s s", error, interval)
            listing = interval
        while stop is None or not stop.is_set():
            wake.clear()
            try:
                # A backend the dispatcher counts capacity for knows which crunch-runs live
                # (`alive`); one that schedules itself is followed every round.
                reconcile = listing if self.backend.capacity.bounded else interval
                self.tick(queue_max_age=listing, reconcile_max_age=reconcile)
            except (ApiError, OSError, BackendUnavailable) as error:
                log.warning("dispatch round failed: %s", error)
            wake.wait(interval)
        follower.stop()

    def heard(self, event: dict[str, Any]) -> bool:
        """Take in a container event; whether it is worth a round. New work whose event says how
        to queue it joins the queue as it is (`_arrived`); other new or requeued work, or a new
        priority, makes the next round list the queue."""
        entry = queue_entry(event)
        if entry is not None:
            self._arrived.append(entry)
            return True
        if changes_the_queue(event):
            self._queue_stale.set()
            return True
        return worth_a_round(event)

    # -- one round -----------------------------------------------------------------------

    def tick(self, now: float | None = None, queue_max_age: float = 0.0, reconcile_max_age: float | None = None) -> None:
        """One round. The queue is listed afresh unless the last listing is younger than
        `queue_max_age` seconds and no container has been queued or reprioritised since; this
        dispatcher's containers are reconciled with the backend unless that is younger than
        `reconcile_max_age` (default `queue_max_age`; in between, its own starts and the backend's
        live set)."""
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.ping_seconds:
            self.api.request("POST", f"/dispatchers/{self.uuid}/ping")
            self._last_ping = now
        if now - self._reconciled >= (queue_max_age if reconcile_max_age is None else reconcile_max_age):
            try:
                usage = self._reconcile(now)
                self._reconciled = now
            except BackendUnavailable as error:  # nothing known of our jobs: leave them be, start none
                log.warning("cannot reconcile with the %s backend: %s", self.backend.name, error)
                self._pause_after(error, now)
                usage = Usage()
        else:  # between reconciliations: what we started ourselves and is still alive
            if self.backend.capacity.bounded:  # (a scheduling backend's jobs are known each reconciliation)
                alive = self.backend.alive()
                self._started = {uuid: c for uuid, c in self._started.items() if uuid in alive}
            usage = Usage()
            for container in self._started.values():
                usage.add(container)
        if self._queue_stale.is_set() or now - self._queue_listed >= queue_max_age:
            self._queue_stale.clear()  # before listing: what arrives meanwhile makes the next round list again
            self._arrived.clear()  # committed before this listing, so in it; later arrivals stay
            listed = self.api.list("containers", filters=[["state", "=", "Queued"], ["priority", ">", 0]],
                                   order="priority desc", select=list(QUEUE_FIELDS))
            # (a container handed to a crunch-run that locks it itself is Queued until it has)
            self._queue = [c for c in listed if c["uuid"] not in self._started]
            self._queue_listed = now
            self.statuses.keep_only({c["uuid"] for c in self._queue})
        else:
            self._take_arrivals()
        self._dispatch(usage, self._queue, now)

    def _take_arrivals(self) -> None:
        """Put the work announced since the last listing in the queue, in the listing's order
        (higher priority first, then oldest first), unless it is there or started already."""
        known = {c["uuid"] for c in self._queue} | set(self._started)
        while self._arrived:
            entry = self._arrived.popleft()
            if entry["uuid"] in known or entry["priority"] <= 0:
                continue
            place = len(self._queue)
            while place > 0 and self._queue[place - 1]["priority"] < entry["priority"]:
                place -= 1
            self._queue.insert(place, entry)
            known.add(entry["uuid"])

    def _reconcile(self, now: float) -> Usage:
        """What our live crunch-runs use; Locked containers without one go back to the queue."""
        alive = self.backend.alive()
        usage = Usage()
        mine = list(self.api.list("containers", filters=[["dispatcher_uuid", "=", self.uuid],
                                                         ["state", "in", ["Locked", "Running"]]],
                                  select=[*QUEUE_FIELDS, "state"]))
        # A crunch-run that locks its container itself may not have done so yet: it counts too.
        starting = {uuid: c for uuid, c in self._started.items() if uuid in alive}
        self._started = {}
        for container in mine:
            if container["uuid"] in alive:
                self._started[container["uuid"]] = container
            elif container["state"] == "Locked":
                log.info("unlocking %s: its crunch-run is gone", container["uuid"])
                self._quietly("POST", f"/containers/{container['uuid']}/unlock")
            # Running without crunch-run: the API's heartbeat rule settles it (SPEC §3.3).
        self._started = {**starting, **self._started}
        for container in self._started.values():
            usage.add(container)
        self._follow(mine, self.backend.track(mine, now), now)
        return usage

    def _follow(self, mine: list[dict[str, Any]], tracking: Tracking, now: float) -> None:
        """Pass on what the backend found: why Locked containers still wait in its queue (after
        QUEUE_STATUS_DELAY, and only when that changes), and which can never run there."""
        for uuid, reason in tracking.impossible.items():
            self._cancel_unsatisfiable(uuid, reason)
        locked = {c["uuid"] for c in mine if c["state"] == "Locked" and c["uuid"] not in tracking.impossible}
        for uuid in [u for u in self._backend_waiting if u not in tracking.waiting]:
            del self._backend_waiting[uuid]
        for uuid in [u for u in self._backend_status if u not in locked]:
            del self._backend_status[uuid]  # Running now (which cleared both) or gone
        for uuid in locked:
            text = tracking.waiting.get(uuid)
            if text is None:  # started by the backend: crunch-run is preparing it
                if uuid in self._backend_status:
                    self._set_backend_status(uuid, LOCKED_STATUS, None)
            elif now - self._backend_waiting.setdefault(uuid, now) >= QUEUE_STATUS_DELAY:
                self._set_backend_status(uuid, text, self.backend.queue_activity)

    def _set_backend_status(self, uuid: str, text: str, activity: str | None) -> None:
        if self._backend_status.get(uuid, LOCKED_STATUS) == text:
            return
        self._quietly("PUT", f"/containers/{uuid}", {"scheduling_status": text, "runtime_status": {"activity": activity}})
        self._backend_status[uuid] = text

    def _dispatch(self, usage: Usage, queue: list[dict[str, Any]], now: float) -> None:
        """Start what fits; the scheduling statuses the walk decided on go out together after it."""
        try:
            self._walk(usage, queue, now)
        finally:
            self.statuses.send()

    def _walk(self, usage: Usage, queue: list[dict[str, Any]], now: float) -> None:
        capacity = self.backend.capacity
        if now < self._paused_until:
            for container in queue:
                self.statuses.publish(container["uuid"], f"Waiting for the {self.backend.name} backend, which cannot take"
                              f" work now ({self._pause_reason}); trying again in {self._paused_until - now:.0f} s.",
                              len(queue), now)
            return
        position = 0
        for container in list(queue):
            uuid = container["uuid"]
            too_big = _unsatisfiable(container, capacity)
            if too_big:
                queue.remove(container)
                self._fail_unsatisfiable(container, too_big)
                continue
            if _backing_off(container):
                continue  # before a retry: the API says so itself (it knows the attempts)
            if _fits(container, usage, capacity):
                queue.remove(container)  # locked now, or by someone else (then it is not ours to list)
                if self._lock_and_start(container, now):
                    usage.add(container)
                    self._started[uuid] = container
                elif now < self._paused_until:
                    return
                continue
            position += 1
            if _is_supervisor(container):
                why = f"All {capacity.supervisors} workflow runner slots are in use."
            elif capacity.ram is not None and usage.ram + _ram(container) > capacity.ram:
                why = f"All {capacity.ram / GiB:g} GiB of RAM are in use."
            else:
                why = f"All {capacity.vcpus:g} vCPUs are in use."
            self.statuses.publish(uuid, f"Waiting in queue at position {position}. {why}", len(queue), now)

    def _lock_and_start(self, container: dict[str, Any], now: float) -> bool:
        """Lock the container and hand it to the backend, or hand it over for crunch-run to lock
        (`locks_itself`: then this round goes on to the next container at once, while the API
        answers that lock)."""
        uuid = container["uuid"]
        locked = container
        if not self.backend.locks_itself:
            try:
                locked = self.api.request("POST", f"/containers/{uuid}/lock", {"dispatcher_uuid": self.uuid})
            except ApiError as error:
                if error.status == 422:  # another dispatcher won, or it changed meanwhile
                    return False
                raise
        self.statuses.started(uuid)
        try:
            self.backend.start(locked)
        except Unsatisfiable as error:
            self._cancel_unsatisfiable(uuid, str(error))
            return False
        except (OSError, BackendUnavailable) as error:
            # Back in the queue, and no more starts for a while: every failed attempt counts
            # towards max_dispatch_attempts, and a backend that is down would use them up at once.
            log.error("cannot start crunch-run for %s: %s", uuid, error)
            if not self.backend.locks_itself:
                self._quietly("POST", f"/containers/{uuid}/unlock")
            self._pause_after(error, now)
            return False
        self._pause = 0.0
        return True

    def _pause_after(self, error: Exception, now: float) -> None:
        """No starts for a while (1 s, doubling up to a minute while failures go on)."""
        self._pause = min(max(self._pause * 2, BACKEND_RETRY_SECONDS[0]), BACKEND_RETRY_SECONDS[1])
        self._paused_until, self._pause_reason = now + self._pause, str(error)

    def _fail_unsatisfiable(self, container: dict[str, Any], reason: str) -> None:
        uuid = container["uuid"]
        try:
            self.api.request("POST", f"/containers/{uuid}/lock", {"dispatcher_uuid": self.uuid})
        except ApiError:
            return
        self._cancel_unsatisfiable(uuid, reason)

    def _cancel_unsatisfiable(self, uuid: str, reason: str) -> None:
        """Cancel a container this dispatcher holds that can never run here, saying why."""
        error = f"constraints not satisfiable: {reason}"
        log.info("%s: %s", uuid, error)
        self._quietly("PUT", f"/containers/{uuid}", {"state": "Cancelled",
                                                     "runtime_status": {"error": error, "cause": "unsatisfiable"}})

    def _quietly(self, method: str, path: str, body: Any = None) -> None:
        try:
            self.api.request(method, path, body)
        except ApiError as error:
            log.info("%s %s: %s", method, path, error)


def _vcpus(container: dict[str, Any]) -> float:
    return float((container.get("runtime_constraints") or {}).get("vcpus") or 1)


def _ram(container: dict[str, Any]) -> int:
    return int((container.get("runtime_constraints") or {}).get("ram") or 0)


def _is_supervisor(container: dict[str, Any]) -> bool:
    return bool((container.get("scheduling_parameters") or {}).get("supervisor"))


def _fits(container: dict[str, Any], usage: Usage, capacity: Capacity) -> bool:
    if _is_supervisor(container):
        return usage.supervisors < capacity.supervisors
    if capacity.vcpus is None or capacity.ram is None:
        return True
    return usage.vcpus + _vcpus(container) <= capacity.vcpus and usage.ram + _ram(container) <= capacity.ram


def _unsatisfiable(container: dict[str, Any], capacity: Capacity) -> str | None:
    """Why the container can never run here, or None."""
    if _is_supervisor(container) or capacity.vcpus is None or capacity.ram is None:
        return None  # the backend decides (Slurm: sbatch refuses what no node can fit)
    if _ram(container) > capacity.ram:
        return f"needs {_ram(container) / GiB:g} GiB RAM, this node has {capacity.ram / GiB:g} GiB"
    if _vcpus(container) > capacity.vcpus:
        return f"needs {_vcpus(container):g} vCPUs, this node has {capacity.vcpus:g}"
    return None


def _backing_off(container: dict[str, Any]) -> bool:
    """Whether a queued container must not be started yet (scheduling_parameters.not_before)."""
    not_before = _not_before(container)
    return not_before is not None and not_before > datetime.now(timezone.utc)


def _not_before(container: dict[str, Any]) -> datetime | None:
    text = (container.get("scheduling_parameters") or {}).get("not_before")
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
