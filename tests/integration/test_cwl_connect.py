"""`cwl-crunch` reaching its service: clear one-line errors for an unreachable service or a
refused token, and an invalid workflow reported whatever the service's state."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cwl_crunch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cwl_crunch.cwl.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_service_is_one_clear_error(tmp_path: Path) -> None:
    done = cwl_crunch("--api", f"http://127.0.0.1:{unused_port()}", "--token", "t",
                      str(EXAMPLES / "hello.cwl"), str(EXAMPLES / "hello.yml"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("cwl-crunch: cannot reach the container service: ")
    assert "Traceback" not in done.stderr


def test_a_refused_token_is_one_clear_error(service, tmp_path: Path) -> None:
    done = cwl_crunch("--api", service.url, "--token", "not-a-token",
                      str(EXAMPLES / "scatter.cwl"), str(EXAMPLES / "scatter.yml"), cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cwl-crunch: cannot reach the container service: ") and "401" in last, done.stderr
    assert "Traceback" not in done.stderr


def test_an_invalid_workflow_is_reported_even_when_the_service_is_unreachable(tmp_path: Path) -> None:
    broken = tmp_path / "broken.cwl"
    broken.write_text("cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\nsteps: 5\n")
    done = cwl_crunch("--api", f"http://127.0.0.1:{unused_port()}", "--token", "t", str(broken), cwd=tmp_path)
    assert done.returncode == 1
    assert "broken.cwl" in done.stderr and "cannot reach" not in done.stderr


def test_a_cwl_crunch_under_tmp_is_told_its_runner_could_not_start_there(tmp_path: Path) -> None:
    """The runner container runs this same Python, and a container's /tmp is its own: the run
    stops before reaching any service (here: none would answer) with what to do instead."""
    under_tmp = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        python = under_tmp / "python"
        python.symlink_to(sys.executable)  # (outside its venv: the venv's paths come through PYTHONPATH)
        env = {"PYTHONPATH": ":".join(p for p in sys.path if p), "PATH": "/usr/bin:/bin"}
        done = subprocess.run([str(python), "-m", "cwl_crunch.cwl.main", "--api", f"http://127.0.0.1:{unused_port()}",
                               "--token", "t", str(EXAMPLES / "scatter.cwl"), str(EXAMPLES / "scatter.yml")],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False)
    finally:
        shutil.rmtree(under_tmp)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cwl-crunch: the workflow runner runs in a container, which has a private, empty /tmp"), last
    assert f"({python})" in last and last.endswith("install it elsewhere, or run with --local")
    assert "cannot reach" not in done.stderr
