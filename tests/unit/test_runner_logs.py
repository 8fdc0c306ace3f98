"""crunch-run's log pipeline, by value: stamps, long lines, the live-view throttle, batching."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

from cwl_crunch.runner import crunchstat, logs
from cwl_crunch.runner.logs import CONTINUED, LiveSender, LogFile, Throttle, split_line, timestamp

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def test_timestamp_is_fixed_width_utc_with_nanoseconds() -> None:
    assert timestamp(0) == b"1970-01-01T00:00:00.000000000Z"
    assert timestamp(1_700_000_000_123_456_789) == b"2023-11-14T22:13:20.123456789Z"
    assert STAMP.match(timestamp()) and len(timestamp()) == 30


def test_long_lines_are_split_with_continuation_marks() -> None:
    assert split_line(b"short", 64) == [b"short"]
    parts = split_line(b"x" * 200, 64)
    assert all(len(p) <= 64 for p in parts)
    assert parts[0].endswith(CONTINUED) and not parts[0].startswith(CONTINUED)
    assert all(p.startswith(CONTINUED) and p.endswith(CONTINUED) for p in parts[1:-1])
    assert parts[-1].startswith(CONTINUED) and not parts[-1].endswith(CONTINUED)
    assert b"".join(p.removeprefix(CONTINUED).removesuffix(CONTINUED) for p in parts) == b"x" * 200


def test_log_file_stamps_complete_lines_and_keeps_partial_ones(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "stdout.txt", live=None)
    log.feed(b"one\ntw")
    log.feed(b"o\r\nthree")
    log.close()
    lines = log.read().splitlines()
    assert [line.split(b" ", 1)[1] for line in lines] == [b"one", b"two", b"three"]
    assert all(STAMP.match(line.split(b" ", 1)[0]) for line in lines)


def test_a_huge_line_without_newline_is_written_in_marked_segments(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(logs, "LINE_LIMIT", 40)
    log = LogFile(tmp_path / "stdout.txt", live=None)
    log.feed(b"a" * 100)
    log.feed(b"b\n")
    log.close()
    texts = [line.split(b" ", 1)[1] for line in log.read().splitlines()]
    assert len(texts) >= 3
    assert texts[0].endswith(CONTINUED) and texts[-1].startswith(CONTINUED) and texts[-1].endswith(b"b")
    joined = b"".join(t.removeprefix(CONTINUED).removesuffix(CONTINUED) for t in texts)
    assert joined == b"a" * 100 + b"b"


def test_a_small_log_stays_in_memory_and_a_large_one_goes_on_to_its_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(logs, "HELD_BYTES", 200)
    small = LogFile(tmp_path / "log" / "small.txt", live=None)
    small.write("one\ntwo")
    small.close()
    assert small.content() == small.read() and isinstance(small.content(), bytes)
    assert [line.split(b" ", 1)[1] for line in small.read().splitlines()] == [b"one", b"two"]
    assert small.first_line() == b"one"
    assert not (tmp_path / "log").exists(), "no directory, no file for a small log"

    large = LogFile(tmp_path / "log" / "large.txt", live=None)
    for n in range(10):
        large.write_line(b"line %d " % n + b"x" * 30)
    assert (tmp_path / "log" / "large.txt").exists(), "written as soon as it outgrew memory"
    large.close()
    assert large.content() == tmp_path / "log" / "large.txt"
    texts = [line.split(b" ", 1)[1] for line in large.read().splitlines()]
    assert texts == [b"line %d " % n + b"x" * 30 for n in range(10)], "what was held comes first, nothing lost"
    assert large.first_line() == texts[0]


def test_a_held_log_is_written_out_for_a_look(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "work" / "log" / "stderr.txt", live=None)
    log.write("it failed")
    log.close()
    log.write_out()
    assert (tmp_path / "work" / "log" / "stderr.txt").read_bytes() == log.read()
    assert log.read().endswith(b" it failed\n")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_silences_the_live_view_then_reports_what_it_skipped() -> None:
    clock = FakeTime()
    throttle = Throttle(max_bytes=100, max_lines=1000, period=60, clock=clock)
    line = b"x" * 40 + b"\n"
    assert throttle.admit(line) == [line]
    assert throttle.admit(line) == [line]
    notice = throttle.admit(line)  # 123 bytes > 100
    assert len(notice) == 1 and b"Exceeded rate 100 bytes per 60 seconds." in notice[0]
    assert b"Logging will be silenced for the next 60 seconds." in notice[0]
    assert b"A complete log is still being written and will be available when the container finishes." in notice[0]
    assert throttle.admit(line) == []
    clock.now = 61
    resumed = throttle.admit(line)
    assert b"Skipped 82 bytes of log" in resumed[0] and resumed[1] == line


def test_throttle_counts_lines_too() -> None:
    throttle = Throttle(max_bytes=10**9, max_lines=3, period=60, clock=FakeTime())
    admitted = [throttle.admit(b"l\n") for _ in range(4)]
    assert admitted[:3] == [[b"l\n"]] * 3
    assert b"Exceeded rate 3 lines per 60 seconds" in admitted[3][0]


def test_live_sender_batches_at_most_once_per_second() -> None:
    sent: list[tuple[float, dict[str, str]]] = []
    done = threading.Event()
    sender = LiveSender(lambda batch: sent.append((time.monotonic(), batch)), lambda e: done.set())
    for i in range(20):
        sender.add("stdout.txt", b"line %d\n" % i)
        time.sleep(0.1)
    sender.close()
    assert "".join(b["stdout.txt"] for _, b in sent) == "".join(f"line {i}\n" for i in range(20))
    gaps = [b - a for (a, _), (b, _) in zip(sent, sent[1:])]
    assert all(gap >= 0.9 for gap in gaps[:-1]), gaps  # the last one is the flush on close
    assert not done.is_set()


def test_live_sender_can_hand_back_what_it_has_not_sent_instead_of_sending_it() -> None:
    sent: list[dict[str, str]] = []
    sender = LiveSender(sent.append, lambda e: None)
    sender.add("stdout.txt", b"one\n")
    sender.add("stderr.txt", b"two\n")
    assert sender.close(send_pending=False) == {"stdout.txt": "one\n", "stderr.txt": "two\n"}
    assert sent == []  # a container shorter than a second sends nothing live
    flushed = LiveSender(sent.append, lambda e: None)
    flushed.add("stdout.txt", b"three\n")
    assert flushed.close() == {} and sent == [{"stdout.txt": "three\n"}]


def test_crunchstat_counts_the_process_group_from_a_member_list_or_the_whole_host() -> None:
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert crunchstat.usage(process.pid).endswith("processes 1")  # every /proc entry looked at
        assert crunchstat.usage(process.pid, lambda: [process.pid]).endswith("processes 1")
        assert crunchstat.usage(process.pid, lambda: []).endswith("processes 0")  # only the listed pids count
        assert crunchstat.usage(process.pid, lambda: None).endswith("processes 1")  # unknown: the whole host
    finally:
        process.kill()
        process.wait()


def test_a_process_ended_before_its_first_sample_is_summed_up_from_what_the_kernel_accounted() -> None:
    subprocess.run(["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"], check=True)
    line = crunchstat.ended_early()
    match = re.match(r"cpu (\d+\.\d\d) user (\d+\.\d\d) sys; mem (\d+) max rss; ended before the first sample$", line)
    assert match, line
    assert float(match[1]) + float(match[2]) > 0 and int(match[3]) > 0  # the loop's CPU, the shell's memory
