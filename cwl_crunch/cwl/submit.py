"""`--submit`: the workflow runner itself runs as a container request (SPEC §10).

The workflow is validated and packed here, its input files uploaded (once, by content), and a
runner request made that runs `cwl-crunch --local` inside a container with both as `json` mounts.
Its container's `runtime_status` carries the counters and the error; this process follows it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from functools import partial
from typing import Any

from cwltool.context import LoadingContext
from cwltool.errors import UnsupportedRequirement, WorkflowException
from cwltool.load_tool import (
    default_loader,
    fetch_document,
    make_tool,
    resolve_and_validate_document,
    resolve_tool_uri,
)
from cwltool.main import init_job_order, load_job_order
from cwltool.resolver import tool_resolver
from cwltool.stdfsaccess import StdFsAccess
from schema_salad.exceptions import ValidationException
from schema_salad.ref_resolver import uri_file_path

from ..client import Client
from ..follow import EventFollower
from .connection import Connection, Unreachable
from .documents import make_cheap_to_copy
from .executor import check_supported
from .keepfs import SCHEME, Keep, location
from .packing import packed, restore_lost_outputs
from .relocate import OUTPUT_OBJECT, relocate
from .request import OUTPUT_PATH
from .schemas import share_core_types

logger = logging.getLogger("cwltool.crunch")
MOUNT_DIR = "/var/lib/cwl"
RUNNER_WORKFLOW = f"{MOUNT_DIR}/workflow.json"  # the packed workflow, in the runner container
RUNNER_RAM = 1 << 30


def submit(args: argparse.Namespace, connection: Connection) -> int:
    """Submit the runner (or, for one tool with --wait, run it directly); the exit status."""
    _log_to_stderr(args)
    loading = _loading_context(args)
    single_tool = args.wait and _single_tool(args, loading)
    if not single_tool:
        try:
            packed, job_order, is_tool = _prepare(args, loading)  # meanwhile the service is being reached
        except (ValidationException, WorkflowException) as error:
            print(f"cwl-crunch: {error}", file=sys.stderr)
            return 33 if isinstance(error, UnsupportedRequirement) else 1
        except SystemExit as exit:
            return exit.code if isinstance(exit.code, int) else 1
        single_tool = is_tool and args.wait
    if not single_tool and (hidden := hidden_from_containers()):
        print(f"cwl-crunch: the workflow runner runs in a container, which has a private, empty /tmp, and this "
              f"cwl-crunch is under /tmp ({hidden}): install it elsewhere, or run with --local", file=sys.stderr)
        return 1
    try:
        api, keep = connection.get()
    except Unreachable as error:
        print(f"cwl-crunch: {error}", file=sys.stderr)
        return 1
    if single_tool:
        from .main import (
            run_local,  # one tool needs no runner container: submitted directly
        )

        return run_local(args, api, keep)
    packed = _upload_files(packed, keep)
    job_order = _upload_files(job_order, keep)
    record = api.create("container_requests", runner_request(args, packed, job_order))
    if not args.wait:
        print(record["uuid"])
        return 0
    logger.info("runner request %s", record["uuid"])
    return Follower(api, keep, record).wait(args.outdir)


def _loading_context(args: argparse.Namespace) -> LoadingContext:
    """With a loader of its own: fetch_document works on copies of the context, which share it
    (and the documents it has read) only if it is there from the start."""
    loading = LoadingContext(vars(args))
    loading.resolver = tool_resolver  # finds "file.cwl#main" as cwltool does
    loading.loader = default_loader(loading.fetcher_constructor, enable_dev=loading.enable_dev,
                                    doc_cache=loading.doc_cache)
    return loading


def _single_tool(args: argparse.Namespace, loading: LoadingContext) -> bool:
    """Whether the document names one CommandLineTool (read, not yet validated: cheap). The
    document read stays in `loading`'s cache for the full load."""
    try:
        uri, _ = resolve_tool_uri(args.workflow, resolver=loading.resolver,
                                  fetcher_constructor=loading.fetcher_constructor)
        _, workflowobj, _ = fetch_document(uri, loading)
    except Exception:  # noqa: BLE001 - whatever is wrong is reported by the full load that follows
        return False
    fragment = uri.partition("#")[2]
    if isinstance(workflowobj, dict) and "$graph" in workflowobj:
        found = [p for p in workflowobj["$graph"] if str(p.get("id", "")).lstrip("#").endswith(fragment or "main")]
        workflowobj = found[0] if len(found) == 1 else {}
    return isinstance(workflowobj, dict) and workflowobj.get("class") == "CommandLineTool"


