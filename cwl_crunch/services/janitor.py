"""Periodic checks inside the API server, so they fire even when every dispatcher is dead."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ..domain import runtime_status
from ..store.repository import Repository
from . import lifecycle
from .context import Context

log = logging.getLogger(__name__)


@dataclass
class JanitorReport:
    dead_dispatchers: int = 0
    unlocked: int = 0
    lost_containers: int = 0
    events_deleted: int = 0


class Janitor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def tick(self, now: datetime | None = None) -> JanitorReport:
        """One round of every check, as of `now`."""
        now = now or self.ctx.now()
        report = JanitorReport()
        self._dispatchers(now, report)
        self._heartbeats(now, report)
        report.events_deleted = self.ctx.store.transact(
            lambda tx: tx.delete_events_before(now - self.ctx.settings.event_retention)
        )
        return report

    def _dispatchers(self, now: datetime, report: JanitorReport) -> None:
        """A dispatcher silent for too long is dead: its Locked containers go back to the queue."""
        silent_since = now - self.ctx.settings.dispatcher_timeout
        with self.ctx.store.read() as tx:
            dead = tx.silent_dispatchers(silent_since)
        for dispatcher in dead:
            unlocked = self.ctx.store.transact(lambda tx: self._bury(tx, dispatcher["uuid"], silent_since, now))
            if unlocked is None:
                continue  # it pinged after we looked
            report.dead_dispatchers += 1
            report.unlocked += unlocked
            log.warning("dispatcher silent, unlocked its containers",
                        extra={"action": "dispatcher_dead", "uuid": dispatcher["uuid"]})

    def _bury(self, tx: Repository, dispatcher_uuid: str, silent_since: datetime, now: datetime) -> int | None:
        if not tx.mark_dispatcher_dead(dispatcher_uuid, silent_since):
            return None
        unlocked = 0
        for container in tx.locked_containers_of(dispatcher_uuid):
            # Not the container's fault: the attempt does not count towards max_dispatch_attempts.
            changes = {**lifecycle.unlock_changes(), "lock_count": max(container["lock_count"] - 1, 0)}
            tx.delete_container_tokens(container["uuid"])
            tx.update_container(container, changes, now)
            unlocked += 1
        return unlocked

    def _heartbeats(self, now: datetime, report: JanitorReport) -> None:
        timeout = self.ctx.settings.container_heartbeat_timeout
        with self.ctx.store.read() as tx:
            lost = tx.running_without_heartbeat_since(now - timeout)
        for container in lost:
            if self.ctx.store.transact(lambda tx: self._cancel_lost(tx, container["uuid"], now)):
                report.lost_containers += 1

    def _cancel_lost(self, tx: Repository, uuid: str, now: datetime) -> bool:
        container = tx.get_container(uuid, for_update=True)
        timeout = self.ctx.settings.container_heartbeat_timeout
        last = container and (container["heartbeat_at"] or container["started_at"])
        if container is None or container["state"] != "Running" or last is None or last >= now - timeout:
            return False  # it recovered or finished since we looked
        seconds = int((now - last).total_seconds())
        error = f"container lost: no heartbeat from crunch-run for {seconds} s"
        status = runtime_status.merge(container["runtime_status"], {"error": error, "cause": "infrastructure"})
        changes = {**lifecycle.final_changes(now), "state": "Cancelled", "runtime_status": status}
        lifecycle.container_finished(tx, self.ctx, tx.update_container(container, changes, now), now)
        log.warning("container lost", extra={"action": "container_lost", "uuid": uuid, "seconds": seconds})
        return True
