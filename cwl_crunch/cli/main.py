"""`crunchctl`: every verb except running workflows (that is `cwl-crunch`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.errors import CrunchError
from ..domain.uuids import CLUSTER_RE

if TYPE_CHECKING:
    from ..client import Client
    from ..dispatch.backends import Backend

# Imports stay inside the verbs: `run-container` starts once per container and must not pay
# for the server's (FastAPI, SQLAlchemy) or anything else it does not use.


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _cluster(value: str) -> str:
    if not CLUSTER_RE.match(value):
        raise argparse.ArgumentTypeError("a cluster id is 5 lower-case letters or digits")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="crunchctl", description=__doc__)
    verbs = top.add_subparsers(dest="verb", required=True)

    server = verbs.add_parser("server", help="run the API server")
    server.add_argument("--data-dir", type=Path, required=True, help="database (SQLite default) and admin token")
    server.add_argument("--database", help="database URL, e.g. postgresql://user@host/db (remembered in DIR)")
    server.add_argument("--listen", type=_listen, default=("127.0.0.1", 8400), help="HOST:PORT (default 127.0.0.1:8400)")
    server.add_argument("--cluster-id", type=_cluster, default="zzzzz")
    server.add_argument("--heartbeat-timeout", type=float, default=60.0, help="seconds (default 60)")
    server.add_argument("--dispatcher-timeout", type=float, default=60.0, help="seconds (default 60)")
    server.add_argument("--blob-root", type=Path, help="where blobs are stored (default DIR/blobs)")
    server.add_argument("--blobs-read-only", action="store_true", help="serve blobs but refuse to store new ones")

    token = verbs.add_parser("token", help="manage tokens")
    token_verbs = token.add_subparsers(dest="token_verb", required=True)
    create = token_verbs.add_parser("create", help="print a new token for a user (created if missing)")
    create.add_argument("--data-dir", type=Path, required=True)
    create.add_argument("--database", help="database URL (default: the one the server remembered in DIR)")
    create.add_argument("--user", required=True)
    create.add_argument("--admin", action="store_true", help="the user is an admin (dispatchers need this)")
    create.add_argument("--cluster-id", type=_cluster, default="zzzzz")

    run = verbs.add_parser("run-container", help="crunch-run: execute one Locked container (started by a dispatcher)")
    run.add_argument("uuid")
    run.add_argument("--work-root", type=Path, default=_env_path("CRUNCH_WORK_ROOT", "/var/tmp/crunch-run"),
                     help="per-container work directories and the shared collection cache")
    run.add_argument("--blob-root", type=Path, default=_env_path("CRUNCH_BLOB_ROOT"),
                     help="the API server's blob root, when this worker shares its filesystem")
    run.add_argument("--hide", type=Path, action="append", default=_env_paths("CRUNCH_HIDE"),
                     help="a host path the container must not see (repeatable; the data dir, token files)")

    dispatch = verbs.add_parser("dispatch", help="run a dispatcher")
    dispatch.add_argument("--api", required=True, help="the API server, e.g. http://127.0.0.1:8400")
    dispatch.add_argument("--token", default=os.environ.get("CRUNCH_DISPATCH_TOKEN"),
                          help="an admin token (default: $CRUNCH_DISPATCH_TOKEN)")
    dispatch.add_argument("--backend", choices=("local", "slurm"), default="local",
                          help="local: crunch-run on this host; slurm: one batch job per container")
    dispatch.add_argument("--vcpus", type=float, default=float(os.cpu_count() or 1), help="local: default this host's")
    dispatch.add_argument("--ram", type=int, default=_host_ram(), help="local: bytes (default: this host's)")
    dispatch.add_argument("--supervisors", type=int, default=4, help="workflow runners at once (default 4)")
    dispatch.add_argument("--sbatch-argument", action="append", default=[], metavar="ARG",
                          help="slurm: an extra sbatch option for every job, e.g. --account=lab (repeatable)")
    dispatch.add_argument("--crunchctl", default=_this_crunchctl(),
                          help="slurm: crunchctl as the compute nodes run it (default: %(default)s)")
    dispatch.add_argument("--state-dir", type=Path, default=Path("/var/tmp/crunch-dispatch"),
                          help="pid files and crunch-run logs, for adopting crunch-runs after a restart")
    dispatch.add_argument("--work-root", type=Path, default=Path("/var/tmp/crunch-run"))
    dispatch.add_argument("--blob-root", type=Path, help="the API server's blob root, if on this filesystem")
    dispatch.add_argument("--hide", type=Path, action="append", default=[],
                          help="a host path containers must not see (repeatable)")
    dispatch.add_argument("--interval", type=float, default=0.5, help="seconds between rounds")
    dispatch.add_argument("--crunchstat-interval", type=float, default=10.0,
                          help="seconds between crunchstat lines of each container (default 10)")

    local = verbs.add_parser("local-service", help="the embedded service cwl-crunch uses when given no --api")
    local.add_argument("--data-dir", type=Path, help="default: $CWL_CRUNCH_DATA_DIR, else"
                                                     " $XDG_DATA_HOME/cwl-crunch, else ~/.local/share/cwl-crunch")
    local.add_argument("action", nargs="?", choices=("start", "stop", "status"), default="start",
                       help="start: run it in the foreground (the default); stop: stop the running one; status")

    logs = verbs.add_parser("logs", help="print a container request's logs (newest attempt)")
    logs.add_argument("request_uuid")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the container ends")
    logs.add_argument("--file", help="one log file (default: crunch-run.txt, stderr.txt and stdout.txt merged by time;"
                                     " with -f, stdout.txt)")
    _client_options(logs)

    status = verbs.add_parser("status", help="the newest runs, or one run with its steps, as a person reads them")
    status.add_argument("request_uuid", nargs="?", help="one run (default: a table of the newest top-level runs)")
    status.add_argument("--limit", type=int, default=20, help="runs in the table (default 20)")
    status.add_argument("--json", action="store_true", help="the same information as JSON")
    _client_options(status)

    for action, what in (("cancel", "stop a run (its container too, unless other requests want it)"),
                         ("hold", "keep a queued run from starting"), ("release", "let a held run start"),
                         ("retry", "run a failed or cancelled request again (prints the new request)")):
        verb = verbs.add_parser(action, help=what)
        verb.add_argument("request_uuid")
        _client_options(verb)

    image = verbs.add_parser("image", help="container images stored as collections")
    image_verbs = image.add_subparsers(dest="image_verb", required=True)
    put = image_verbs.add_parser("put", help="store an image tarball (or an engine's image) as a collection;"
                                             " print its hash, usable as container_image")
    put.add_argument("image", help="a `docker save` tarball, or an image reference the local engine has")
    put.add_argument("--engine", help="docker-compatible CLI to save a reference with (default: podman, else docker)")
    _client_options(put)
    return top


def _client_options(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--api", default=os.environ.get("CRUNCH_API"), help="the API server (default: $CRUNCH_API)")
    verb.add_argument("--token", default=os.environ.get("CRUNCH_API_TOKEN"), help="default: $CRUNCH_API_TOKEN")


def _env_path(name: str, default: str | None = None) -> Path | None:
    value = os.environ.get(name, default)
    return Path(value) if value else None


def _env_paths(name: str) -> list[Path]:
    return [Path(p) for p in os.environ.get(name, "").split(":") if p]


def _this_crunchctl() -> str:
    """The crunchctl installed beside this Python (a virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "crunchctl"
    return str(beside) if beside.exists() else "crunchctl"


def _host_ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.verb != "run-container":  # crunch-run writes its own timestamped log
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.verb == "server":
            return _server(args)
        if args.verb == "token":
            return _token_create(args)
        if args.verb == "run-container":
            return _run_container(args)
        if args.verb == "dispatch":
            return _dispatch(args)
        if args.verb == "local-service":
            return _local_service(args)
        if args.verb == "logs":
            return _logs(args)
        if args.verb == "image":
            return _image_put(args)
        if args.verb == "status":
            return _status(args)
        if args.verb in ("cancel", "hold", "release", "retry"):
            return _act(args)
    except CrunchError as error:
        print(f"crunchctl: {error}", file=sys.stderr)
        return 1
    return 2


def _server(args: argparse.Namespace) -> int:
    import uvicorn

    from .serving import build_server

    built = build_server(
        args.data_dir, database=args.database, cluster_id=args.cluster_id,
        heartbeat_timeout=args.heartbeat_timeout, dispatcher_timeout=args.dispatcher_timeout,
        blob_root=args.blob_root, blobs_read_only=args.blobs_read_only,
    )
    host, port = args.listen
    print(f"crunchctl server: http://{host}:{port}/arvados/v1 (admin token in {built.admin_token_path})",
          file=sys.stderr)
    uvicorn.run(built.app, host=host, port=port, log_level="warning")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from ..services.auth import create_user_token
    from ..store import open_store
    from . import datadir

    store = open_store(datadir.database_url(args.data_dir, args.database))
    print(create_user_token(store, args.cluster_id, args.user, args.admin, datetime.now(timezone.utc)))
    return 0


def _run_container(args: argparse.Namespace) -> int:
    from ..runner.crunch_run import Options
    from ..runner.crunch_run import main as crunch_run

    options = Options(work_root=args.work_root, blob_root=args.blob_root, hidden=tuple(args.hide))
    return crunch_run(args.uuid, options)


def _dispatch(args: argparse.Namespace) -> int:
    from ..client import Client
    from ..dispatch.dispatcher import Dispatcher

    if not args.token:
        print("crunchctl dispatch: an admin token is needed (--token or $CRUNCH_DISPATCH_TOKEN)", file=sys.stderr)
        return 2
    api = Client(args.api, args.token)
    environment = {"CRUNCH_API": args.api, "CRUNCH_DISPATCH_TOKEN": args.token}
    if args.backend == "slurm":
        backend, summary = _slurm_backend(args, environment)
    else:
        backend, summary = _local_backend(args, api, environment)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    dispatcher = Dispatcher(api, backend)
    uuid = dispatcher.register(args.state_dir / "dispatcher-uuid")
    print(f"crunchctl dispatch: {uuid} ({summary})", file=sys.stderr)
    dispatcher.run(args.interval)
    return 0


def _local_backend(args: argparse.Namespace, api: Client, environment: dict[str, str]) -> tuple[Backend, str]:
    from ..dispatch.backends import Capacity
    from ..dispatch.backends.local import LocalBackend
    from ..runner.crunch_run import Options

    heartbeat_timeout = api.request("GET", "/config").get("container_heartbeat_timeout") or 60
    options = Options(work_root=args.work_root, blob_root=args.blob_root, hidden=tuple(args.hide),
                      heartbeat_seconds=min(10.0, max(0.2, heartbeat_timeout / 4)),
                      crunchstat_seconds=args.crunchstat_interval)
    capacity = Capacity(args.vcpus, args.ram, args.supervisors)
    return LocalBackend(capacity, args.state_dir, environment, options), f"{args.vcpus:g} vCPUs, {args.ram} bytes RAM"


def _slurm_backend(args: argparse.Namespace, environment: dict[str, str]) -> tuple[Backend, str]:
    import shutil

    from ..dispatch.backends.slurm import SlurmBackend
    from ..dispatch.slurm.commands import SlurmCommands

    missing = [c for c in ("sbatch", "squeue", "scancel", "scontrol") if shutil.which(c) is None]
    if missing:
        raise CrunchError(f"the slurm backend needs {', '.join(missing)} on PATH (Debian: slurm-client)")
    crunch_run = [args.crunchctl, "run-container", "--work-root", str(args.work_root)]
    if args.blob_root is not None:
        crunch_run += ["--blob-root", str(args.blob_root)]
    for hidden in args.hide:
        crunch_run += ["--hide", str(hidden)]
    # Jobs inherit sbatch's environment: that is how crunch-run learns the API and its token.
    slurm = SlurmCommands({**os.environ, **environment})
    # What crunch-run prints before its own log exists (a crash at start) goes where the local
    # backend puts it, <state dir>/<uuid>.log, rather than slurm-<job>.out in our working directory.
    # This assumes nodes see the state directory; an --sbatch-argument=--output=... overrides it.
    output = f"--output={args.state_dir.resolve() / '%x.log'}"
    backend = SlurmBackend(slurm, crunch_run, (output, *args.sbatch_argument), args.supervisors)
    return backend, f"slurm, jobs run {args.crunchctl}"


def _local_service(args: argparse.Namespace) -> int:
    from .. import embedded

    data_dir = (args.data_dir or embedded.default_data_dir()).expanduser().resolve()
    if args.action == "start":
        from .local_service import serve

        return serve(data_dir)
    if args.action == "stop":
        stopped = embedded.stop(data_dir)
        print(f"crunchctl local-service: {'stopped' if stopped else 'was not running'} ({data_dir})", file=sys.stderr)
        return 0
    service = embedded.running(data_dir)
    if service is None:
        print(f"crunchctl local-service: not running ({data_dir})", file=sys.stderr)
        return 3  # as LSB init scripts answer `status` for a stopped service
    print(f"{service.api_url}/arvados/v1 (pid {embedded.daemon_pid(data_dir)}, data in {data_dir})")
    print(f"dashboard: {service.api_url}/?token={service.token}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    from .logs import print_logs

    return _as_client("crunchctl logs", args, lambda api: print_logs(
        api, args.request_uuid, args.file, args.follow, sys.stdout.buffer))


def _status(args: argparse.Namespace) -> int:
    import json

    from . import status

    def show(api: Client) -> int:
        now = status.utc_now()
        if args.request_uuid:
            found: Any = status.gather_run(api, args.request_uuid)
            text = status.render_run(found, now)
        else:
            found = status.gather_runs(api, args.limit)
            text = status.render_table(found, now)
        sys.stdout.write(json.dumps(found, indent=2, ensure_ascii=False) + "\n" if args.json else text)
        return 0

    return _as_client("crunchctl status", args, show)


def _act(args: argparse.Namespace) -> int:
    from . import status

    def act(api: Client) -> int:
        request = status.act(api, args.request_uuid, args.verb)
        if args.verb == "retry":
            print(request["uuid"])
        else:
            print(f"{request['uuid']}: {request['status']}", file=sys.stderr)
        return 0

    return _as_client(f"crunchctl {args.verb}", args, act)


def _image_put(args: argparse.Namespace) -> int:
    from .images import put_image

    def put(api: Client) -> int:
        print(put_image(api, args.image, args.engine))
        return 0

    return _as_client("crunchctl image put", args, put)


def _as_client(verb: str, args: argparse.Namespace, work: Callable[[Client], int]) -> int:
    """Run a client verb with `--api`/`--token`; errors from the API or the disk end it with 1."""
    from ..client import ApiError, Client

    if not args.api or not args.token:
        print(f"{verb}: --api and --token (or $CRUNCH_API and $CRUNCH_API_TOKEN) are needed", file=sys.stderr)
        return 2
    try:
        return work(Client(args.api, args.token))
    except (ApiError, OSError, RuntimeError) as error:
        print(f"{verb}: {error}", file=sys.stderr)
        return 1

if __name__ == "__main__":
    sys.exit(main())
