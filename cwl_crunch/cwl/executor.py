"""The cwltool executor: walks the workflow, submitting every tool job as it becomes ready."""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any

from cwltool.context import RuntimeContext
from cwltool.errors import UnsupportedRequirement, WorkflowException
from cwltool.executors import JobExecutor
from cwltool.mutation import MutationManager
from cwltool.process import Process

from .children import Children
from .documents import make_cheap_to_copy
from .job import CrunchJob
from .relocate import relocate, write_output_object

logger = logging.getLogger("cwltool.crunch")
REQUIREMENTS_KEY = "https://w3id.org/cwl/cwl#requirements"


class CrunchExecutor(JobExecutor):
    def __init__(self, children: Children, *, output_object_only: bool = False) -> None:
        super().__init__()
        self.children = children
        self.output_object_only = output_object_only  # inside a container: keep: locations, no copies

    def execute(self, process: Process, job_order_object: dict[str, Any], runtime_context: RuntimeContext,
                logger: logging.Logger = logger) -> tuple[dict[str, Any] | None, str]:
        """Like cwltool's, but tool jobs see the container's paths and outputs stay in collections
        until they are copied into the final output directory."""
        self.final_output, self.final_status = [], []
        final_outdir = runtime_context.outdir
        context = runtime_context.copy()
        context.mutation_manager = MutationManager()
        context.toplevel = True
        context.workflow_eval_lock = threading.Condition(threading.RLock())
        _apply_job_requirements(process, job_order_object)
        make_cheap_to_copy(job_order_object)  # copied whole by the workflow and by each step reading it
        process.visit(partial(check_supported, engine=self.children.engine if runtime_context.use_container else None))
        reporter = self.children.reporter
        self.children.start()
        try:
            reporter.set_activity("workflow execution")
            self.run_jobs(process, job_order_object, logger, context)
            if context.validate_only:
                return None, "ValidationSuccess"
            reporter.set_activity("collecting outputs")
            output = self.final_output[0] if self.final_output else None
            if output is not None and final_outdir:
                if self.output_object_only:
                    write_output_object(output, final_outdir)
                else:
                    output = relocate(output, final_outdir, self.children.keep)
        except BaseException:
            self.children.cancel_all()
            raise
        finally:
            self.children.close()
        if self.final_status:
            return output, self.final_status[0]
        return None, "permanentFail"

    def run_jobs(self, process: Process, job_order_object: dict[str, Any], logger: logging.Logger,
                 runtime_context: RuntimeContext) -> None:
        lock = runtime_context.workflow_eval_lock
        jobs = process.job(job_order_object, self.output_callback, runtime_context)
        with lock:
            for job in jobs:
                if self.children.stopping:
                    break
                if job is None:
                    if not self.children.pending():
                        logger.error("Workflow cannot make any more progress.")
                        break
                    lock.wait(1.0)
                    continue
                if runtime_context.validate_only:
                    print(f"{getattr(job, 'name', job)} is valid CWL. No errors detected in the inputs.",
                          file=runtime_context.validate_stdout)
                    return
                if isinstance(job, CrunchJob):
                    # Submitting is HTTP calls on the job's own state: finished steps' outputs are
                    # collected meanwhile instead of waiting for the whole scatter to be submitted.
                    lock.release()
                    try:
                        job.run(runtime_context)
                    finally:
                        lock.acquire()
                else:
                    job.run(runtime_context)  # an ExpressionTool: evaluated here, under the lock
            while self.children.pending():
                lock.wait(1.0)
        if not self.final_status and self.children.stopping:
            self.output_callback(None, "permanentFail")


def check_supported(tool: dict[str, Any], engine: str | None) -> None:
    """Requirements this cluster cannot meet fail the run before any request is made (exit 33)."""
    if tool.get("class") != "CommandLineTool":
        return
    for requirement in tool.get("requirements") or []:
        kind = requirement.get("class", "")
        if kind.endswith("DockerRequirement") and engine is None:
            raise UnsupportedRequirement(
                f"{tool.get('id')}: DockerRequirement under 'requirements', but the cluster runs no container engine")


def _apply_job_requirements(process: Process, job_order_object: dict[str, Any]) -> None:
    """`cwl:requirements` in the input object apply to the whole process (CWL v1.1+)."""
    extra = job_order_object.get(REQUIREMENTS_KEY)
    if extra is None:
        defaults = process.metadata.get("cwl:defaults") or {}
        extra = defaults.get(REQUIREMENTS_KEY)
    if extra is None:
        return
    if process.metadata.get("http://commonwl.org/cwltool#original_cwlVersion") == "v1.0":
        raise WorkflowException("`cwl:requirements` in the input object is not part of CWL v1.0")
    process.requirements.extend(extra)
