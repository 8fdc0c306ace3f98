"""crunch-run: execute one Locked container, SPEC §7 step by step.

    fetch → stage mounts → prepare runtime → Running → run (heartbeat, watch) → finalize

Each failure maps to one final state (the `Failure` raised says which); the final state is
decided exactly once (`Outcome`), so a signal arriving while output is being saved cannot turn
Complete into Cancelled or back. Runs as `crunchctl run-container UUID`, started by a dispatcher
that passes the API URL and its own token in the environment (never on the command line).
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .. import __version__
from ..client import ApiError, Client
from ..domain.collections import portable_data_hash
from . import crunchstat, final, images, staging, watch, workdir
from .keep import Keep
from .logs import LiveSender, LogFile
from .outcome import Failure, Outcome
from .runtimes import (
    NOT_STARTED,
    Bind,
    CommandNotStarted,
    ImageNotFound,
    ProcessSpec,
    Runtime,
    RuntimeUnavailable,
    stop_process,
    wait_for_exit,
)
from .runtimes.local import LocalRuntime

RUNNING = {"state": "Running", "runtime_status": {"activity": None}}
ACTIVITY_DELAY_SECONDS = 0.5  # a step taking longer than this is shown in runtime_status.activity
WATCHERS_AFTER_SECONDS = 0.2  # heartbeats, cancel checks and crunchstat begin once the process has run this long
# Output files' SHA-1 digests (CWL's checksums) go into the container's output_properties["sha1"]
# unless there are more files than this, which would make the container record large.
MAX_RECORDED_DIGESTS = 1000


@dataclass
class Options:
    work_root: Path
    blob_root: Path | None = None
    heartbeat_seconds: float | None = None  # default: a quarter of the server's heartbeat timeout
    watch_seconds: float = 1.0
    grace_seconds: float = 10.0
    crunchstat_seconds: float = 10.0
    hidden: tuple[Path, ...] = ()  # host paths the container must not see (data dir, tokens)
    engine: str | None = None  # docker-compatible CLI for non-empty container_image


class CrunchRun:
    def __init__(self, api: Client, uuid: str, options: Options, lock_for: str | None = None) -> None:
        """`lock_for`: the dispatcher that forked us, which left the lock to us (its uuid)."""
        self.api, self.uuid, self.options = api, uuid, options
        self.lock_for = lock_for
        self.workdir = options.work_root / uuid
        self.outcome = Outcome()
        self.cancel_requested = threading.Event()
        self.cancel_cause = "user"
        self.container: dict[str, Any] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.runtime: Runtime | None = None
        self.spec: ProcessSpec | None = None
        self.logs: dict[str, LogFile] = {}
        self.records: dict[str, bytes] = {}  # container.json and node.json, for the log collection
        self.streams: dict[str, Path] = {}  # stdin/stdout/stderr mounts as host files
        self.live: LiveSender | None = None
        self.keep: Keep | None = None
        self.running = False  # Running recorded: from here on, (partial) output is saved
        # The final state, the output and the log collection all recorded: the work directory
        # (the output's copy, tmp mounts, log files) is then removed. Otherwise it stays, to look at.
        self.all_saved = False

    # -- the steps -----------------------------------------------------------------------

    def run(self) -> int:
        try:
            if not self._fetch():
                return 0
        except (ApiError, OSError) as error:
            print(f"crunch-run {self.uuid}: cannot fetch the container: {error}", file=sys.stderr)
            self._unlock_quietly()
            return 1
        staging.prefetch(self._keep(), self.container.get("mounts") or {})  # read while staging
        if not self.container.get("container_image"):
            constraints = self.container.get("runtime_constraints") or {}
            local = LocalRuntime()
            local.expect(self.uuid, constraints.get("ram"), constraints.get("vcpus"))
            self.runtime = local
        self._open_logs()
        exit_code: int | None = None
        try:
            self.say(f"crunch-run {__version__} on {platform.node()}, Python {platform.python_version()}")
            self.say(f"container {self.uuid}: {self.container['command']}")
            binds, streams = self._stage()
            self.runtime, self.spec = self._prepare(binds, streams)
            exit_code = self._execute()
        except Failure as failure:
            self.say(f"error: {failure.error}")
            self.outcome.decide(failure.state, failure.cause, failure.error)
        except Exception as error:  # noqa: BLE001 - whatever it was, the container must end
            self.say(f"error: crunch-run failed: {error!r}")
            self.outcome.decide("Cancelled", "infrastructure", f"crunch-run failed: {error}")
        try:
            return self._finalize(exit_code)
        finally:  # after the final state: nothing of the process is left to wait for
            if self.runtime is not None:
                self.runtime.cleanup(self.spec)
            if self.keep is not None:
                self.keep.release()
            if self.all_saved:
                workdir.remove(self.workdir)
            else:  # the logs too stay, for a look
                self._quietly(workdir.write_out, self.workdir, self.logs, self.records)
                print(f"crunch-run {self.uuid}: not everything was saved: its files stay in {self.workdir}",
                      file=sys.stderr)
            self._keep().prune()  # the worker's housekeeping, once all is recorded

    def _fetch(self) -> bool:
        """The container, if it is Locked by our token (locked here, for a dispatcher that left
        that to us); else nothing to do (exit 0)."""
        if self.lock_for is not None:
            try:
                self.container = self.api.request("POST", f"/containers/{self.uuid}/lock",
                                                  {"dispatcher_uuid": self.lock_for})
            except ApiError as error:
                if error.status != 422:
                    raise
                print(f"crunch-run {self.uuid}: not locked ({error}); nothing to do", file=sys.stderr)
                return False
            token_uuid = self.container["locked_by_uuid"]
        else:
            self.container = self.api.get("containers", self.uuid)
            token_uuid = self.api.request("GET", "/users/current")["token_uuid"]
        if self.options.heartbeat_seconds is None:
            timeout = self.api.request("GET", "/config").get("container_heartbeat_timeout") or 60
            self.options.heartbeat_seconds = min(10.0, max(0.2, timeout / 4))
        if self.container["state"] != "Locked" or self.container["locked_by_uuid"] != token_uuid:
            print(f"crunch-run {self.uuid}: {self.container['state']}, not Locked by this dispatcher; nothing to do",
                  file=sys.stderr)
            return False
        self.secret_mounts = {}
        if self.container.get("has_secret_mounts", True):  # (a server that does not say: ask)
            self.secret_mounts = self.api.request("GET", f"/containers/{self.uuid}/secret_mounts")["secret_mounts"]
        return True

    def _open_logs(self) -> None:
        self.live = LiveSender(self._send_live, lambda e: print(f"crunch-run: live log: {e}", file=sys.stderr))
        self.logs = workdir.prepare(self.workdir, self.live)
        self.records = workdir.records(self.container, self.options.engine)

    def _stage(self) -> tuple[list[Bind], dict[str, Path]]:
        mounts = {**(self.container.get("mounts") or {}), **(self.secret_mounts or {})}
        # Collections are the only kind that can be slow to stage (blobs fetched from elsewhere);
        # the activity is shown once staging has taken a noticeable time, not for every container.
        slow = partial(self._quietly, self._status, {"activity": "staging inputs"})
        with watch.announced_if_slow(ACTIVITY_DELAY_SECONDS, slow,
                                     any(m.get("kind") == "collection" for m in mounts.values())):
            try:
                return staging.stage_mounts(self._keep(), mounts, self.container["output_path"],
                                            self.workdir, self.say)
            except staging.StagingError as error:
                raise Failure(str(error), cause="setup") from error
            finally:
                self._keep().settle()  # this thread's connection is free again

    def _prepare(self, binds: list[Bind], streams: dict[str, Path]) -> tuple[Runtime, ProcessSpec]:
        image = self.container.get("container_image") or ""
        engine = images.engine_runtime(image, self.options.engine) if image else None
        runtime: Runtime = engine or self.runtime or LocalRuntime()
        spec = staging.process_spec(self.container, self.api.url, binds, streams,
                                    hidden=[*self.options.hidden, self.options.work_root])
        self.streams = streams
        try:
            if engine is not None:
                spec.image = images.ready_image(engine, image, self._keep(), self._status, self.say)
            runtime.prepare(spec)
        except RuntimeUnavailable as error:
            raise Failure(str(error), cause=error.cause) from error
        except ImageNotFound as error:
            raise Failure(f"container image not found: {error}", cause="setup") from error
        self.say(f"runtime {runtime.name}")
        return runtime, spec

    def _execute(self) -> int | None:
        """Run the process to its end (or until cancelled / timed out); its exit code."""
        assert self.runtime is not None and self.spec is not None
        held = self.runtime.holds_start  # set up while Running is recorded, run once it is
        files = {name: self.streams[name].open("wb") for name in ("stdout", "stderr") if name in self.streams}
        self.spec.stdout, self.spec.stderr = files.get("stdout"), files.get("stderr")
        try:
            self.process = self._start(held)
        finally:
            for f in files.values():
                f.close()
        self.say(f"started process {self.process.pid}")
        pumps = [LogFile.pump(self.logs[name], stream) for stream, name in
                 ((self.process.stdout, "stdout.txt"), (self.process.stderr, "stderr.txt")) if stream is not None]
        # A process shorter than WATCHERS_AFTER_SECONDS needs no heartbeat (Running has just set
        # it), no cancel check (the first would come later still) and gets one crunchstat line.
        watchers = watch.Watchers((self._heartbeat, self._watch, self._crunchstat), WATCHERS_AFTER_SECONDS)
        max_run_time = (self.container.get("scheduling_parameters") or {}).get("max_run_time") or 0
        deadline = time.monotonic() + max_run_time if max_run_time else None
        while (returncode := self.process.poll()) is None:
            pause = watchers.tick()
            if self.cancel_requested.is_set():
                self._stop("cancelled")
                self.outcome.decide("Cancelled", self.cancel_cause, None)
            elif deadline is not None and time.monotonic() > deadline:
                self._stop(f"max_run_time {max_run_time} s exceeded")
                self.outcome.decide("Cancelled", "timeout", f"max_run_time of {max_run_time} s exceeded")
            wait_for_exit(self.process, pause)
        for pump in pumps:
            pump.join()
        watchers.stop()
        if not watchers.started:
            self.logs["crunchstat.txt"].write(crunchstat.ended_early())
        self.say(f"process exited with status {returncode}")
        problem = self.runtime.start_failure(returncode, self._first_stderr_line())
        if problem is not None:
            raise Failure(f"{NOT_STARTED.format(self.spec.command[0])} ({problem})", cause="setup")
        return returncode if returncode >= 0 else 128 - returncode

    def _start(self, held: bool) -> subprocess.Popen[bytes]:
        """The process, started once Running is recorded. Held, it is started (the command checked,
        the sandbox built) while the server records Running: the update is sent first and its
        answer read afterwards; then the process is released."""
        assert self.runtime is not None and self.spec is not None
        if not held:
            self._running()
            return _started(self.runtime, self.spec, held)
        recorded = self.api.begin("PUT", f"/containers/{self.uuid}", RUNNING)
        try:
            process = _started(self.runtime, self.spec, held)
        except BaseException:
            self._quietly(self._running, recorded)  # so that the final state follows it
            raise
        try:
            self._running(recorded)
        except BaseException:
            self.runtime.abandon(process)
            raise
        self.runtime.release(process)
        return process

    def _running(self, recorded: Callable[[], Any] | None = None) -> None:
        """Running is recorded before any user code starts (SPEC §7); `recorded`: the answer to
        the update, already sent."""
        self.container = recorded() if recorded is not None else self.api.update("containers", self.uuid, RUNNING)
        self.running = True
        self.say("state Running")

    def _output_dir(self) -> Path | None:
        """The output directory on the host, if the container got one."""
        output_dir = staging.host_path(self.spec.binds if self.spec else [], self.container["output_path"], "/")
        return output_dir if output_dir is not None and output_dir.is_dir() else None

    def _first_stderr_line(self) -> bytes:
        """What the process (or the runtime, failing to start it) printed first, without its stamp."""
        try:
            return self.logs["stderr.txt"].first_line()
        except OSError:
            return b""

    def _finalize(self, exit_code: int | None) -> int:
        """Capture output and logs, then record the final state (decided once) with both."""
        keep = self._keep()
        keep.settle()  # (staging may not have been reached)
        changes: dict[str, Any] = {}
        manifests: dict[str, dict[str, Any]] = {}  # "output"/"log" → its manifest, saved with the final state
        finished = self.outcome.state is None and exit_code is not None  # Complete once the output is captured
        output_dir = self._output_dir() if self.running else None
        if output_dir is not None:  # partial output is saved on Cancelled too
            # The exit code and the upload are shown only if capturing the output takes a while;
            # otherwise they arrive with the final state, one update instead of two.
            shown: dict[str, Any] = {"runtime_status": {"activity": "uploading output"}}
            if finished:
                shown["exit_code"] = exit_code
            slow = partial(self._quietly, self._set, shown)
            with watch.announced_if_slow(ACTIVITY_DELAY_SECONDS, slow, any(output_dir.iterdir())):
                self._capture_output(keep, output_dir, manifests, changes, finished, exit_code)
        if finished:
            self.outcome.decide("Complete")
        state = self.outcome.state or "Cancelled"
        self.say(f"final state {state}" + (f" ({self.outcome.error})" if self.outcome.error else ""))
        for log in self.logs.values():
            log.close()
        # Lines not yet sent live (all of them, for a container shorter than a second) go to the
        # server only if the log collection cannot be saved: it holds them all.
        unsent = self.live.close(send_pending=False) if self.live is not None else {}
        try:
            manifests["log"] = keep.store_files({**{name: log.content() for name, log in self.logs.items()},
                                                 **self.records})
        except Exception as error:  # noqa: BLE001 - the live log is kept by the server
            self._log_not_saved(error, unsent=unsent)
        if state == "Queued":
            self._unlock_quietly()
            return 1
        changes["state"] = state
        if state == "Complete":
            changes["exit_code"] = exit_code
        status = {k: v for k, v in (("cause", self.outcome.cause), ("error", self.outcome.error)) if v}
        changes["runtime_status"] = {"activity": None, **status}
        try:
            self.container, saved = final.record(self.api, keep, self.uuid, changes, manifests,
                                                 partial(self._log_not_saved, unsent=unsent))
        except ApiError as error:
            print(f"crunch-run {self.uuid}: cannot record the final state {state}: {error}", file=sys.stderr)
            return 1
        self.all_saved = (output_dir is None or "output" in saved) and "log" in saved
        return 0

    def _capture_output(self, keep: Keep, output_dir: Path, manifests: dict[str, dict[str, Any]],
                        changes: dict[str, Any], finished: bool, exit_code: int | None) -> None:
        """The output's manifest into `manifests` (its files' SHA-1 into `changes`); a failure → Cancelled."""
        try:
            digests: dict[str, str] = {}
            manifests["output"] = keep.capture(output_dir, self.container.get("output_glob") or None, sha1=digests)
            if 0 < len(digests) <= MAX_RECORDED_DIGESTS:  # clients need not read files to checksum them
                changes["output_properties"] = {**(self.container.get("output_properties") or {}), "sha1": digests}
            self.say(f"output {portable_data_hash(manifests['output'])}")
        except Exception as error:  # noqa: BLE001 - Complete becomes Cancelled, reported
            self.say(f"error: cannot save the output: {error}")
            if finished:  # Cancelled carries no exit code: record it first
                self._quietly(self._set, {"exit_code": exit_code})
            self.outcome.decide("Cancelled", "infrastructure", f"cannot save the output: {error}")

    def _log_not_saved(self, error: Exception, *, unsent: dict[str, str]) -> None:
        print(f"crunch-run {self.uuid}: cannot save the log collection (the live log is kept): {error}",
              file=sys.stderr)
        if unsent:
            self._quietly(self._send_live, unsent)

    # -- while running -------------------------------------------------------------------

    def _heartbeat(self, stop: threading.Event) -> None:
        watch.send_heartbeats(self.api, self.uuid, self.options.heartbeat_seconds or 5.0, stop,
                              lambda error: print(f"crunch-run {self.uuid}: {error}", file=sys.stderr))

    def _watch(self, stop: threading.Event) -> None:
        watch.wait_for_cancel(self.api, self.uuid, self.options.watch_seconds, stop, self._cancelled_by_user)

    def _cancelled_by_user(self) -> None:
        self.cancel_cause = "user"
        self.cancel_requested.set()

    def _crunchstat(self, stop: threading.Event) -> None:
        assert self.process is not None and self.spec is not None and self.runtime is not None
        memory, members = partial(self.runtime.memory_usage, self.spec), partial(self.runtime.members, self.spec)

        def warn(text: str) -> None:
            self.say(text)
            self._quietly(self._status, {"warning": text})

        log, interval = self.logs["crunchstat.txt"], self.options.crunchstat_seconds
        crunchstat.record(self.process.pid, memory, log, warn, interval, stop, members)

    def _stop(self, why: str) -> None:
        assert self.process is not None
        stop_process(self.process, self.options.grace_seconds, why, self.say)

    def on_signal(self, signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT to crunch-run: cancel (a retryable cause: nobody asked the container to stop)."""
        if not self.cancel_requested.is_set():
            self.cancel_cause = "infrastructure"
            self.cancel_requested.set()

    # -- helpers -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if "crunch-run.txt" in self.logs:
            self.logs["crunch-run.txt"].write(text)
        else:
            print(f"crunch-run {self.uuid}: {text}", file=sys.stderr)

    def _keep(self) -> Keep:
        if self.keep is None:
            self.keep = Keep(self.api, self.options.blob_root, self.options.work_root / "collections")
        return self.keep

    def _set(self, changes: dict[str, Any]) -> None:
        self.container = self.api.update("containers", self.uuid, changes)

    def _status(self, status: dict[str, Any]) -> None:
        self._set({"runtime_status": status})

    def _send_live(self, batch: dict[str, str]) -> None:
        self.api.request("POST", f"/containers/{self.uuid}/log", {"files": batch})

    def _quietly(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except (ApiError, OSError) as error:
            print(f"crunch-run {self.uuid}: {error}", file=sys.stderr)

    def _unlock_quietly(self) -> None:
        self._quietly(self.api.request, "POST", f"/containers/{self.uuid}/unlock")


def _started(runtime: Runtime, spec: ProcessSpec, held: bool) -> subprocess.Popen[bytes]:
    try:
        return runtime.start(spec, held=held)
    except CommandNotStarted as error:
        raise Failure(str(error), cause="setup") from error
    except OSError as error:
        raise Failure(f"cannot start the command: {error}", cause="setup") from error


def main(uuid: str, options: Options, lock_for: str | None = None) -> int:
    api_url = os.environ.get("CRUNCH_API")
    token = os.environ.get("CRUNCH_DISPATCH_TOKEN")
    if not api_url or not token:
        print("crunch-run: CRUNCH_API and CRUNCH_DISPATCH_TOKEN must be set by the dispatcher", file=sys.stderr)
        return 2
    workdir.forget_missing_tmpdir()
    api = Client(api_url, token)
    run = CrunchRun(api, uuid, options, lock_for)
    signal.signal(signal.SIGTERM, run.on_signal)
    signal.signal(signal.SIGINT, run.on_signal)
    try:
        return run.run()
    finally:  # (a worker process goes on to its next container)
        api.close()

