"""crunch-run's log pipeline (SPEC §7 "Logs").

Every line of every `.txt` log gets a fixed-width UTC timestamp with nanoseconds and is kept for
the log collection. The same stamped lines go to the live view (the API's live log), in batches
of at most one per second, sooner when a batch passes 64 KiB. A throttle protects the API only:
above the rate limit the live view gets a notice and later a count of what it skipped, while the
log still keeps every byte.

A log is held in memory until it outgrows HELD_BYTES, and only then written to its file in the
work directory. Most containers log a few lines: theirs are stored as blobs straight from memory,
and the work directory gets no log files to create and remove. (On a filesystem that avoids
reusing recently freed inodes, as ext4 without a journal does, every file created and removed
makes later creations slower: a 500-way scatter created and removed seven log files a container.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

LINE_LIMIT = 64 * 1024
HELD_BYTES = 1 << 20  # a log larger than this goes on to its file
CONTINUED = b"[...]"
BATCH_BYTES = 64 * 1024
BATCH_SECONDS = 1.0


def timestamp(ns: int | None = None) -> bytes:
    """`2026-11-22T10:15:30.123456789Z`: always 30 characters."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ" % fraction


def split_line(line: bytes, limit: int = LINE_LIMIT) -> list[bytes]:
    """Cut a line longer than `limit` into segments; continued ones end and resume with `[...]`."""
    if len(line) <= limit:
        return [line]
    room = limit - 2 * len(CONTINUED)
    pieces = [line[i : i + room] for i in range(0, len(line), room)]
    return [
        (CONTINUED if i else b"") + piece + (CONTINUED if i < len(pieces) - 1 else b"")
        for i, piece in enumerate(pieces)
    ]


