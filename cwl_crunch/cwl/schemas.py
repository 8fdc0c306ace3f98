"""Loading the CWL schema once per process instead of twice.

cwltool validates a document with the schema of its `cwlVersion`, then, when it builds the
first tool, loads the v1.0 schema as well, only to take three type definitions from it (`Any`,
`File`, `Directory`, which it uses to check input and output objects). Loading a schema parses
its YAML and costs about 0.35 s here for v1.0, once in the client and once more in the runner
container. These three definitions are the same in every CWL version's schema (they differ only in
a JSON-LD annotation that the Avro types built from them do not use), so they are taken from the
schema already loaded.
"""

from __future__ import annotations

from cwltool import process

_ANY = "https://w3id.org/cwl/salad#Any"
_FILE = "https://w3id.org/cwl/cwl#File"
_DIRECTORY = "https://w3id.org/cwl/cwl#Directory"


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
