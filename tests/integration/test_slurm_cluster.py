"""The throwaway Slurm cluster itself (tests/support/slurm.py): it runs jobs with the node's limits,
and stop() leaves no daemon or job process behind. The dispatcher's Slurm tests build on both.
(The `slurm` fixture comes from tests/support/slurm.py, registered in tests/conftest.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.slurm import ThrowawaySlurm, require_slurm


def _wait_for_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"{path} not written within {timeout}s"
        time.sleep(0.05)
    return path.read_text()


def _alive(pid: int) -> bool:
    """True for a live process (a zombie is dead, only not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_a_job_runs_with_the_submitters_environment(slurm: ThrowawaySlurm, tmp_path: Path) -> None:
    output = tmp_path / "job.out"
    result = slurm.run(
        "sbatch", "--parsable", f"--output={output}", "--mem=64", "--wrap", 'echo "$ONLY_IN_SBATCH"',
        extra_env={"ONLY_IN_SBATCH": "from-the-caller"},
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.isdigit()
    assert slurm.wait_for_job(job_id) == "COMPLETED"
    assert output.read_text() == "from-the-caller\n"


def test_the_node_has_the_declared_cpus_and_memory(slurm: ThrowawaySlurm) -> None:
    node = slurm.run("sinfo", "--noheader", "--Node", "--format=%c %m %P", check=True).stdout.split("\n")
    assert {line.split()[2].rstrip("*") for line in node if line} == {"debug", "other"}
    cpus, memory = node[0].split()[:2]
    assert (int(cpus), int(memory)) == (slurm.cpus, slurm.real_memory_mib)


def test_a_job_asking_for_more_than_the_node_has_is_rejected(slurm: ThrowawaySlurm) -> None:
    too_much_memory = slurm.run("sbatch", f"--mem={10 * slurm.real_memory_mib}", "--wrap", "true")
    assert too_much_memory.returncode == 1
    assert "Requested node configuration is not available" in too_much_memory.stderr
    too_many_cpus = slurm.run("sbatch", f"--cpus-per-task={slurm.cpus + 1}", "--wrap", "true")
    assert too_many_cpus.returncode == 1
    assert "More processors requested than permitted" in too_many_cpus.stderr


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    """A second cluster beside the session's: it must not collide with it, and stop() must kill
    its daemons, a running job and a process a job left behind in a session of its own."""
    require_slurm()
    cluster = ThrowawaySlurm(tmp_path / "cluster").start()
    try:
        pids = tmp_path / "pids"
        script = f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! $$ > {pids}; sleep 300"
        cluster.run("sbatch", "--output=/dev/null", "--wrap", script, check=True)
        escaped, job = (int(pid) for pid in _wait_for_file(pids).split())
        daemons = cluster.processes()
        assert job in daemons and escaped in daemons
    finally:
        cluster.stop()
    cluster.stop()  # idempotent
    survivors = [pid for pid in daemons if _alive(pid)]
    assert survivors == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in survivors]
    assert os.path.isfile(tmp_path / "cluster" / "slurmctld.log")  # a given state_dir is kept for its logs
