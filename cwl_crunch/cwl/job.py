"""cwltool's CommandLineTool and job, running each job as a container request."""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
from functools import partial
from typing import TYPE_CHECKING, Any

from cwltool.command_line_tool import CommandLineTool
from cwltool.context import LoadingContext, RuntimeContext
from cwltool.errors import UnsupportedRequirement, WorkflowException
from cwltool.job import JobBase
from cwltool.process import compute_checksums
from cwltool.utils import adjustFileObjs

from .keepfs import SCHEME, Keep, location
from .pathmapper import KEEP_ROOT, CollectionPathMapper
from .request import OUTPUT_PATH, TMP_PATH, JobSpec, Staged, build_request

if TYPE_CHECKING:
    from .executor import Children

logger = logging.getLogger("cwltool.crunch")


class CrunchTool(CommandLineTool):
    def __init__(self, toolpath_object: Any, loading_context: LoadingContext, children: Children) -> None:
        super().__init__(toolpath_object, loading_context)
        self.children = children

    def job(self, job_order: Any, output_callbacks: Any, runtime_context: RuntimeContext) -> Any:
        """Jobs see the container's paths (cwltool clears `outdir` for every workflow step)."""
        context = runtime_context.copy()
        context.outdir, context.tmpdir, context.stagedir = OUTPUT_PATH, TMP_PATH, KEEP_ROOT
        context.docker_outdir, context.docker_tmpdir, context.docker_stagedir = OUTPUT_PATH, TMP_PATH, KEEP_ROOT
        yield from super().job(job_order, output_callbacks, context)

    def make_job_runner(self, runtime_context: RuntimeContext) -> Any:
        _, required = self.get_requirement("DockerRequirement")
        if required and not (runtime_context.use_container and self.children.engine):
            raise UnsupportedRequirement(
                "this CommandLineTool has a DockerRequirement under 'requirements', but the cluster "
                "runs no container engine (or --no-container was given)")
        return partial(CrunchJob, children=self.children)

    def collect_output_ports(self, ports: Any, builder: Any, outdir: str, rcode: int, compute_checksum: bool = True,
                             jobname: str = "", readers: Any = None) -> Any:
        """cwltool's, with checksums taken from the digests crunch-run recorded where it did (SHA-1
        of each output file), so that files need not be read back to checksum them."""
        outputs = super().collect_output_ports(ports, builder, outdir, rcode, compute_checksum=False, jobname=jobname,
                                               readers=readers)
        if compute_checksum:
            adjustFileObjs(outputs, partial(_checksum, self.children.keep, builder.make_fs_access(outdir)))
        return outputs

    def make_path_mapper(self, reffiles: Any, stagedir: str, runtime_context: RuntimeContext,
                         separate_dirs: bool) -> CollectionPathMapper:
        return CollectionPathMapper(reffiles, runtime_context.basedir, stagedir, separate_dirs,
                                    keep=self.children.keep)


def _checksum(keep: Keep, fs_access: Any, file: dict[str, Any]) -> None:
    """A File's checksum and size: a collection's file from its recorded digest, else by reading
    it whole (`contents`, from loadContents, may be only its first 64 KiB)."""
    if "checksum" in file:
        return
    where = str(file.get("location", ""))
    if not where.startswith(SCHEME):
        compute_checksums(fs_access, file)  # a literal (its contents) or a local file
        return
    digest = keep.sha1(where)
    if digest is None:
        sha1 = hashlib.sha1()  # noqa: S324 - CWL's checksum
        with fs_access.open(where, "rb") as content:
            while chunk := content.read(1 << 20):
                sha1.update(chunk)
        digest = sha1.hexdigest()
    file["checksum"] = f"sha1${digest}"
    file["size"] = fs_access.size(where)


def _secret_command(secrets: Any, command: list[str]) -> str | None:
    """With secret inputs on the command line, a script that runs it: stored as a secret mount, so
    the values never reach the request's command (reuse still sees their digest)."""
    if secrets is None or not any(secrets.has_secret(arg) for arg in command):
        return None
    return "exec " + shlex.join(str(arg) for arg in secrets.retrieve(command)) + "\n"


