"""`cwl-crunch`: cwltool's command line, every tool job run as a container request (SPEC §10)."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urldefrag

import cwltool.main
from cwltool.argparser import arg_parser
from cwltool.context import LoadingContext, RuntimeContext
from cwltool.workflow import default_make_tool

from ..client import Client
from ..domain.progress import Progress
from .children import Children
from .connection import Connection, Unreachable, inside_container
from .documents import make_cheap_to_copy, share_array_data_in_item_bindings
from .executor import CrunchExecutor
from .job import CrunchTool
from .keepfs import CollectionFsAccess, Keep
from .packing import embed_step_tools, read_packed_as_json
from .report import Reporter, terminal_publisher
from .request import OUTPUT_PATH
from .schemas import cache_schema_loads, share_core_names, share_core_types

DEFAULT_PRIORITY = 500


def parser() -> argparse.ArgumentParser:
    top = arg_parser()
    top.prog = "cwl-crunch"
    top.description = __doc__
    for action in top._actions:  # cwltool's --on-error knows no "kill" and defaults to "stop"
        if "--on-error" in action.option_strings:
            action.choices, action.default = ("continue", "stop", "kill"), "continue"
            action.help = "after a step fails: keep running independent steps (default), submit nothing new, or also cancel running steps"
    # Collections hold any file name, so cwltool's conservative file name check is off by default.
    top.set_defaults(on_error="continue", relax_path_checks=True)
    ours = top.add_argument_group("cwl-crunch")
    ours.add_argument("--api", default=os.environ.get("CWL_CRUNCH_API"), help="a shared service's URL (default: the embedded local service)")
    ours.add_argument("--token", default=os.environ.get("CWL_CRUNCH_TOKEN"), help="the shared service's token")
    ours.add_argument("--data-dir", type=Path, help="the embedded service's directory (default $CWL_CRUNCH_DATA_DIR or ~/.local/share/cwl-crunch)")
    mode = ours.add_mutually_exclusive_group()
    mode.add_argument("--submit", dest="submit", action="store_true", default=True, help="run the workflow runner as a container (default)")
    mode.add_argument("--local", dest="submit", action="store_false", help="orchestrate from this process")
    wait = ours.add_mutually_exclusive_group()
    wait.add_argument("--wait", dest="wait", action="store_true", default=True, help="with --submit: wait and show progress (default)")
    wait.add_argument("--no-wait", dest="wait", action="store_false", help="with --submit: print the runner's request uuid and exit")
    reuse = ours.add_mutually_exclusive_group()
    reuse.add_argument("--enable-reuse", dest="reuse", action="store_true", default=True, help="reuse identical work (default)")
    reuse.add_argument("--disable-reuse", dest="reuse", action="store_false", help="always run steps anew")
    ours.add_argument("--priority", type=_priority, default=DEFAULT_PRIORITY, help="1..1000 (default 500)")
    ours.add_argument("--name", help="the run's name")
    ours.add_argument("--engine", choices=("docker", "podman"), help="the container engine the cluster runs, if any")
    return top


def _priority(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        raise argparse.ArgumentTypeError("a priority is a number from 1 to 1000")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cache_schema_loads()
    share_core_names()
    share_array_data_in_item_bindings()
    if not args.workflow:
        return cwltool.main.main(args=args)  # --version, --help-like uses: cwltool's own answers
    connection = Connection(args)
    if args.submit and not inside_container():
        from .submit import submit

        return submit(args, connection)
    try:
        api, keep = connection.get()
    except Unreachable as error:
        print(f"cwl-crunch: {error}", file=sys.stderr)
        return 1
    return run_local(args, api, keep)


def run_local(args: argparse.Namespace, api: Client, keep: Keep) -> int:
    """Orchestrate the workflow from this process."""
    own = os.environ.get("CRUNCH_CONTAINER_UUID")
    if own:
        from .submit import RUNNER_WORKFLOW

        if urldefrag(args.workflow)[0] == RUNNER_WORKFLOW:
            read_packed_as_json(RUNNER_WORKFLOW)
    publish = partial(_publish_own, api, own) if own else terminal_publisher()
    children = Children(api, keep, Reporter(Progress(), publish), engine=args.engine, reuse=args.reuse,
                        priority=args.priority, on_error=args.on_error)
    executor = CrunchExecutor(children, output_object_only=bool(own) and args.outdir == OUTPUT_PATH)
    loading = LoadingContext(vars(args))
    loading.construct_tool_object = partial(_make_tool, children=children)
    runtime = RuntimeContext(vars(args))
    runtime.make_fs_access = partial(CollectionFsAccess, keep=keep)
    runtime.on_error = "continue" if args.on_error == "continue" else "stop"
    runtime.use_container = not args.no_container if hasattr(args, "no_container") else True
    return cwltool.main.main(args=args, executor=executor, loadingContext=loading, runtimeContext=runtime,
                             versionfunc=_version)


def _make_tool(toolpath_object: dict[str, Any], loading_context: LoadingContext, children: Children) -> Any:
    share_core_types()
    if toolpath_object.get("class") == "Workflow":
        make_cheap_to_copy(toolpath_object)
        if loading_context.loader is not None:
            make_cheap_to_copy(list(loading_context.loader.idx.values()))
        embed_step_tools(toolpath_object, loading_context)
    if toolpath_object.get("class") == "CommandLineTool":
        return CrunchTool(toolpath_object, loading_context, children)
    return default_make_tool(toolpath_object, loading_context)


def _publish_own(api: Client, uuid: str, status: dict[str, Any]) -> None:
    api.update("containers", uuid, {"runtime_status": status})


def command() -> NoReturn:
    """The `cwl-crunch` command: main(), then `exit_fast`."""
    exit_fast(main())


def exit_fast(code: int) -> NoReturn:
    """Exit without Python's teardown, which frees a loaded workflow's objects one by one: 0.15–0.25 s
    for chain-50, in the client and again in the runner, after all the work is done.

    What a normal exit does first still happens: exit handlers run (logging's flush, finalizers)
    and the standard streams are flushed. While a non-daemon thread still runs, it is a normal
    exit, which waits for it.
    """
    if any(not thread.daemon for thread in threading.enumerate() if thread is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): what Python itself would exit with
            code = code or 120
    os._exit(code)


def _version() -> str:
    from importlib.metadata import version

    return f"cwl-crunch {version('cwl-crunch')} (cwltool {version('cwltool')})"


if __name__ == "__main__":
    command()
