"""Podman and bubblewrap for tests: a private podman (configuration, storage, locks and state in one
temporary directory; the machine's configuration untouched) and a busybox image built without a registry.

Tests that start processes pass `PrivatePodman.environment` on to them (crunch-run inherits it);
tests that drive a runtime in-process use the `podman_environment` fixture, which sets it in
`os.environ` for the test. Import the fixtures a test module uses from here.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BUSYBOX_IMAGE = "localhost/crunch-test-busybox:1"
_STATIC_BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
_PODMAN_TIMEOUT = 120  # seconds for one podman command here; they take well under one

# Podman, as root, asks for RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 in every container unless
# told otherwise; raising a hard limit needs CAP_SYS_RESOURCE, which sandboxes like this one drop,
# and runc then fails with "error setting rlimit type 7 (6): operation not permitted". A container
# may keep at most the podman process's own hard limits: NOFILE as inherited (podman cannot raise
# it either), NPROC as podman 4.3 sets it for itself at start (setrlimit 32768, seen with strace).
_PODMAN_NPROC = 32768


def require(reason: str | None) -> None:
    """Skip the test for `reason` (a missing tool), or fail it under CI=true, where it must run."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def podman_unavailable() -> str | None:
    """None when the podman tests can run here, else why not."""
    if shutil.which("podman") is None:
        return "podman not installed (.ci/install-deps installs it)"
    if shutil.which("runc") is None and not Path("/usr/sbin/runc").exists():
        return "runc not installed (.ci/install-deps installs it)"
    if os.geteuid() != 0:
        return "the podman tests run podman as root (rootless podman needs subuid/subgid setup)"
    if static_busybox() is None:
        return f"no static busybox at {_STATIC_BUSYBOX} for the test image (Debian's busybox-static)"
    return None


def bwrap_unavailable() -> str | None:
    """None when bubblewrap runs here, else why not."""
    if shutil.which("bwrap") is None:
        return "bwrap not installed (Debian's bubblewrap; .ci/install-deps installs it)"
    probe = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--dev", "/dev", "--proc", "/proc", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces here: {probe.stderr.strip()}"
    return None


def static_busybox() -> Path | None:
    """Debian's busybox-static, if installed: an ELF without an interpreter, so it runs alone in an image."""
    try:
        with _STATIC_BUSYBOX.open("rb") as elf:
            header = elf.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None  # not a little-endian 64-bit ELF: not the build we know how to read
            (phoff,) = struct.unpack_from("<Q", header, 0x20)
            entry_size, count = struct.unpack_from("<HH", header, 0x36)
            elf.seek(phoff)
            table = elf.read(entry_size * count)
    except OSError:
        return None
    pt_interp = 3
    types = (struct.unpack_from("<I", table, i * entry_size)[0] for i in range(count))
    return None if pt_interp in types else _STATIC_BUSYBOX


def _nofile_limit() -> int:
    return min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1048576)


def _nproc_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    return _PODMAN_NPROC if hard == resource.RLIM_INFINITY else min(hard, _PODMAN_NPROC)


