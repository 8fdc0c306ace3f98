"""The `cwl-crunch` console command.

Before anything heavy is imported (cwltool alone takes about 0.5 s), it starts the embedded
service in the background when the arguments show that this run will use it. A cold daemon takes
about 1.3 s to answer (its own imports, a fresh database, its dispatcher); started here, that
overlaps the client's imports and the workflow's loading instead of following the imports.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from .. import embedded
from .connection import uses_containers_api

OURS = ("--api", "--data-dir")  # the options deciding which service a run uses


def command() -> NoReturn:
    data_dir = embedded_data_dir(sys.argv[1:])
    if data_dir is not None:
        embedded.start_in_background(data_dir)
    from .main import command as run_command

    run_command()


def embedded_data_dir(argv: list[str]) -> Path | None:
    """The data directory of the embedded service this command line will use, when that is
    certain from the arguments alone (cwltool's parser is not imported yet); else None, and the
    service is found or started later as usual. None for a shared service (`--api`,
    CWL_CRUNCH_API), inside a runner container, for --help and --version, when no argument names
    an existing file (no workflow to run), and for an abbreviation of --api or --data-dir (which
    argparse would expand; rather than guess, this leaves it to the real parser)."""
    if os.environ.get("CWL_CRUNCH_API") or uses_containers_api():
        return None
    data_dir: str | None = None
    names_a_file = False
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            names_a_file = names_a_file or any(_is_file(rest) for rest in tokens)
            break
        if token in ("-h", "--help", "--version"):
            return None
        if not token.startswith("--"):
            names_a_file = names_a_file or _is_file(token)
            continue
        name, has_value, value = token.partition("=")
        if name == "--api" or any(option != name and option.startswith(name) for option in OURS):
            return None
        if name == "--data-dir":
            data_dir = value if has_value else next(tokens, None)
            if not data_dir:
                return None  # the parser says what is missing
    if not names_a_file:
        return None
    return Path(data_dir) if data_dir else embedded.default_data_dir()


def _is_file(token: str) -> bool:
    return not token.startswith("-") and os.path.isfile(token.partition("#")[0])