def _prepare(args: argparse.Namespace, loading: LoadingContext) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Load, validate and pack the workflow; load and check the inputs. No request is made."""
    uri, tool_file_uri = resolve_tool_uri(args.workflow, resolver=loading.resolver,
                                          fetcher_constructor=loading.fetcher_constructor)
    loading, workflowobj, uri = fetch_document(uri, loading)
    make_cheap_to_copy(workflowobj)
    loading, uri = resolve_and_validate_document(loading, workflowobj, uri)
    make_cheap_to_copy(list(loading.loader.idx.values()))  # and the documents its steps run
    share_core_types()
    tool = make_tool(uri, loading)
    _check_requirements(tool, args)
    job_order, input_basedir, jobloader = load_job_order(args, sys.stdin, loading.fetcher_constructor,
                                                         loading.overrides_list, tool_file_uri)
    job_order = init_job_order(job_order, args, tool, jobloader, sys.stdout, make_fs_access=StdFsAccess,
                               input_basedir=input_basedir)
    document = restore_lost_outputs(packed(loading, uri), tool)
    return document, dict(job_order), tool.tool.get("class") == "CommandLineTool"


def _check_requirements(tool: Any, args: argparse.Namespace) -> None:
    tool.visit(partial(check_supported, engine=args.engine if args.use_container else None))


def _upload_files(document: Any, keep: Keep) -> Any:
    """Every local File and Directory replaced by its place in a collection (content-addressed)."""
    if isinstance(document, list):
        return [_upload_files(item, keep) for item in document]
    if not isinstance(document, dict):
        return document
    if document.get("class") in ("File", "Directory") and _is_local(document.get("location", "")):
        return _upload(document, keep)
    return {key: _upload_files(value, keep) for key, value in document.items()}


def _is_local(source: str) -> bool:
    return bool(source) and not source.startswith((SCHEME, "_:", "http://", "https://", "$("))


def _upload(item: dict[str, Any], keep: Keep) -> dict[str, Any]:
    """One collection per input, its secondary files beside it (as staging expects them)."""
    files: dict[str, Any] = {}
    uploaded = _uploaded_entry(item, files, keep)
    extras = [_uploaded_entry(extra, files, keep) if _is_local(extra.get("location", "")) else extra
              for extra in item.get("secondaryFiles") or []]
    if item.get("class") == "File":
        _add_possible_secondaries(item, files, keep)
    pdh = keep.save(files, f"input {uploaded['basename']}")
    for entry in (uploaded, *extras):
        if entry.get("location") is None:
            entry["location"] = location(pdh, entry["basename"])
    if extras:
        uploaded["secondaryFiles"] = extras
    return uploaded


def _add_possible_secondaries(item: dict[str, Any], files: dict[str, Any], keep: Keep) -> None:
    """Files beside it that share its name root (`A.bam` → `A.bam.bai`, `A.bai`): the runner
    discovers secondary files inside the container, where only what was uploaded exists."""
    path = uri_file_path(item["location"]) if item["location"].startswith("file://") else item["location"]
    directory, name = os.path.split(path)
    root = name.split(".", 1)[0]
    try:
        siblings = [entry for entry in os.scandir(directory or ".") if entry.name != name
                    and entry.name.startswith(root) and entry.is_file()]
    except OSError:
        return
    for sibling in siblings:
        files.setdefault(sibling.name, keep.store_file(sibling.path))


def _uploaded_entry(item: dict[str, Any], files: dict[str, Any], keep: Keep) -> dict[str, Any]:
    name = item.get("basename") or os.path.basename(uri_file_path(item["location"]).rstrip("/"))
    _add(item, name, files, keep)
    entry = {k: v for k, v in item.items() if k not in ("path", "listing", "dirname", "secondaryFiles")}
    entry.update(location=None, basename=name)
    return entry


def _add(item: dict[str, Any], name: str, files: dict[str, Any], keep: Keep) -> None:
    path = uri_file_path(item["location"]) if item["location"].startswith("file://") else item["location"]
    if item.get("class") == "Directory":
        tree = keep.store_tree(path)
        files.update({f"{name}/{relative}": entry for relative, entry in tree.items()} or {f"{name}/": {}})
    else:
        files[name] = keep.store_file(path)


def hidden_from_containers() -> str | None:
    """The first of this Python, its installation and the cwl_crunch package that lies under
    /tmp, where the runner container, running this same installation, would not find it."""
    package = os.path.dirname(os.path.dirname(__file__))
    for path in (sys.executable, os.path.realpath(sys.executable), sys.prefix, package):
        absolute = os.path.abspath(path)
        if absolute == "/tmp" or absolute.startswith("/tmp/"):
            return absolute
    return None


def runner_request(args: argparse.Namespace, packed: dict[str, Any], job_order: dict[str, Any]) -> dict[str, Any]:
    """The request that runs `cwl-crunch --local` on the packed workflow inside a container."""
    main = RUNNER_WORKFLOW + ("#main" if "$graph" in packed else "")
    command = [sys.executable, "-m", "cwl_crunch.cwl.main", "--local", "--outdir", OUTPUT_PATH,
               "--priority", str(args.priority), "--on-error", args.on_error]
    command += [] if args.reuse else ["--disable-reuse"]
    command += [] if args.use_container else ["--no-container"]
    command += ["--engine", args.engine] if args.engine else []
    command += [main, f"{MOUNT_DIR}/cwl.input.json"]
    name = args.name or os.path.basename(args.workflow)
    return {
        "name": name,
        "state": "Committed",
        "priority": args.priority,
        "command": command,
        "cwd": OUTPUT_PATH,
        "output_path": OUTPUT_PATH,
        "output_glob": [OUTPUT_OBJECT],
        "environment": {"HOME": "/tmp", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        "mounts": {
            OUTPUT_PATH: {"kind": "tmp", "capacity": 1 << 30},
            "/tmp": {"kind": "tmp", "capacity": 1 << 30},
            RUNNER_WORKFLOW: {"kind": "json", "content": packed},
            f"{MOUNT_DIR}/cwl.input.json": {"kind": "json", "content": job_order},
        },
        "runtime_constraints": {"API": True, "vcpus": 1, "ram": RUNNER_RAM},
        "scheduling_parameters": {"supervisor": True},
        "use_existing": args.reuse,
        "properties": {"cwl_runner": True},
    }


class Follower:
    """Shows a submitted run's progress until it is final; then its outputs land in `outdir`."""

    def __init__(self, api: Client, keep: Keep, request: dict[str, Any]) -> None:
        self.api, self.keep, self.uuid = api, keep, request["uuid"]
        self.container_uuid: str | None = request.get("container_uuid")
        self._followed: str | None = None  # the container whose events are followed
        self._changed = threading.Event()
        self._shown: dict[str, Any] = {}
        self._warned = False

    def wait(self, outdir: str) -> int:
        events = self._follow(None)
        try:
            while True:
                request = self.api.get("container_requests", self.uuid)
                self.container_uuid = request.get("container_uuid")
                if self.container_uuid != self._followed:  # a new attempt: follow its container
                    events = self._follow(events)
                if self.container_uuid:
                    self._show(self.api.get("containers", self.container_uuid))
                if request["state"] == "Final":
                    return self._finished(request, outdir)
                self._changed.wait(5.0)
                self._changed.clear()
        except KeyboardInterrupt:
            return self._interrupted()
        finally:
            events.stop()

    def _follow(self, previous: EventFollower | None) -> EventFollower:
        """Events of the runner's request and its current container only (the server leaves out
        those of every step: thousands on a big scatter), resuming where `previous` stopped."""
        self._followed = self.container_uuid
        events = EventFollower(self.api, self._on_event,
                               filters=[["object_uuid", "in", [self.uuid, self.container_uuid or ""]]])
        if previous is not None:
            previous.stop()
            events.since = previous.since
        events.start()
        return events

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("object_uuid") in (self.uuid, self.container_uuid):
            self._changed.set()

    def _show(self, container: dict[str, Any]) -> None:
        status = container.get("runtime_status") or {}
        shown = {k: status.get(k) for k in ("activity", "jobsComplete", "jobsRunning", "jobsWaiting", "jobsFailed", "error")}
        shown["state"] = container.get("state")
        if shown == self._shown:
            return
        self._shown = shown
        counters = " · ".join(f"{status.get(k, 0)} {word}" for k, word in
                              (("jobsComplete", "complete"), ("jobsRunning", "running"),
                               ("jobsWaiting", "waiting"), ("jobsFailed", "failed")))
        logger.info("[%s %s] %s", shown["state"], status.get("activity") or "", counters)
        if status.get("error") and not self._warned:
            self._warned = True
            self._warn_failing(status)

    def _warn_failing(self, status: dict[str, Any]) -> None:
        running = list(self.api.list("container_requests", filters=[
            ["requesting_container_uuid", "=", self.container_uuid], ["state", "=", "Committed"]]))
        logger.error("this run is failing: %s%s", status["error"],
                     f"\n{status['errorDetail']}" if status.get("errorDetail") else "")
        if running:
            logger.error("a resubmission now would adopt these running steps:%s",
                         "".join(f"\n  {r['name']} ({r['uuid']})" for r in running))

    def _finished(self, request: dict[str, Any], outdir: str) -> int:
        container = self.api.get("containers", request["container_uuid"]) if request.get("container_uuid") else {}
        output = self.keep.manifest(request["output_uuid"]) if request.get("output_uuid") else None
        code = container.get("exit_code")
        if container.get("state") != "Complete" or output is None or OUTPUT_OBJECT not in output.files:
            error = (container.get("runtime_status") or {}).get("error") or f"the runner ended {container.get('state')}"
            logger.error("run %s failed: %s", self.uuid, error)
            return code if code in (1, 33) else 1
        result = relocate(json.loads(self.keep.read(output.files[OUTPUT_OBJECT])), outdir, self.keep)
        json.dump(result, sys.stdout, indent=4)
        print()
        if code:
            logger.error("run %s failed: %s", self.uuid, (container.get("runtime_status") or {}).get("error", f"exit code {code}"))
        return 0 if code == 0 else 1

    def _interrupted(self) -> int:
        answer = ""
        if sys.stdin.isatty():
            try:
                answer = input(f"\nCancel run {self.uuid}? [y/N] ").strip().lower()
            except (EOFError, KeyboardInterrupt):
                answer = ""
        if answer in ("y", "yes"):
            self.api.update("container_requests", self.uuid, {"priority": 0})
            logger.info("run %s cancelled", self.uuid)
        else:
            logger.info("run %s goes on; follow it with: crunchctl logs -f %s", self.uuid, self.uuid)
        return 130


def _log_to_stderr(args: argparse.Namespace) -> None:
    if not logger.handlers and not logging.getLogger("cwltool").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logging.getLogger("cwltool").addHandler(handler)
    logging.getLogger("cwltool").setLevel(logging.WARNING if args.quiet else logging.INFO)