class PrivatePodman:
    """Podman as root with everything it writes under one temporary directory.

    Cleaned up with `close()`: containers and images removed, leftover mounts unmounted, the
    directory deleted. The one machine-wide file podman 4.3 still writes is its blob-info cache,
    /var/lib/containers/cache (no setting moves it); it holds digests only.
    """

    def __init__(self) -> None:
        # A short path: conmon's attach socket path must fit in a sockaddr_un (108 bytes).
        self.root = Path(tempfile.mkdtemp(prefix="crunch-podman-"))
        for name in ("storage", "run", "tmp", "image-tmp", "networks"):
            (self.root / name).mkdir()
        self._write_configuration()
        self.environment = {
            # Each replaces the machine's file (and root's ~/.config ones) instead of adding to it.
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.root / "registries.conf"),
        }

    def _write_configuration(self) -> None:
        root = self.root
        (root / "containers.conf").write_text(
            f"""\
[containers]
# See _PODMAN_NPROC: the defaults (1048576) cannot be granted without CAP_SYS_RESOURCE.
default_ulimits = ["nofile={_nofile_limit()}:{_nofile_limit()}", "nproc={_nproc_limit()}:{_nproc_limit()}"]
# A container started without --network gets none, rather than the CNI bridge (which would add a
# host interface and iptables rules).
netns = "none"

[engine]
runtime = "runc"
# No systemd here to manage cgroups; the file logger needs no journald.
cgroup_manager = "cgroupfs"
events_logger = "file"
# Locks as files under tmp_dir rather than the machine-wide /dev/shm/libpod_lock segment, and
# podman's runtime state in tmp_dir rather than /run/libpod.
lock_type = "file"
tmp_dir = "{root / 'tmp'}"
image_copy_tmp_dir = "{root / 'image-tmp'}"

[network]
network_config_dir = "{root / 'networks'}"
"""
        )
        # overlay works as root on this ext4 (and is much faster than vfs for anything but tiny images).
        (root / "storage.conf").write_text(
            f"""\
[storage]
driver = "overlay"
graphroot = "{root / 'storage'}"
runroot = "{root / 'run'}"
"""
        )
        # No registry to search for short names: the tests never pull.
        (root / "registries.conf").write_text("unqualified-search-registries = []\n")

    def environ(self) -> dict[str, str]:
        """The environment of a process that should use this podman (e.g. crunch-run)."""
        return {**os.environ, **self.environment}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `podman ARGS` against this configuration."""
        result = subprocess.run(
            ["podman", *args],
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=_PODMAN_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            command = " ".join(args)
            raise RuntimeError(f"podman {command} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def containers(self) -> list[str]:
        """Names of every container, running or not."""
        return self.run("ps", "--all", "--format", "{{.Names}}").stdout.split()

    def close(self) -> None:
        """Remove everything podman made; safe to call twice. Raises if something is left behind."""
        if not self.root.exists():
            return
        try:
            self.run("rm", "--all", "--force", "--time", "0", check=False)
            # A podman client still attached to a removed container (a test that failed midway)
            # removes it again when it notices, recreating storage: let such processes finish.
            _wait_for_processes_naming(self.root)
            # Deletes images and storage and unmounts what the storage driver mounted.
            self.run("system", "reset", "--force", check=False)
        except (OSError, subprocess.SubprocessError):
            pass  # the directory goes anyway, below
        for mount_point in _mounts_under(self.root):
            subprocess.run(["umount", "--lazy", mount_point], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            raise RuntimeError(f"could not remove the private podman directory {self.root}")


def _wait_for_processes_naming(path: Path, timeout: float = 30) -> None:
    """Wait until no other process names `path` in its command line (conmon, podman's cleanup) or
    environment (podman clients started with this configuration)."""
    needle = str(path).encode()

    def names_path(process: Path) -> bool:
        if process.name == str(os.getpid()):
            return False
        try:
            return any(needle in (process / part).read_bytes() for part in ("cmdline", "environ"))
        except OSError:
            return False  # gone meanwhile

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(map(names_path, Path("/proc").glob("[0-9]*"))):
        time.sleep(0.1)


def _mounts_under(root: Path) -> list[str]:
    """Mount points below `root`, deepest first (from /proc/self/mountinfo, octal escapes undone)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == str(root) or point.startswith(f"{root}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _busybox_rootfs(dest: Path, busybox: Path) -> None:
    """A root filesystem tarball: busybox with a symlink for each applet in /bin, and an empty /tmp."""
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    applets = listed.stdout.split()
    with tarfile.open(dest, "w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777)):
            directory = tarfile.TarInfo(name)
            directory.type, directory.mode = tarfile.DIRTYPE, mode
            tar.addfile(directory)
        with busybox.open("rb") as binary:
            member = tarfile.TarInfo("bin/busybox")
            member.size, member.mode = busybox.stat().st_size, 0o755
            tar.addfile(member, binary)
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)


def build_busybox_tarball(dest: Path) -> Path:
    """Build the busybox test image with a throwaway podman and save it to `dest` as `docker save` does.

    No registry is involved: the image is `podman import` of a rootfs made from busybox-static.
    """
    busybox = static_busybox()
    if busybox is None:
        raise RuntimeError(f"no static busybox at {_STATIC_BUSYBOX}")
    podman = PrivatePodman()
    try:
        rootfs = podman.root / "rootfs.tar"
        _busybox_rootfs(rootfs, busybox)
        podman.run("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), BUSYBOX_IMAGE)
        dest.unlink(missing_ok=True)
        podman.run("save", "--format", "docker-archive", "--output", str(dest), BUSYBOX_IMAGE)
    finally:
        podman.close()
    return dest


# ---- fixtures: import the ones a test module uses ----


@pytest.fixture(scope="session")
def private_podman() -> Iterator[PrivatePodman]:
    """One private podman for the session; required under CI=true."""
    require(podman_unavailable())
    podman = PrivatePodman()
    yield podman
    podman.close()


@pytest.fixture
def podman_environment(private_podman: PrivatePodman, monkeypatch: pytest.MonkeyPatch) -> PrivatePodman:
    """The private podman's variables in os.environ for this test (for runtimes driven in-process)."""
    for name, value in private_podman.environment.items():
        monkeypatch.setenv(name, value)
    return private_podman


@pytest.fixture(scope="session")
def busybox_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox image as a `docker save` tarball, built once per session."""
    require(podman_unavailable())
    return build_busybox_tarball(tmp_path_factory.mktemp("images") / "busybox.tar")


@pytest.fixture(scope="session")
def busybox_image(private_podman: PrivatePodman, busybox_tarball: Path) -> str:
    """BUSYBOX_IMAGE, loaded into the session's private podman."""
    private_podman.run("load", "--input", str(busybox_tarball))
    return BUSYBOX_IMAGE


@pytest.fixture(scope="session")
def bwrap() -> str:
    """The bwrap executable; required under CI=true."""
    require(bwrap_unavailable())
    return shutil.which("bwrap") or "bwrap"
