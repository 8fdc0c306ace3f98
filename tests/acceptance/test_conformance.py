"""The CWL v1.2 conformance suite against `cwl-crunch`, held to the committed baselines.

The whole suite (378 tests) runs through the embedded service in a fresh data directory, once on
the local runtime (no container engine) and once with `--engine podman`; a run fails if fewer
tests pass than its baseline (`conformance/baseline.json`, `conformance/baseline-podman.json`)
records, or if any test listed there as passing fails (conformance/run.py decides and names them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import require_bwrap
from tests.support.engines import PrivatePodman, podman_unavailable, require

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent.parent
SUITE = ROOT.parent / "shared" / "cwl-v1.2"


def _require_suite() -> None:
    if not (SUITE / "conformance_tests.yaml").exists():
        require(f"the CWL v1.2 suite is not at {SUITE}")


def _run_suite(tmp_path: Path, baseline: Path, environment: dict[str, str], runner_args: list[str]) -> None:
    """Run the whole suite with `cwl-crunch RUNNER_ARGS` and hold it to `baseline`."""
    data_dir = tmp_path / "data"
    env = {**os.environ, **environment, "CWL_CRUNCH_DATA_DIR": str(data_dir)}
    command = [sys.executable, str(ROOT / "conformance" / "run.py"), "--suite", str(SUITE), "-j", "3",
               "--timeout", "300", "--output", str(tmp_path / "results"), "--baseline", str(baseline), "-q"]
    if runner_args:
        command += ["--", *runner_args]
    try:
        # 5 to 9 minutes on a 2-core machine.
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=40 * 60, check=False)
    finally:
        subprocess.run([sys.executable, "-m", "cwl_crunch.cli.main", "local-service", "stop", "--data-dir", str(data_dir)],
                       env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    expected = json.loads(baseline.read_text())
    assert summary["total"] == 378 and summary["passed"] >= expected["passed"], summary


def test_the_conformance_suite_passes_at_least_the_baseline(tmp_path: Path) -> None:
    require_bwrap()
    _require_suite()
    _run_suite(tmp_path, ROOT / "conformance" / "baseline.json", {}, [])


def test_the_conformance_suite_with_podman_passes_at_least_its_baseline(tmp_path: Path) -> None:
    """The suite's images are built from the Debian mirror (conformance/podman-images.sh) into a
    private podman, then every DockerRequirement runs in podman."""
    require_bwrap()
    require(podman_unavailable())
    if shutil.which("mmdebstrap") is None:
        require("mmdebstrap is not installed (.ci/install-deps installs it): the suite's images are built with it")
    _require_suite()
    podman = PrivatePodman()
    try:
        built = subprocess.run(["bash", str(ROOT / "conformance" / "podman-images.sh")], env=podman.environ(),
                               capture_output=True, text=True, timeout=20 * 60, check=False)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        _run_suite(tmp_path, ROOT / "conformance" / "baseline-podman.json", podman.environment, ["--engine", "podman"])
    finally:
        podman.close()
