"""Making CWL schema loads cheap: one load per process, and a disk cache across processes.

cwltool loads a CWL schema (parsing its YAML with schema-salad) for every version a run touches:
the document's own version, the internal version every loaded document is updated to (the tools
of a workflow's steps are validated with that one), and v1.0 for three type definitions. Each load
costs 0.4–0.5 s here, in the client and again in the runner container: on a short workflow that
is most of the run.

Two remedies:

- `share_core_types()` gives cwltool the `Any`, `File` and `Directory` definitions from a schema
  already loaded, so v1.0 is never loaded for them. They are the same in every CWL version's
  schema (they differ only in a JSON-LD annotation that the Avro types built from them do not use).
- `share_core_names()` builds the Avro names of `File`, `Directory` and `Any` once. cwltool's tool
  constructor builds them from those three definitions every time (about 2 ms; 101 constructors
  for chain-50, in the client and again in the runner), then adds the tool's own record schemas
  to them; each constructor now gets its own copy of the table built once.
- `cache_schema_loads()` keeps each loaded schema in a pickle under the installation's prefix
  (`<sys.prefix>/var/cache/cwl-crunch/`, or `$CWL_CRUNCH_SCHEMA_CACHE`), named by a digest of
  everything the load depends on: the schema texts cwltool hands to schema-salad and the versions
  of Python, schema-salad, cwltool and ruamel.yaml. Unpickling takes about 10 ms. A runner
  container runs the same interpreter and sees the host's files read-only, so it finds the cache
  the client wrote. Only a prefix's owner can write there, so the pickles are as trusted as the
  installed code; a cache that cannot be read or written is skipped silently and the schema is
  loaded as usual.

  schema-salad's own metaschema is cached the same way (`metaschema-<digest>.pickle`). It is what
  turns the File, Directory and Any definitions into Avro names in every tool's constructor, and
  schema-salad builds it once per process unless it loaded a schema itself: 0.2 s, where the
  pickle takes 5 ms.
"""

from __future__ import annotations

import copyreg
import functools
import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from cwltool import process
from schema_salad import schema as salad_schema
from schema_salad.avro.schema import Names
from schema_salad.ref_resolver import NormDict

_ANY = "https://w3id.org/cwl/salad#Any"
_FILE = "https://w3id.org/cwl/cwl#File"
_DIRECTORY = "https://w3id.org/cwl/cwl#Directory"
_LIBRARIES = ("schema-salad", "cwltool", "ruamel.yaml")


def share_core_types() -> None:
    """Give cwltool the `Any`, `File` and `Directory` definitions from a schema it has loaded
    already, if it has not got them yet; nothing if no schema is loaded (cwltool then loads v1.0)."""
    if process.SCHEMA_ANY is not None and process.SCHEMA_FILE is not None and process.SCHEMA_DIR is not None:
        return
    for loaded in list(process.SCHEMA_CACHE.values()):
        index = loaded[3].idx
        if _ANY in index and _FILE in index and _DIRECTORY in index:
            process.SCHEMA_ANY, process.SCHEMA_FILE, process.SCHEMA_DIR = index[_ANY], index[_FILE], index[_DIRECTORY]
            return


def share_core_names() -> None:
    """Tool constructors get a copy of the core types' Avro names, built once per process; any other
    names are built by schema-salad as before. The names are only ever added to, so a copy of the
    table (not of the schemas in it) keeps each tool's record schemas its own."""
    build = process.make_avro_schema
    if getattr(build, "__wrapped__", None) is not None:
        return  # installed already
    built: Names | None = None

    @functools.wraps(build)
    def make(definitions: list[Any], loader: Any, metaschema_vocab: dict[str, str] | None = None) -> Names:
        nonlocal built
        core = (process.SCHEMA_FILE, process.SCHEMA_DIR, process.SCHEMA_ANY)
        if metaschema_vocab is not None or len(definitions) != 3 or any(a is not b for a, b in zip(definitions, core)):
            return build(definitions, loader, metaschema_vocab)
        if built is None:
            built = build(definitions, loader)
        names = Names(built.default_namespace)
        names.names = dict(built.names)
        return names

    process.make_avro_schema = make


def cache_dir() -> Path:
    configured = os.environ.get("CWL_CRUNCH_SCHEMA_CACHE")
    return Path(configured) if configured else Path(sys.prefix, "var", "cache", "cwl-crunch")


def cache_schema_loads() -> None:
    """Route cwltool's schema loads through the disk cache (idempotent)."""
    if not getattr(process.load_schema, "cached_on_disk", False):
        process.load_schema = _cached(process.load_schema)


def _cached(load: Any) -> Any:
    def load_schema(name: str, cache: dict[str, Any] | None = None) -> Any:
        if salad_schema.cached_metaschema is None:  # schema-salad reads it from its module global
            salad_schema.cached_metaschema = _stored_or_built(f"metaschema-{_key('metaschema', {})}",
                                                              salad_schema.get_metaschema)
        return _stored_or_built(f"schema-{_key(name, cache or {})}", functools.partial(load, name, cache=cache))

    load_schema.cached_on_disk = True  # type: ignore[attr-defined]
    return load_schema


def _stored_or_built(name: str, build: Callable[[], Any]) -> Any:
    path = cache_dir() / f"{name}.pickle"
    try:
        with open(path, "rb") as stored:
            return pickle.load(stored)
    except Exception:  # missing, unreadable or from an incompatible build: built anew
        pass
    built = build()
    _store(path, built)
    return built


@functools.cache
def _builds() -> bytes:
    """What the pickles depend on besides the schema texts: Python's and the libraries' versions."""
    return "\0".join([sys.version, *(f"{library}={metadata.version(library)}" for library in _LIBRARIES)]).encode()


def _key(name: str, texts: dict[str, Any]) -> str:
    digest = hashlib.sha256(_builds())
    digest.update(b"\0" + name.encode())
    for url in sorted(texts):
        digest.update(b"\0" + url.encode() + b"\0" + str(texts[url]).encode())
    return digest.hexdigest()[:32]


def _store(path: Path, loaded: Any) -> None:
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".schema-", delete=False) as out:
            temporary = out.name
            pickle.dump(loaded, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.chmod(temporary, 0o644)  # readable by containers running as another user
        os.replace(temporary, path)  # whole or absent, whatever runs at the same time
    except Exception:  # a read-only installation: no cache, nothing else changes
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def _rebuild_normdict(normalize: Any, items: dict[str, Any]) -> NormDict:
    rebuilt = NormDict(normalize)
    rebuilt.update(items)
    return rebuilt


# schema-salad's NormDict (compiled) sets its `normalize` in __init__; pickle's default restores
# the items before any attribute, so it is rebuilt through its constructor instead.
copyreg.pickle(NormDict, lambda d: (_rebuild_normdict, (d.normalize, dict(d))))
