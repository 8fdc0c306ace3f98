"""Which embedded service a `cwl-crunch` command line will use, read before cwltool's parser is
imported (`cwl_crunch.cwl.entry.embedded_data_dir`): certain answers only, None otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from cwl_crunch.cwl.entry import embedded_data_dir


@pytest.fixture
def workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("CWL_CRUNCH_API", "CRUNCH_CONTAINER_UUID", "CRUNCH_API"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CWL_CRUNCH_DATA_DIR", str(tmp_path / "default"))
    path = tmp_path / "wf.cwl"
    path.write_text("cwlVersion: v1.2\n")
    return str(path)


def test_a_run_uses_the_default_data_dir(workflow: str, tmp_path: Path) -> None:
    assert embedded_data_dir([workflow]) == tmp_path / "default"
    assert embedded_data_dir(["--quiet", "--outdir", str(tmp_path), f"{workflow}#main", "inputs.yml"]) == tmp_path / "default"
    assert embedded_data_dir(["--local", "--", workflow]) == tmp_path / "default"


def test_data_dir_given_either_way_and_the_last_one_counts(workflow: str, tmp_path: Path) -> None:
    assert embedded_data_dir(["--data-dir", "d1", workflow]) == Path("d1")
    assert embedded_data_dir(["--data-dir=d2", workflow]) == Path("d2")
    assert embedded_data_dir(["--data-dir", "d1", workflow, "--data-dir=d3"]) == Path("d3")


@pytest.mark.parametrize("args", [
    ["--api", "http://127.0.0.1:1", "--token", "t"],  # a shared service
    ["--api=http://127.0.0.1:1"],
    ["--ap", "http://127.0.0.1:1"],  # abbreviations argparse would expand: left to the real parser
    ["--data", "elsewhere"],
    ["--data-d=elsewhere"],
    ["--help"], ["-h"], ["--version"],
    ["--data-dir"],  # its value missing: the parser says so
])
def test_nothing_is_started_unless_certain(workflow: str, args: list[str]) -> None:
    assert embedded_data_dir([*args, workflow]) is None


def test_no_existing_file_means_no_workflow_to_run(workflow: str, tmp_path: Path) -> None:
    assert embedded_data_dir([]) is None
    assert embedded_data_dir(["--outdir", str(tmp_path), str(tmp_path / "missing.cwl")]) is None


def test_a_shared_service_from_the_environment(workflow: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CWL_CRUNCH_API", "http://127.0.0.1:1")
    assert embedded_data_dir([workflow]) is None


def test_inside_a_runner_container_the_containers_api_is_used(workflow: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUNCH_CONTAINER_UUID", "zzzzz-dz642-000000000000000")
    monkeypatch.setenv("CRUNCH_API", "http://127.0.0.1:1")
    assert embedded_data_dir([workflow]) is None
