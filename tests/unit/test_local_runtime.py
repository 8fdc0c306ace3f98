"""The local runtime's bubblewrap command line, and the command check done before starting."""

from __future__ import annotations

from pathlib import Path

import pytest

from cwl_crunch.runner.runtimes import Bind, CommandNotStarted, ProcessSpec
from cwl_crunch.runner.runtimes.local import LocalRuntime, _check_command


def spec(tmp_path: Path, **overrides) -> ProcessSpec:
    values = dict(command=["true"], cwd="/var/spool/cwl", environment={"PATH": "/usr/bin:/bin"},
                  binds=[Bind(tmp_path / "out", "/var/spool/cwl", writable=True), Bind(tmp_path / "in", "/keep/in")])
    values.update(overrides)
    return ProcessSpec(**values)


def pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == flag]


def test_targets_get_room_without_touching_the_host(tmp_path: Path) -> None:
    args = LocalRuntime("bwrap").arguments(spec(tmp_path))
    assert "--unshare-net" in args
    # Directories on the way to a target are fresh tmpfs, the rest of the host read-only.
    assert args[args.index("/var") - 1] == "--tmpfs" and args[args.index("/var/spool") - 1] == "--tmpfs"
    assert ("/usr", "/usr") in pairs(args, "--ro-bind-try")
    assert (str(tmp_path / "out"), "/var/spool/cwl") in pairs(args, "--bind")
    assert (str(tmp_path / "in"), "/keep/in") in pairs(args, "--ro-bind")
    assert args[-2:] == ["--chdir", "/var/spool/cwl"]
    # The host's /proc, /dev and /tmp are replaced by private ones.
    assert ["--proc", "/proc"] == args[args.index("--proc"):args.index("--proc") + 2]
    assert ("/tmp", "/tmp") not in pairs(args, "--ro-bind-try")


def test_network_only_with_the_api_constraint_and_hidden_paths_are_masked(tmp_path: Path) -> None:
    hidden = tmp_path / "secret"
    hidden.mkdir()
    args = LocalRuntime("bwrap").arguments(spec(tmp_path, network=True, hidden=[hidden]))
    assert "--unshare-net" not in args
    assert args[args.index(str(hidden)) - 1] == "--tmpfs"


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
