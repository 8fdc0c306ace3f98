"""The Slurm backend's pure decisions, by value: sbatch options, batch script, nice, statuses."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone

import pytest

from cwl_crunch.dispatch.slurm.base import Job
from cwl_crunch.dispatch.slurm.batch import (
    nice_for,
    rejection,
    render_batch_script,
    sbatch_arguments,
    waiting_status,
)
from cwl_crunch.dispatch.slurm.commands import parse_squeue
from cwl_crunch.domain.priority import request_rank

UUID = "zzzzz-dz642-0123456789abcde"
MiB = 1 << 20


def _container(**overrides):
    return {"uuid": UUID, "priority": request_rank(500, datetime(2026, 1, 1, tzinfo=timezone.utc)),
            "runtime_constraints": {"vcpus": 2, "ram": 3000 * MiB}, "scheduling_parameters": {}, **overrides}


def test_sbatch_options_name_the_job_after_its_container_and_ask_for_its_resources():
    arguments = sbatch_arguments(_container(), "cwl-crunch dispatcher D")
    assert arguments == ["--job-name=" + UUID, "--comment=cwl-crunch dispatcher D", "--cpus-per-task=2",
                         "--mem=3000", "--nice=500"]


def test_fractional_vcpus_and_ram_round_up_and_no_ram_leaves_the_partitions_default():
    arguments = sbatch_arguments(_container(runtime_constraints={"vcpus": 0.5, "ram": MiB + 1}), "c")
    assert "--cpus-per-task=1" in arguments and "--mem=2" in arguments
    unasked = sbatch_arguments(_container(runtime_constraints={}), "c")
    assert not any(a.startswith("--mem") for a in unasked)  # --mem=0 would mean the whole node


def test_max_run_time_gives_a_time_limit_with_room_for_staging_and_saving():
    arguments = sbatch_arguments(_container(scheduling_parameters={"max_run_time": 60}), "c")
    assert "--time=6" in arguments  # 60 s + 300 s of slack, in minutes, rounded up
    assert not any(a.startswith("--time") for a in sbatch_arguments(_container(), "c"))


def test_partitions_and_extra_arguments_are_passed_on():
    container = _container(scheduling_parameters={"partitions": ["fast", "big"]})
    arguments = sbatch_arguments(container, "c", ("--account=lab", "--qos=low"))
    assert arguments[-3:] == ["--partition=fast,big", "--account=lab", "--qos=low"]


def test_higher_request_priority_means_lower_nice_and_priority_zero_the_highest():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert nice_for(request_rank(1000, now)) == 0
    assert nice_for(request_rank(1, now)) == 999
    assert nice_for(request_rank(500, now)) < nice_for(request_rank(499, now))
    assert nice_for(0) == 1000


def test_the_batch_script_execs_crunch_run_for_the_container_quoting_every_word(tmp_path):
    script = render_batch_script(UUID, ["/opt/my env/crunchctl", "run-container", "--work-root", "/var/tmp/x y"])
    assert script.startswith("#!/bin/sh\n")
    assert "exec '/opt/my env/crunchctl' run-container --work-root '/var/tmp/x y' " + UUID + "\n" in script
    fake = tmp_path / "echo-args"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    ran = subprocess.run(["sh", "-c", render_batch_script(UUID, [str(fake), "a b", "c'd"])],
                         capture_output=True, text=True, check=True)
    assert ran.stdout.splitlines() == ["a b", "c'd", UUID]


def test_a_waiting_job_says_where_it_is_in_slurm():
    job = Job(1234, UUID, "PENDING", "Resources", 0, "c")
    assert waiting_status(job) == "In slurm queue: job 1234 pending (Resources)."


@pytest.mark.parametrize(("stderr", "reason"), [
    ("sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
     "Requested node configuration is not available"),
    ("sbatch: error: Memory specification can not be satisfied\n"
     "sbatch: error: Batch job submission failed: Memory required by task is not available\n",
     "Memory required by task is not available"),
    ("sbatch: error: Batch job submission failed: Invalid partition name specified\n", "Invalid partition name specified"),
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n", None),
    ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n", None),
    ("", None),
])
def test_only_permanent_sbatch_refusals_count_as_unsatisfiable(stderr, reason):
    assert rejection(stderr) == reason


def test_squeue_lines_parse_and_a_comment_may_hold_the_separator():
    text = ("1001|" + UUID + "|PENDING|Resources|0|cwl-crunch dispatcher D\n"
            "1002|other|RUNNING|None|10|a|b\n"
            "garbage line\n"
            "1003_[1-4]|array|PENDING|None|x|(null)\n")
    assert parse_squeue(text) == [Job(1001, UUID, "PENDING", "Resources", 0, "cwl-crunch dispatcher D"),
                                  Job(1002, "other", "RUNNING", "None", 10, "a|b")]
