"""Why queued containers wait (SPEC §6 `scheduling_status`): what a dispatcher tells them, how
often, and in how many calls."""

from __future__ import annotations

import logging

from ..client import ApiError, Client

log = logging.getLogger(__name__)
REPUBLISH_SECONDS = 5.0  # a container's new queue position alone is sent at most this often
REPUBLISH_PER_SECOND = 10.0  # queue-position updates a long queue gets, all containers together
QUEUE_STATUS_DELAY = 1.0  # a container is told why it waits once it has waited this long
STATUS_BATCH = 500  # scheduling statuses sent in one call (a round's are sent together)


class QueueStatuses:
    """The scheduling statuses of the containers waiting in a dispatcher's queue: decided during
    a round (`publish`), sent together at its end (`send`)."""

    def __init__(self, api: Client) -> None:
        self.api = api
        self._published: dict[str, tuple[str, float]] = {}  # status last sent, and when
        self._waiting_since: dict[str, float] = {}  # first round that found a container waiting
        self._outgoing: dict[str, str] = {}  # statuses this round decided to send
        self._batched: bool | None = None  # whether the API takes many in one call (its /config says)

    def publish(self, uuid: str, text: str, waiting: int, now: float) -> None:
        """Tell a container why it waits when that changes, once it has waited QUEUE_STATUS_DELAY
        (most work starts sooner, and needs no explanation). A new queue position alone is sent at
        most every REPUBLISH_SECONDS, and less often in a long queue (`waiting` containers): each
        start moves every waiting container up one, and a status update per waiting container per
        start would be most of what the API does for a large scatter."""
        last = self._published.get(uuid)
        if last is None:
            if now - self._waiting_since.setdefault(uuid, now) < QUEUE_STATUS_DELAY:
                return
        elif last[0] == text:
            return
        elif _kind(last[0]) == _kind(text) and now - last[1] < max(REPUBLISH_SECONDS, waiting / REPUBLISH_PER_SECOND):
            return
        self._outgoing[uuid] = text
        self._published[uuid] = (text, now)

    def started(self, uuid: str) -> None:
        """It left the queue by its lock (which says "Preparing runtime environment." itself)."""
        self._published.pop(uuid, None)
        self._waiting_since.pop(uuid, None)

    def keep_only(self, queued: set[str]) -> None:
        """Forget the containers that left the queue otherwise (a fresh listing lacks them)."""
        for table in (self._published, self._waiting_since):
            for uuid in [u for u in table if u not in queued]:
                del table[uuid]

    def send(self) -> None:
        """Send the round's statuses: in calls of up to STATUS_BATCH when the API takes many at
        once (a long queue's would otherwise be one call per waiting container), one by one
        otherwise. A container that left the queue meanwhile is skipped by the API."""
        outgoing, self._outgoing = list(self._outgoing.items()), {}
        if outgoing and self._batched is None:
            try:
                self._batched = self.api.request("GET", "/config").get("batch_scheduling_status") is True
            except ApiError as error:
                log.info("GET /config: %s", error)
        if self._batched:
            calls = [("/containers/scheduling_status", {"statuses": dict(outgoing[start:start + STATUS_BATCH])})
                     for start in range(0, len(outgoing), STATUS_BATCH)]
        else:
            calls = [(f"/containers/{uuid}/scheduling_status", {"scheduling_status": text}) for uuid, text in outgoing]
        for path, body in calls:
            try:
                self.api.request("PUT", path, body)
            except ApiError as error:
                log.info("PUT %s: %s", path, error)


def _kind(status: str) -> str:
    """A status without its numbers: "Waiting in queue at position N. All X vCPUs are in use." → same kind."""
    return "".join(ch for ch in status if not ch.isdigit())
