"""The local backend collects every crunch-run it forked, even one that ends while it looks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cwl_crunch.dispatch.backends import Capacity, local
from cwl_crunch.runner.crunch_run import Options

UUID = "zzzzz-dz642-000000000000001"


def test_a_child_ending_between_the_reaping_and_the_pid_file_check_is_still_collected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = local.LocalBackend(Capacity(1, 1 << 30), tmp_path / "dispatch", {}, Options(work_root=tmp_path / "work"))
    pid = os.fork()
    if pid == 0:  # a crunch-run that saved everything and exits 0 a moment from now
        time.sleep(0.3)
        os._exit(0)
    backend.children[UUID] = pid
    (backend.state_dir / f"{UUID}.pid").write_text(f"{pid} {local._start_time(pid)}")
    (backend.state_dir / f"{UUID}.log").write_text("crunch-run's own lines\n")

    checked = local._is_alive

    def after_it_ended(pid_file: Path) -> bool:  # the child ends after the first reaping, before this look
        time.sleep(0.6)
        return checked(pid_file)

    monkeypatch.setattr(local, "_is_alive", after_it_ended)
    assert backend.alive() == set()
    assert not (backend.state_dir / f"{UUID}.pid").exists()
    assert not (backend.state_dir / f"{UUID}.log").exists(), "an exit 0 with nothing left to look at: its log goes"
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # collected: no zombie left behind
    assert backend.children == {}
