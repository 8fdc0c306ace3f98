"""`cwl-crunch` leaves without tearing the interpreter down, but not without what an exit owes:
exit handlers, flushed output, and threads still at work."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _exit_with(body: str) -> subprocess.CompletedProcess[str]:
    program = textwrap.dedent("""
        import atexit, sys, threading, time
        from cwl_crunch.cwl.main import exit_fast

        class Torn:
            def __del__(self):
                print("torn down", flush=True)

        kept = Torn()  # freed only by the interpreter's teardown
        atexit.register(print, "exit handler ran")
        sys.stdout.write("buffered, not flushed")
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)


def test_the_teardown_is_skipped_but_handlers_run_and_output_is_flushed() -> None:
    done = _exit_with("exit_fast(3)")

    assert done.returncode == 3
    assert done.stdout == "buffered, not flushedexit handler ran\n"  # and no "torn down"


def test_a_thread_still_at_work_is_waited_for() -> None:
    done = _exit_with("""
        worker = threading.Thread(target=lambda: (time.sleep(0.3), print("worker done", flush=True)))
        worker.start()
        exit_fast(4)
    """)

    assert done.returncode == 4
    assert "worker done" in done.stdout
    assert done.stdout.index("worker done") < done.stdout.index("exit handler ran")
