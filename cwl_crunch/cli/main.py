"""`crunchctl`: every verb except running workflows (that is `cwl-crunch`)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..domain.errors import CrunchError
from ..domain.uuids import CLUSTER_RE
from ..settings import Settings
from . import datadir


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

    token = verbs.add_parser("token", help="manage tokens")
    token_verbs = token.add_subparsers(dest="token_verb", required=True)
    create = token_verbs.add_parser("create", help="print a new token for a user (created if missing)")
    create.add_argument("--data-dir", type=Path, required=True)
    create.add_argument("--database", help="database URL (default: the one the server remembered in DIR)")
    create.add_argument("--user", required=True)
    create.add_argument("--admin", action="store_true", help="the user is an admin (dispatchers need this)")
    create.add_argument("--cluster-id", type=_cluster, default="zzzzz")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.verb == "server":
            return _server(args)
        if args.verb == "token":
            return _token_create(args)
    except CrunchError as error:
        print(f"crunchctl: {error}", file=sys.stderr)
        return 1
    return 2


def _server(args: argparse.Namespace) -> int:
    import uvicorn

    from ..server import create_app
    from ..services.context import Context
    from ..store import open_store

    data_dir: Path = args.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        cluster_id=args.cluster_id,
        database_url=datadir.database_url(data_dir, args.database),
        data_dir=data_dir,
        container_heartbeat_timeout=timedelta(seconds=args.heartbeat_timeout),
        dispatcher_timeout=timedelta(seconds=args.dispatcher_timeout),
    )
    store = open_store(settings.database_url)
    token_path = datadir.ensure_admin_token(data_dir, store, settings.cluster_id)
    host, port = args.listen
    print(f"crunchctl server: http://{host}:{port}/arvados/v1 (admin token in {token_path})", file=sys.stderr)
    uvicorn.run(create_app(Context(store, settings)), host=host, port=port, log_level="warning")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from ..services.auth import create_user_token
    from ..store import open_store

    store = open_store(datadir.database_url(args.data_dir, args.database))
    print(create_user_token(store, args.cluster_id, args.user, args.admin, datetime.now(timezone.utc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
