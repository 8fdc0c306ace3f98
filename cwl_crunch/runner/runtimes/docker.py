"""The docker runtime: the container's process run by a docker-compatible engine CLI (`podman` or `docker`).

crunch-run imports this module, so it uses the standard library only.

Signals: the engine client (`<engine> run`, attached, `--sig-proxy=true`) is the process crunch-run
owns. A SIGTERM to its process group is forwarded into the container, where `--init` puts a small
init as PID 1 that passes it on to the command (a command running as PID 1 itself would ignore
it: the kernel drops signals to PID 1 that it has no handler for). SIGKILL cannot be forwarded:
the client dies and the container goes on under the engine, so `cleanup` force-removes it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cwl_crunch.runner.runtimes import (
    Bind,
    CommandNotStarted,
    ImageNotFound,
    ProcessSpec,
    RuntimeUnavailable,
)

_CHECK_TIMEOUT = 60  # seconds for the engine to answer `info`/`inspect`/`rm`; longer → unreachable
_LOAD_TIMEOUT = 3600  # seconds to load an image tarball (several GB on a slow disk)
_ENV_FILE_LINE_LIMIT = 60_000  # podman reads --env-file lines with a 64 KiB scanner
_ENV_FILE_NAME = re.compile(r"[^\s=#][^\s=]*")  # what an --env-file line can name without ambiguity

# Lines an engine writes to the client's stderr (the container's stderr log) when the command never
# started; the rest of the line is the reason.
_INIT_EXEC_FAILED = re.compile(
    r"^(?:ERROR \(catatonit:\d+\): failed to exec pid1: "  # podman --init
    r"|\[FATAL tini \(\d+\)\] exec .* failed: )(?P<reason>.*)$",  # docker --init
    re.MULTILINE,
)
_ENGINE_ERROR = re.compile(
    r"^(?:Error"  # podman
    r"|(?:docker: )?Error response from daemon"  # docker
    r"): (?P<reason>.*)"
)
_ENGINE_WARNING = re.compile(r"^(?:WARN\[\d+\]|time=\S+ level=warning) ")
# How `image inspect` says the image is not there (podman: "image not known", docker: "No such
# image"); any other failure is the engine's (its storage, its TMPDIR), not the image's.
_IMAGE_UNKNOWN = re.compile(r"image not known|no such image|no such object", re.IGNORECASE)
_ENGINE_EXIT_CODES = frozenset({125, 126, 127})  # the engine failed / cannot invoke / cannot find


@dataclass(frozen=True)
class _Started:
    name: str
    state_dir: Path  # holds the --env-file


class DockerRuntime:
    """Runs each process as `<engine> run --rm …` of an image already loaded in the engine."""

    name = "docker"
    holds_start = False  # the engine's client starts the command in one go

    def __init__(self, engine: str = "podman") -> None:
        self.engine = engine  # a name looked up on PATH, or a path
        self._engine_checked = False
        self._started: dict[int, _Started] = {}  # id(spec) → what cleanup must remove

    @property
    def _is_podman(self) -> bool:
        return Path(self.engine).name.startswith("podman")

    # ---- Runtime protocol ----

    def prepare(self, spec: ProcessSpec) -> None:
        self._check_engine()
        if not spec.image:
            raise ImageNotFound("the docker runtime needs a container image")
        found, error = self._image_id(spec.image)
        if found is None and not _IMAGE_UNKNOWN.search(error):  # the engine failed, not the lookup
            raise RuntimeUnavailable(f"{self._label} cannot inspect image {spec.image}: {error}", "infrastructure")
        if found is None:
            raise ImageNotFound(f"image {spec.image} is not available in {self._label}: {error}")

    def start(self, spec: ProcessSpec, held: bool = False) -> subprocess.Popen[bytes]:
        if held:
            raise ValueError("the docker runtime cannot hold a process before its command")
        executable = self._executable()
        name = container_name(spec.name) or f"crunch-{uuid.uuid4().hex[:16]}"
        state_dir = Path(tempfile.mkdtemp(prefix="crunch-docker-"))  # mode 0700
        try:
            process = self._start_client(executable, spec, name, state_dir / "environment")
        except BaseException:
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        self._started[id(spec)] = _Started(name, state_dir)
        return process

    def _start_client(
        self, executable: str, spec: ProcessSpec, name: str, env_file: Path
    ) -> subprocess.Popen[bytes]:
        argv = [executable, *run_arguments(spec, name, env_file)]
        env_file.touch(mode=0o600)  # before anything is written: it may hold tokens
        env_file.write_text(env_file_text(spec.environment))
        try:
            stdin = spec.stdin.open("rb") if spec.stdin is not None else subprocess.DEVNULL
        except OSError as exc:
            raise CommandNotStarted(f"cannot open stdin {spec.stdin}: {exc.strerror}") from exc
        try:
            return subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE if spec.stdout is None else spec.stdout,
                stderr=subprocess.PIPE if spec.stderr is None else spec.stderr,
                start_new_session=True,
                cwd=env_file.parent,  # conmon may leave files (e.g. `oom`) in its working directory
            )
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot run {executable}: {exc.strerror}", "infrastructure") from exc
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()  # the client has its own copy

    def release(self, process: subprocess.Popen[bytes]) -> None:
        raise ValueError("the docker runtime holds no process")

    def abandon(self, process: subprocess.Popen[bytes]) -> None:
        raise ValueError("the docker runtime holds no process")

    def start_failure(self, returncode: int, stderr_head: bytes) -> str | None:
        if returncode == 0:
            return None
        text = stderr_head.decode("utf-8", "replace")
        init_failed = _INIT_EXEC_FAILED.search(text)
        if init_failed:
            reason = init_failed["reason"].strip()
            return f"{self._label} could not execute the command in the container: {reason}"
        if returncode not in _ENGINE_EXIT_CODES:
            return None
        # The engine's own error is the first thing on stderr (after its warnings): the command
        # never ran, so nothing else wrote there. A command that itself exits 125–127 has printed
        # something else first (or nothing at all).
        for line in text.splitlines():
            if _ENGINE_WARNING.match(line) or not line.strip():
                continue
            engine_error = _ENGINE_ERROR.match(line)
            if engine_error is None:
                return None
            return _describe_engine_error(self._label, returncode, engine_error["reason"].strip())
        return None

    def cleanup(self, spec: ProcessSpec | None) -> None:
        if spec is None:
            return  # nothing was started
        started = self._started.pop(id(spec), None)
        if started is not None:
            shutil.rmtree(started.state_dir, ignore_errors=True)
        name = started.name if started is not None else container_name(spec.name)
        if name and self._find_executable() is not None:
            self._remove_container(name)

    def memory_usage(self, spec: ProcessSpec) -> tuple[int, int] | None:
        return None  # the engine's own accounting is not read: crunchstat counts the client's tree

    def members(self, spec: ProcessSpec) -> list[int] | None:
        return None

    # ---- images ----

    def load_tarball(self, path: Path) -> str:
        """Load a `docker save` tarball; return the image id to run (`sha256:…`).

        Cheap when the image is already loaded: the id is the digest of the image config inside the
        tarball, so only the tarball's headers and config are read, not its layers.
        """
        self._check_engine()
        expected = archive_image_id(path)
        if expected is not None and self._image_id(expected)[0] is not None:
            return expected
        loaded = self._engine("load", "--input", str(path), timeout=_LOAD_TIMEOUT)
        if loaded.returncode != 0:
            error = _last_line(loaded.stderr)
            raise ImageNotFound(f"{self._label} could not load the image tarball {path}: {error}")
        # Not a tarball whose config we could read (e.g. an OCI archive): ask the engine what it loaded.
        reference = expected or _loaded_reference(loaded.stdout)
        image_id, error = self._image_id(reference) if reference else (None, "the engine named no image")
        if image_id is None:
            raise ImageNotFound(f"{self._label} loaded {path} but the image is not there: {error}")
        return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"

    # ---- the engine CLI ----

    @property
    def _label(self) -> str:
        return Path(self.engine).name

    def _find_executable(self) -> str | None:
        return shutil.which(self.engine)

    def _executable(self) -> str:
        executable = self._find_executable()
        if executable is None:
            raise RuntimeUnavailable(
                f"this worker has no container engine: {self.engine} is not installed (not on PATH)", "setup"
            )
        return executable

    def _engine(self, *args: str, timeout: float = _CHECK_TIMEOUT) -> subprocess.CompletedProcess[str]:
        executable = self._executable()
        try:
            return subprocess.run(
                [executable, *args],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeUnavailable(
                f"{self._label} {args[0]} did not answer within {timeout:g} s", "infrastructure"
            ) from exc
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot run {executable}: {exc.strerror}", "infrastructure") from exc

    def _check_engine(self) -> None:
        """Raise RuntimeUnavailable unless the engine answers (once per runtime)."""
        if self._engine_checked:
            return
        # podman has no daemon: `info` opens its storage and checks its OCI runtime. docker's
        # `version` fails when the daemon cannot be reached.
        if self._is_podman:
            result = self._engine("info", "--format", "{{.Host.OCIRuntime.Name}}")
        else:
            result = self._engine("version", "--format", "{{.Server.Version}}")
        if result.returncode != 0:
            error = _last_line(result.stderr)
            message = f"the container engine {self._label} does not work: {error}"
            raise RuntimeUnavailable(message, "infrastructure")
        self._engine_checked = True

    def _image_id(self, reference: str) -> tuple[str | None, str]:
        """(the image's id, "") if the engine has the image, else (None, the engine's error)."""
        result = self._engine("image", "inspect", "--format", "{{.Id}}", reference)
        if result.returncode != 0 or not result.stdout.strip():
            return None, _last_line(result.stderr)
        return result.stdout.split()[0], ""

    def _remove_container(self, name: str) -> None:
        # podman's `rm -f` would first send the stop signal and wait its timeout: crunch-run has
        # already given the process its grace period. docker's `rm -f` kills at once.
        args = ["rm", "--force", *(["--time", "0"] if self._is_podman else []), name]
        removed = self._engine(*args)
        if removed.returncode == 0:
            return
        still_there = self._engine("container", "inspect", "--format", "{{.Id}}", name)
        if still_there.returncode == 0:
            error = _last_line(removed.stderr)
            message = f"{self._label} cannot remove container {name}: {error}"
            raise RuntimeUnavailable(message, "infrastructure")


def run_arguments(spec: ProcessSpec, name: str, env_file: Path) -> list[str]:
    """The engine arguments that run `spec` as container `name` (after the executable).

    The environment goes in `env_file` (see `env_file_text`) rather than `-e K=V`, so tokens
    never appear in the host's process list; only values a file line cannot hold use `--env`.
    """
    if not spec.image:
        raise ImageNotFound("the docker runtime needs a container image")
    argv = [
        "run", "--rm", "--name", name,
        "--init",  # an init as PID 1 that forwards signals to the command (see the module docstring)
        "--sig-proxy=true",
        "--pull", "never",  # prepare/load_tarball made sure the image is here: never reach a registry
        "--log-driver", "none",  # output goes to the client (crunch-run); no second copy in the engine
        "--network", "host" if spec.network else "none",
        "--workdir", spec.cwd,
    ]
    if spec.ram:
        argv += ["--memory", str(spec.ram), "--memory-swap", str(spec.ram)]  # equal: no swap on top
    if spec.vcpus:
        argv += ["--cpus", f"{spec.vcpus:g}"]
    argv += ["--env-file", str(env_file)]
    for key, value in spec.environment.items():
        if not _fits_env_file(key, value):
            argv += ["--env", f"{key}={value}"]
    for bind in spec.binds:
        argv += _bind_arguments(bind)
    if spec.stdin is not None:
        argv.append("--interactive")
    return [*argv, spec.image, *spec.command]


def env_file_text(environment: dict[str, str]) -> str:
    """The --env-file for `environment`: one `K=V` line per variable that fits on one."""
    return "".join(f"{key}={value}\n" for key, value in environment.items() if _fits_env_file(key, value))


def _fits_env_file(key: str, value: str) -> bool:
    """Whether an --env-file line reads back as exactly this variable (values are taken verbatim)."""
    one_line = "\n" not in value and "\r" not in value
    return bool(_ENV_FILE_NAME.fullmatch(key)) and one_line and len(key) + len(value) < _ENV_FILE_LINE_LIMIT


def _bind_arguments(bind: Bind) -> list[str]:
    """`-v SRC:DST:MODE`, or `--mount` for paths with a colon (which -v cannot express)."""
    source, target = str(bind.source), bind.target
    if ":" not in source + target:
        return ["--volume", f"{source}:{target}:{'rw' if bind.writable else 'ro'}"]
    if "," not in source + target:
        readonly = "" if bind.writable else ",readonly"
        return ["--mount", f"type=bind,source={source},target={target}{readonly}"]
    raise CommandNotStarted(f"cannot bind {source} at {target}: no engine syntax takes both ':' and ','")


def container_name(name: str) -> str:
    """`name` made acceptable to the engine (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`); "" stays ""."""
    cleaned = re.sub(r"[^a-zA-Z0-9_.-]", "-", name)
    return cleaned if not cleaned or cleaned[0].isalnum() else f"crunch{cleaned}"


def archive_image_id(path: Path) -> str | None:
    """The id (`sha256:` + digest of the config) of the one image in a `docker save` tarball, or None."""
    try:
        with tarfile.open(path, "r:*") as tar:
            manifest = json.load(_member(tar, "manifest.json"))
            if len(manifest) != 1:
                return None
            config = _member(tar, manifest[0]["Config"]).read()
    except (OSError, tarfile.TarError, ValueError, LookupError, TypeError):
        return None
    return f"sha256:{hashlib.sha256(config).hexdigest()}"


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    extracted = tar.extractfile(name)
    if extracted is None:
        raise KeyError(name)
    return extracted


def _loaded_reference(load_output: str) -> str | None:
    """The image `<engine> load`: "Loaded image: REF", "Loaded image ID: ID" or "Loaded image(s): REF"."""
    found = re.findall(r"^Loaded image(?: ID|\(s\))?: (\S+)", load_output, re.MULTILINE)
    return found[-1].split(",")[0] if found else None


def _describe_engine_error(engine: str, returncode: int, reason: str) -> str:
    lowered = reason.lower()
    if "rlimit" in lowered:
        return (
            f"{engine} could not apply the container's resource limits: {reason} "
            "(default_ulimits in containers.conf must not exceed the worker's hard limits)"
        )
    if returncode == 127:
        return f"{engine} could not find the command in the container: {reason}"
    if returncode == 126 and "permission denied" in lowered:
        return f"{engine} could not execute the command in the container: {reason}"
    return f"{engine} failed before the command started (exit {returncode}): {reason}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"