class CrunchJob(JobBase):
    def __init__(self, *args: Any, children: Children, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.children = children
        self.lock: Any = None

    def _required_env(self) -> dict[str, str]:
        return {}  # HOME and TMPDIR are set in the request

    def run(self, runtime_context: RuntimeContext, tmpdir_lock: Any = None) -> None:
        self.lock = runtime_context.workflow_eval_lock
        try:
            request = build_request(self.spec(runtime_context))
        except WorkflowException as error:
            logger.error("[step %s] cannot be submitted: %s", self.name, error)
            with self.lock:  # run() is called without the workflow lock (CrunchExecutor.run_jobs)
                self.output_callback({}, "permanentFail")
            return
        self.children.submit(self, request)

    def spec(self, runtime_context: RuntimeContext) -> JobSpec:
        """Everything the container request is built from."""
        generated: list[Staged] = []
        if self.generatefiles.get("listing"):
            self.generatemapper = self.make_path_mapper(self.generatefiles["listing"], self.builder.outdir,
                                                        runtime_context, False)
            assert isinstance(self.generatemapper, CollectionPathMapper)
            staging = self.generatemapper.stage(f"initial work dir of {self.name}")
            if staging is not None:
                pdh, manifest = staging
                generated = [Staged(pdh, target, path, manifest if i == 0 else None)
                             for i, (path, target) in enumerate(self.generatemapper.top_level())]
        mapper = self.pathmapper
        inputs = None
        if isinstance(mapper, CollectionPathMapper) and (staging := mapper.stage(f"inputs of {self.name}")):
            pdh, manifest = staging
            inputs = Staged(pdh, f"{KEEP_ROOT}/{pdh}", manifest=manifest)
        resources = self.builder.resources
        command = [str(arg) for arg in self.command_line]
        return JobSpec(
            name=self.name,
            command=command,
            secret_command=_secret_command(runtime_context.secret_store, command),
            environment=self._environment(runtime_context),
            inputs=inputs,
            generated=generated,
            stdin=self.stdin,
            stdout=self.stdout,
            stderr=self.stderr,
            cores=resources.get("cores", 1),
            ram_mib=resources.get("ram", 256),
            outdir_mib=resources.get("outdirSize", 1024),
            tmpdir_mib=resources.get("tmpdirSize", 1024),
            time_limit=self.timelimit,
            network=bool(self.networkaccess),
            reuse=self._reuse(runtime_context),
            image=self._image(runtime_context),
            priority=self.children.priority,
            properties={"cwl_step": self.name},
            output_path=self.builder.outdir,  # the container's: /var/spool/cwl or dockerOutputDirectory
        )

    def _environment(self, runtime_context: RuntimeContext) -> dict[str, str]:
        """EnvVarRequirement; without an image, this host's PATH (as cwltool --no-container keeps it)."""
        environment = {k: str(v) for k, v in self.environment.items()}
        if self._image(runtime_context) is None and "PATH" in os.environ:
            environment.setdefault("PATH", os.environ["PATH"])
        return environment

    def _reuse(self, runtime_context: RuntimeContext) -> bool:
        enabled = self.children.reuse
        requirement, _ = self.get_requirement("WorkReuse")
        if requirement is not None:
            enabled = enabled and bool(self.builder.do_eval(requirement["enableReuse"]))
        return enabled

    def _image(self, runtime_context: RuntimeContext) -> str | None:
        docker, _ = self.get_requirement("DockerRequirement")
        if docker is None or not (runtime_context.use_container and self.children.engine):
            return None
        return str(docker.get("dockerPull") or docker.get("dockerImageId") or "") or None

    def _updated_in_place(self, output: str) -> None:
        """InplaceUpdateRequirement: the job changed its writable initial work dir entries in place.
        Collections never change, so the files now live in the job's output collection (they were
        staged in its output directory), and every later reader of their old location is sent there."""
        if self.generatemapper is None:
            return
        for source, entry in self.generatemapper.items():
            if (entry.type in ("WritableFile", "WritableDirectory") and source.startswith(SCHEME)
                    and entry.target.startswith(self.builder.outdir + "/")):
                self.children.keep.updated_in_place(source, location(output, entry.target[len(self.builder.outdir) + 1:]))

    def outcome(self, container: dict[str, Any]) -> str:
        """success, temporaryFail or permanentFail, from the finished container (SPEC §10)."""
        code = container.get("exit_code")
        if container.get("state") != "Complete" or code is None:
            return "permanentFail"
        if code in self.successCodes:
            return "success"
        if code in self.temporaryFailCodes:
            return "temporaryFail"
        if code in self.permanentFailCodes or code != 0:
            return "permanentFail"
        return "success"

    def finish(self, container: dict[str, Any]) -> str:
        """Collect outputs from the output collection and hand them to the workflow."""
        status = self.outcome(container)
        outputs: dict[str, Any] = {}
        if container.get("output"):
            self.children.keep.remember_sha1(container["output"], (container.get("output_properties") or {}).get("sha1"))
            if status == "success" and self.inplace_update:
                self._updated_in_place(container["output"])
            try:
                outputs = self.collect_outputs(location(container["output"]), container.get("exit_code"))
            except Exception as error:  # noqa: BLE001 - any output error fails the step, named
                logger.error("[step %s] cannot collect outputs: %s", self.name, error)
                status = "permanentFail"
        with self.lock:
            self.output_callback(outputs, status)
            self.lock.notify_all()
        return status
