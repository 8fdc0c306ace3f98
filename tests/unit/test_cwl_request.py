"""One tool job → one container request (SPEC §10), by value."""

from __future__ import annotations

import pytest

from cwl_crunch.cwl.request import MIB, SECRET_COMMAND, JobSpec, Staged, build_request

PDH = "a" * 64 + "+10"
GEN = "b" * 64 + "+20"


def test_a_job_becomes_a_request_with_its_mounts_constraints_and_environment() -> None:
    job = JobSpec(name="count", command=["wc", "-l", f"/keep/{PDH}/0/in.txt"], environment={"LANG": "C"},
                  inputs=Staged(PDH, f"/keep/{PDH}"), generated=[Staged(GEN, "/var/spool/cwl/conf.txt", "conf.txt")],
                  stdin=f"/keep/{PDH}/0/in.txt", stdout="out.txt", stderr="err.txt", cores=1.5, ram_mib=300,
                  outdir_mib=10, tmpdir_mib=20, time_limit=60, network=True, reuse=False, priority=7)
    request = build_request(job)
    assert request["command"] == ["wc", "-l", f"/keep/{PDH}/0/in.txt"]
    assert request["cwd"] == request["output_path"] == "/var/spool/cwl"
    assert request["environment"] == {"HOME": "/var/spool/cwl", "TMPDIR": "/tmp", "LANG": "C"}
    assert request["mounts"] == {
        "/var/spool/cwl": {"kind": "tmp", "capacity": 10 * MIB},
        "/tmp": {"kind": "tmp", "capacity": 20 * MIB},
        f"/keep/{PDH}": {"kind": "collection", "portable_data_hash": PDH},
        "/var/spool/cwl/conf.txt": {"kind": "collection", "portable_data_hash": GEN, "path": "conf.txt"},
        "stdin": {"kind": "collection", "portable_data_hash": PDH, "path": "0/in.txt"},
        "stdout": {"kind": "file", "path": "/var/spool/cwl/out.txt"},
        "stderr": {"kind": "file", "path": "/var/spool/cwl/err.txt"},
    }
    assert request["runtime_constraints"] == {"vcpus": 2, "ram": 300 * MIB, "API": True}
    assert request["scheduling_parameters"] == {"max_run_time": 60}
    assert (request["use_existing"], request["priority"], request["container_image"]) == (False, 7, "")
    assert request["secret_mounts"] == {}


def test_equal_jobs_give_equal_requests() -> None:
    one = JobSpec(name="a", command=["true"], inputs=Staged(PDH, f"/keep/{PDH}"))
    two = JobSpec(name="a", command=["true"], inputs=Staged(PDH, f"/keep/{PDH}"))
    assert build_request(one) == build_request(two)


def test_a_staged_manifest_travels_in_one_mount_of_its_collection() -> None:
    staged = {"0/in.txt": {"blob": "c" * 64, "size": 3}}
    generated = {"conf.txt": {"blob": "d" * 64, "size": 1}, "more.txt": {"blob": "e" * 64, "size": 2}}
    job = JobSpec(name="m", command=["true"], inputs=Staged(PDH, f"/keep/{PDH}", manifest=staged),
                  generated=[Staged(GEN, "/var/spool/cwl/conf.txt", "conf.txt", generated),
                             Staged(GEN, "/var/spool/cwl/more.txt", "more.txt")],
                  stdin=f"/keep/{PDH}/0/in.txt")
    mounts = build_request(job)["mounts"]
    assert mounts[f"/keep/{PDH}"] == {"kind": "collection", "portable_data_hash": PDH, "manifest": staged}
    assert mounts["/var/spool/cwl/conf.txt"]["manifest"] == generated
    assert "manifest" not in mounts["/var/spool/cwl/more.txt"] and "manifest" not in mounts["stdin"]
    # Whether the manifest travels does not make two jobs different.
    assert Staged(PDH, "/keep/x", manifest=staged) == Staged(PDH, "/keep/x")


def test_secret_values_go_to_a_secret_mount_not_the_command() -> None:
    request = build_request(JobSpec(name="s", command=["(secret-1)"], secret_command="exec echo hunter2\n"))
    assert request["command"] == ["/bin/sh", SECRET_COMMAND]
    assert request["secret_mounts"] == {SECRET_COMMAND: {"kind": "text", "content": "exec echo hunter2\n"}}
    assert "hunter2" not in str({k: v for k, v in request.items() if k != "secret_mounts"})


def test_stdin_must_be_one_of_the_jobs_files() -> None:
    with pytest.raises(ValueError, match="stdin"):
        build_request(JobSpec(name="x", command=["cat"], stdin="/etc/passwd"))


def test_a_docker_output_directory_moves_the_output_mount_cwd_home_and_streams() -> None:
    request = build_request(JobSpec(name="o", command=["touch", "/other/thing"], stdout="out.txt",
                                    image="debian:12", output_path="/other"))
    assert request["cwd"] == request["output_path"] == request["environment"]["HOME"] == "/other"
    assert request["mounts"]["/other"]["kind"] == "tmp" and "/var/spool/cwl" not in request["mounts"]
    assert request["mounts"]["stdout"] == {"kind": "file", "path": "/other/out.txt"}
