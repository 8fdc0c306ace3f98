"""What crunch-run does beside the running process: heartbeats, and noticing a cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from ..client import ApiError, Client


def send_heartbeats(api: Client, uuid: str, seconds: float, stop: threading.Event,
                    on_error: Callable[[Exception], None]) -> None:
    """A heartbeat every `seconds` until `stop` (SPEC §7 step 5); failures are reported, not fatal."""
    while not stop.wait(seconds):
        try:
            api.request("POST", f"/containers/{uuid}/heartbeat")
        except (ApiError, OSError) as error:
            on_error(error)


def wait_for_cancel(api: Client, uuid: str, seconds: float, stop: threading.Event,
                    on_cancel: Callable[[], None]) -> None:
    """Call `on_cancel` once the container's priority drops to 0 or it is Cancelled; checked every
    `seconds` until `stop`. A failed check is retried at the next one."""
    while not stop.wait(seconds):
        try:
            current = api.get("containers", uuid)
        except (ApiError, OSError):
            continue
        if current["priority"] == 0 or current["state"] == "Cancelled":
            on_cancel()
            return


@contextmanager
def announced_if_slow(seconds: float, announce: Callable[[], None], needed: bool = True) -> Iterator[None]:
    """Call `announce` (from a timer thread) if the block takes longer than `seconds`. Leaving the
    block waits for an announcement being sent, so it never lands after what comes next."""
    timer = threading.Timer(seconds, announce)
    if needed:
        timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if timer.is_alive():
            timer.join()


STOP_WAIT_SECONDS = 5.0  # a heartbeat in flight to an unreachable server is not waited for longer


class Watchers:
    """Threads beside a running process (heartbeats, the cancel check, crunchstat), each
    `target(stop)`, started together once the process has run `after` seconds: a shorter one
    needs none of them. The caller ticks them while it waits for the process, and stops them."""

    def __init__(self, targets: Iterable[Callable[[threading.Event], None]], after: float) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=target, args=(self._stop,), daemon=True) for target in targets]
        self._start_at = time.monotonic() + after
        self.started = False

    def tick(self, most: float = 0.1) -> float:
        """Start them if their time has come; how long the caller may wait before the next tick
        (at most `most` seconds)."""
        if not self.started:
            left = self._start_at - time.monotonic()
            if left > 0:
                return min(most, left)
            for thread in self._threads:
                thread.start()
            self.started = True
        return most

    def stop(self, wait: float = STOP_WAIT_SECONDS) -> None:
        """Stop them, waiting up to `wait` seconds for them to finish what they are doing: a
        crunchstat line being taken must reach the log before it is saved."""
        self._stop.set()
        deadline = time.monotonic() + wait
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