class Throttle:
    """At most `max_bytes` and `max_lines` per `period` seconds reach the live view."""

    def __init__(self, max_bytes: int = 65536, max_lines: int = 1024, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes, self.max_lines, self.period, self.clock = max_bytes, max_lines, period, clock
        self._window_start = clock()
        self._bytes = self._lines = 0
        self._silenced_until: float | None = None
        self.skipped = 0

    def admit(self, line: bytes) -> list[bytes]:
        """What the live view gets for `line` (stamped): the line, notices, or nothing."""
        now = self.clock()
        out: list[bytes] = []
        if self._silenced_until is not None:
            if now < self._silenced_until:
                self.skipped += len(line)
                return out
            out.append(_notice(f"Skipped {self.skipped} bytes of log"))
            self._silenced_until = None
            self.skipped = 0
            self._window_start, self._bytes, self._lines = now, 0, 0
        if now - self._window_start >= self.period:
            self._window_start, self._bytes, self._lines = now, 0, 0
        self._bytes += len(line)
        self._lines += 1
        if self._bytes > self.max_bytes or self._lines > self.max_lines:
            wait = max(1, round(self._window_start + self.period - now))
            self._silenced_until = now + wait
            self.skipped = len(line)
            limit = f"{self.max_bytes} bytes" if self._bytes > self.max_bytes else f"{self.max_lines} lines"
            what = f"Exceeded rate {limit} per {self.period:.0f} seconds"
            out.append(_notice(f"{what}. Logging will be silenced for the next {wait} seconds. A complete log "
                               "is still being written and will be available when the container finishes."))
            return out
        out.append(line)
        return out


def _notice(text: str) -> bytes:
    return timestamp() + b" " + text.encode() + b"\n"


class LiveSender:
    """Collects stamped lines per file and sends them to the API from one background thread."""

    def __init__(self, send: Callable[[dict[str, str]], None], on_error: Callable[[Exception], None]) -> None:
        self._send = send
        self._on_error = on_error
        self._pending: dict[str, list[bytes]] = {}
        self._size = 0
        self._lock = threading.Condition()
        self._closed = False
        self._send_pending = True  # on close: send what is left, or leave it to the caller
        self._thread = threading.Thread(target=self._run, name="live-log", daemon=True)
        self._thread.start()

    def add(self, file: str, data: bytes) -> None:
        with self._lock:
            first = not self._pending
            self._pending.setdefault(file, []).append(data)
            self._size += len(data)
            if first or self._size >= BATCH_BYTES:  # start the one-second clock, or send now
                self._lock.notify()

    def _take(self) -> dict[str, str]:
        batch = {name: b"".join(parts).decode(errors="replace") for name, parts in self._pending.items()}
        self._pending, self._size = {}, 0
        return batch

    def _due(self, last_sent: float) -> bool:
        """Time to send (called holding the lock): closing, a full batch, or a second since the last."""
        if self._closed or self._size >= BATCH_BYTES:
            return True
        return bool(self._pending) and time.monotonic() - last_sent >= BATCH_SECONDS

    def _run(self) -> None:
        # The clock starts now, not at the first line: a container shorter than BATCH_SECONDS
        # sends its live log once, when it closes, instead of once at its first line and again then.
        last = time.monotonic()
        while True:
            with self._lock:
                while not self._due(last):
                    self._lock.wait(timeout=BATCH_SECONDS - (time.monotonic() - last) if self._pending else None)
                closed = self._closed
                batch = self._take() if not closed or self._send_pending else {}
            if batch:
                last = time.monotonic()
                try:
                    self._send(batch)
                except Exception as error:  # noqa: BLE001 - the live view is best effort; the files are not
                    self._on_error(error)
            if closed:
                return

    def close(self, timeout: float = 30.0, send_pending: bool = True) -> dict[str, str]:
        """Stop, after sending what is pending; with `send_pending=False` what was not sent yet
        is returned instead (a caller about to save the whole log elsewhere need not send it)."""
        with self._lock:
            self._closed = True
            self._send_pending = send_pending
            self._lock.notify()
        self._thread.join(timeout)
        with self._lock:
            return self._take()


class LogFile:
    """One `.txt` log: stamped lines kept (in memory, then in the file at `path` once large), sent
    to the live view (throttled) and optionally echoed."""

    def __init__(self, path: Path, live: LiveSender | None, throttle: Throttle | None = None,
                 echo: BinaryIO | None = None) -> None:
        self.path = path
        self.name = path.name
        self._held: bytearray | None = bytearray()  # None once the log is in its file
        self._file: BinaryIO | None = None
        self._live = live
        self._throttle = throttle
        self._echo = echo
        self._partial = b""
        self._continued = False  # the last segment written ended with [...]
        self._lock = threading.Lock()

    def write_line(self, line: bytes) -> None:
        """One line of text (without its newline), stamped now; split if longer than the limit."""
        if self._continued:
            line = CONTINUED + line
            self._continued = False
        for segment in split_line(line):
            self._emit(segment)

    def _emit(self, segment: bytes) -> None:
        stamped = timestamp() + b" " + segment + b"\n"
        with self._lock:
            if self._held is not None and len(self._held) + len(stamped) <= HELD_BYTES:
                self._held += stamped
            else:
                self._to_file().write(stamped)
                self._file.flush()  # type: ignore[union-attr]
            if self._echo is not None:
                self._echo.write(stamped)
                self._echo.flush()
            if self._live is not None:
                for admitted in self._throttle.admit(stamped) if self._throttle else [stamped]:
                    self._live.add(self.name, admitted)

    def write(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.write_line(line.encode(errors="replace"))

    def feed(self, data: bytes) -> None:
        """Raw output of the process: complete lines are stamped as they arrive."""
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            self.write_line(line.removesuffix(b"\r"))
        room = LINE_LIMIT - 2 * len(CONTINUED)
        while len(self._partial) > room:  # a huge line with no newline yet: send what we have
            head, self._partial = self._partial[:room], self._partial[room:]
            self._emit((CONTINUED if self._continued else b"") + head + CONTINUED)
            self._continued = True

    def pump(self, stream: BinaryIO) -> threading.Thread:
        """Feed this log from `stream` (a process's pipe) in a thread of its own, until it ends."""

        def run() -> None:
            while chunk := stream.read1(65536):  # type: ignore[attr-defined]
                self.feed(chunk)
            stream.close()

        thread = threading.Thread(target=run, name=f"pump-{self.name}", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        if self._partial or self._continued:
            self.write_line(self._partial)
            self._partial = b""
        with self._lock:
            if self._file is not None:
                self._file.close()

    def content(self) -> bytes | Path:
        """The whole log, once closed: its bytes, or the file holding them."""
        return self.path if self._held is None else bytes(self._held)

    def read(self) -> bytes:
        """The whole log's bytes."""
        with self._lock:
            if self._held is not None:
                return bytes(self._held)
        return self.path.read_bytes()

    def first_line(self) -> bytes:
        """The first line's text, without its stamp."""
        with self._lock:
            if self._held is not None:
                end = self._held.find(b"\n")
                first = bytes(self._held[: end if end >= 0 else len(self._held)])
            else:
                with self.path.open("rb") as file:
                    first = file.readline().rstrip(b"\n")
        return first.split(b" ", 1)[-1]

    def write_out(self) -> None:
        """Put the log in its file, for a look (it could not be saved elsewhere)."""
        with self._lock:
            if self._held is not None:
                self._to_file()
            if self._file is not None:
                self._file.close()

    def _to_file(self) -> BinaryIO:
        """The open file, holding everything so far (called holding the lock)."""
        if self._file is None or self._file.closed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        if self._held is not None:
            self._file.write(self._held)
            self._held = None
        return self._file
