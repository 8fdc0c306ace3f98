"""The local runtime's bubblewrap command line, and the command check done before starting."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from cwl_crunch.runner.runtimes import Bind, CommandNotStarted, ProcessSpec, local
from cwl_crunch.runner.runtimes.local import LocalRuntime, _check_command


def spec(tmp_path: Path, **overrides) -> ProcessSpec:
    values = dict(command=["true"], cwd="/var/spool/cwl", environment={"PATH": "/usr/bin:/bin"},
                  binds=[Bind(tmp_path / "out", "/var/spool/cwl", writable=True), Bind(tmp_path / "in", "/keep/in")])
    values.update(overrides)
    return ProcessSpec(**values)


def operands(args: list[str], flag: str) -> set[str]:
    return {args[i + 1] for i, a in enumerate(args) if a == flag}


def pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == flag]


def test_only_directories_without_room_for_a_target_are_carved(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "a" / "b" / "c").mkdir(parents=True)
    (host / "a" / "b" / "d").write_text("")
    (host / "a" / "e").mkdir()
    (host / "a" / "link").symlink_to("e")
    a, b = host / "a", host / "a" / "b"
    args = local._carve(host, [PurePosixPath(b / "new"), PurePosixPath(a / "link" / "x")])
    # host has room for everything below it: bound whole. host/a needs host/a/link to be a directory,
    # not the host's symlink: carved. host/a/b lacks room for b/new: carved, its entries bound.
    assert args[:5] == ["--ro-bind", str(host), str(host), "--tmpfs", str(a)]
    assert args[args.index(str(b)) - 1] == "--tmpfs"
    assert {(str(b / "c"),) * 2, (str(b / "d"),) * 2, (str(a / "e"),) * 2} <= set(pairs(args, "--ro-bind-try"))
    assert str(a / "link") not in args  # made by the bind of a/link/x, inside host/a's tmpfs
    args = local._carve(host, [PurePosixPath(b / "c" / "new")])
    # host/a and host/a/b are shown by host's bind already: only host/a/b/c needs a mount of its own.
    assert args == ["--ro-bind", str(host), str(host), "--tmpfs", str(b / "c")]


def test_targets_get_room_without_touching_the_host(tmp_path: Path) -> None:
    args = LocalRuntime("bwrap").arguments(spec(tmp_path))
    assert "--unshare-net" in args
    # A directory lacking room for a target is a fresh tmpfs holding the host's entries read-only
    # (`/` for /keep, /var/spool for /var/spool/cwl); one with room is the host's, read-only.
    assert args[args.index("/var/spool") - 1] == "--tmpfs"
    assert ("/var", "/var") in pairs(args, "--ro-bind") and "/var" not in pairs(args, "--tmpfs")
    assert ("/usr", "/usr") in pairs(args, "--ro-bind-try")
    assert args.index("/var") < args.index("/var/spool") < args.index("/var/spool/cwl")  # outer mounts first
    assert (str(tmp_path / "out"), "/var/spool/cwl") in pairs(args, "--bind")
    assert (str(tmp_path / "in"), "/keep/in") in pairs(args, "--ro-bind")
    assert args[-2:] == ["--chdir", "/var/spool/cwl"]
    # The host's /proc, /dev and /tmp are replaced by private ones.
    assert ["--proc", "/proc"] == args[args.index("--proc"):args.index("--proc") + 2]
    assert ("/tmp", "/tmp") not in pairs(args, "--ro-bind-try")


def test_the_root_is_bound_whole_when_the_host_has_room_for_every_target(tmp_path: Path) -> None:
    # No /keep mount: every target lies below a host directory (/var/spool/cwl) or replaces a
    # private one (/tmp), so `/` is one bind rather than one per entry.
    binds = [Bind(tmp_path / "out", "/var/spool/cwl", writable=True), Bind(tmp_path / "tmp", "/tmp", writable=True)]
    hidden = Path("/etc")  # (nothing is mounted: only the command line is looked at)
    args = LocalRuntime("bwrap").arguments(spec(tmp_path, binds=binds, hidden=[hidden]))
    assert pairs(args, "--ro-bind") == [("/", "/")] and pairs(args, "--ro-bind-try") == []
    assert args.index(str(hidden)) > args.index("/") and args[args.index(str(hidden)) - 1] == "--tmpfs"
    assert args[args.index("/var/spool") - 1] == "--tmpfs" and "/var" not in args
    assert args.index("/") < args.index("/var/spool") < args.index("--proc") < args.index("/var/spool/cwl")
    assert args.index("--tmpfs", args.index("--proc")) < args.index(str(tmp_path / "tmp"))  # private /tmp, then the bind
    assert (str(tmp_path / "out"), "/var/spool/cwl") in pairs(args, "--bind")


def test_network_only_with_the_api_constraint_and_hidden_paths_are_masked(tmp_path: Path) -> None:
    hidden = Path("/etc")  # (nothing is mounted: only the command line is looked at)
    args = LocalRuntime("bwrap").arguments(spec(tmp_path, network=True, hidden=[hidden]))
    assert "--unshare-net" not in args
    assert str(hidden) in operands(args, "--tmpfs")


def test_hidden_paths_the_sandbox_cannot_see_anyway_get_no_mask(tmp_path: Path) -> None:
    under_tmp = tmp_path / "data"  # the host's /tmp is replaced by a private one
    under_tmp.mkdir()
    under_target = Path("/var/spool/cwl/secret")  # a mount target covers it
    link = tmp_path / "link-to-etc"  # under /tmp, but leads to /etc, which the sandbox shows
    link.symlink_to("/etc")
    missing = Path("/nonexistent-cwl-crunch-test")
    args = LocalRuntime("bwrap").arguments(spec(tmp_path, hidden=[under_tmp, under_target, link, missing]))
    assert operands(args, "--tmpfs") >= {"/etc"}
    assert not {str(under_tmp), str(under_target), str(link), str(missing)} & operands(args, "--tmpfs")


def test_a_missing_or_unexecutable_command_is_caught_before_starting(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    script = tmp_path / "out" / "run.sh"
    script.write_text("echo hi\n")
    _check_command(spec(tmp_path, command=["sh"]))
    _check_command(spec(tmp_path, command=["/bin/true"]))
    with pytest.raises(CommandNotStarted, match="command 'nope' is missing, the #! interpreter is missing"):
        _check_command(spec(tmp_path, command=["nope"]))
    with pytest.raises(CommandNotStarted):
        _check_command(spec(tmp_path, command=["/var/spool/cwl/run.sh"]))  # not executable
    script.chmod(0o755)
    _check_command(spec(tmp_path, command=["/var/spool/cwl/run.sh"]))  # found through the bind
    _check_command(spec(tmp_path, command=["./run.sh"]))  # relative to cwd


def test_the_command_is_looked_for_through_the_deepest_bind_and_never_in_the_private_tmp(tmp_path: Path) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    (outer / "tools").mkdir(parents=True)
    inner.mkdir()
    for place in (outer / "tools" / "step", inner / "step"):
        place.write_text("#!/bin/sh\n")
    (inner / "step").chmod(0o755)  # only the one the nested bind shows can run
    binds = [Bind(outer, "/opt"), Bind(inner, "/opt/tools/")]
    _check_command(spec(tmp_path, command=["step"], binds=binds, environment={"PATH": "/usr/bin:/opt//tools/"}))
    (inner / "step").chmod(0o644)
    (outer / "tools" / "step").chmod(0o755)  # hidden by the nested bind: not found
    with pytest.raises(CommandNotStarted):
        _check_command(spec(tmp_path, command=["step"], binds=binds, environment={"PATH": "/opt/tools"}))
    _check_command(spec(tmp_path, command=["/opt/../opt/tools/../tools/../../bin/sh"], binds=binds))
    with pytest.raises(CommandNotStarted):  # the host's /tmp is not the container's
        _check_command(spec(tmp_path, command=["/tmp/anything"], binds=binds))
