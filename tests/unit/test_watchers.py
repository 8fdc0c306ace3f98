"""crunch-run's watcher threads start together once the process has run a moment, and stop together."""

from __future__ import annotations

import threading
import time

from cwl_crunch.runner.watch import Watchers


def test_watchers_start_only_once_their_delay_has_passed_and_stop_together() -> None:
    running = []
    stopped = threading.Event()

    def watcher(stop: threading.Event) -> None:
        running.append(threading.current_thread().name)
        stop.wait()
        stopped.set()

    watchers = Watchers([watcher, watcher], after=0.3)
    first = watchers.tick()
    assert 0.0 < first <= 0.1 and not watchers.started  # wait at most 0.1 s at a time
    assert watchers.tick(most=5.0) <= 0.3  # never past the start
    time.sleep(0.31)
    assert watchers.tick() == 0.1 and watchers.started
    watchers.tick()  # started once only
    deadline = time.monotonic() + 5
    while len(running) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(running) == 2
    watchers.stop()
    assert stopped.wait(5)


def test_watchers_of_a_short_process_never_start() -> None:
    started = threading.Event()
    watchers = Watchers([lambda stop: started.set()], after=60)
    assert watchers.tick() == 0.1
    watchers.stop()
    assert not watchers.started and not started.wait(0.2)


def test_stopping_waits_for_a_watcher_finishing_its_work_but_not_forever() -> None:
    written = []

    def slow_writer(stop: threading.Event) -> None:
        time.sleep(0.3)  # e.g. a crunchstat line being taken when the process ends
        written.append("line")
        stop.wait()

    def stuck(stop: threading.Event) -> None:
        time.sleep(30)  # e.g. a heartbeat to a server that does not answer

    watchers = Watchers([slow_writer], after=0)
    watchers.tick()
    watchers.stop()
    assert written == ["line"], "stop() returned before the watcher had written"

    watchers = Watchers([stuck], after=0)
    watchers.tick()
    started = time.monotonic()
    watchers.stop(wait=0.2)
    assert time.monotonic() - started < 2
