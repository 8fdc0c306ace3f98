"""crunch-run falls back to the default temporary directory when TMPDIR names a missing one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from cwl_crunch.runner.workdir import forget_missing_tmpdir


def test_a_missing_tmpdir_is_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    forget_missing_tmpdir()
    assert "TMPDIR" not in os.environ
    assert Path(tempfile.gettempdir()).is_dir()
    assert "does not exist" in capsys.readouterr().err


def test_an_existing_tmpdir_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    forget_missing_tmpdir()
    assert os.environ["TMPDIR"] == str(tmp_path)
