"""The packed workflow that the runner container receives: repairs, and loading it cheaply.

cwltool's packer loses a tool output whose id is also one of that tool's input ids (CWL allows
an input and an output with the same name): the packed output is a bare `{"$import": "#tool.cwl/x"}`,
without its type or outputBinding, and the step then produces nothing (the conformance test
`iwd-subdir` does this; `cwltool --pack` shows it). The tool loaded from the original files is
right, so such outputs are put back from it.

Loading a packed workflow, cwltool builds each step's tool with `load_tool(run)`, and `run` is a
fragment of the same document (`workflow.json#tool.cwl`): every step resolves and validates the
whole graph again, so loading is quadratic in the number of steps (about 1 s of the runner's
start on a 50-step chain). The document was resolved, validated and updated whole before its
first process is built, so `embed_step_tools` hands each step its tool from the loader's index
instead, as if it had been written inline.

Reading the packed document, cwltool's loader parses it with ruamel's round-trip YAML parser,
which records every node's line and column: 0.15-0.3 s for chain-50's 30 KB. Nobody wrote the
packed document by hand and the client has validated its sources, so `read_packed_as_json` has
the runner read it with `json` instead (about 2 ms).

Packing itself is quadratic too: cwltool rewrites references with one walk over the whole packed
document per identifier (about 250 walks on a 50-step chain, 0.3 s of the client). `packed`
runs cwltool's packer with those walks done in one: see `_OnePassRewrite`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, MutableMapping, MutableSequence
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

import cwltool.main
import cwltool.pack
from cwltool.context import LoadingContext
from cwltool.load_tool import default_loader, resolve_tool_uri
from schema_salad.sourceline import cmap
from schema_salad.utils import json_dumps


def packed(loading: LoadingContext, uri: str) -> Any:
    """The process at `uri` packed into one JSON document, as `cwltool --pack` prints it (the
    `$graph` only when it holds more than one process), in time linear in its size."""
    original = cwltool.pack.replace_refs
    cwltool.pack.replace_refs = _OnePassRewrite(original)
    try:
        document = cwltool.pack.pack(loading, uri)
    finally:
        cwltool.pack.replace_refs = original
    graph = document["$graph"]
    return json.loads(json_dumps(document if len(graph) > 1 else graph[0], default=str))


class _OnePassRewrite:
    """Stands in for `cwltool.pack.replace_refs` during one `pack`.

    The packer calls `replace_refs(document, rewrite, stem, newstem)` for every key of `rewrite`
    in turn (stem: the key followed by "/" or "#", newstem: its new name followed by "/"); each
    call walks the whole document. A string is rewritten by the first of those calls that matches
    it (listed in `rewrite`, or starting with the stem), and never again, since what it becomes
    starts with "#" and no stem does. So the first call of such a series applies the whole series
    in one walk, each string taking the first stem that matches it, and the rest of the series
    has nothing left to do. Any other call is passed to cwltool's own function.
    """

    def __init__(self, original: Any) -> None:
        self.original = original
        self.series: tuple[Any, Any, set[tuple[str, str]]] | None = None  # (document, rewrite, done)

    def __call__(self, document: Any, rewrite: dict[str, str], stem: str, newstem: str) -> None:
        if self.series is not None and self.series[0] is document and self.series[1] is rewrite \
                and (stem, newstem) in self.series[2]:
            return
        pairs = [(key + "/" if "#" in key else key + "#", value + "/") for key, value in rewrite.items()]
        if (stem, newstem) not in pairs:
            self.series = None
            self.original(document, rewrite, stem, newstem)
            return
        pending = pairs[pairs.index((stem, newstem)):]
        stems: dict[str, tuple[int, str]] = {}
        for order, (one_stem, one_newstem) in enumerate(pending):
            stems.setdefault(one_stem, (order, one_newstem))
        _rewrite_refs(document, rewrite, stems)
        self.series = (document, rewrite, set(pending))


def _rewrite_refs(node: Any, rewrite: dict[str, str], stems: dict[str, tuple[int, str]]) -> None:
    """One walk doing what `cwltool.pack.replace_refs` does once per stem, in the stems' order."""
    if isinstance(node, MutableSequence):
        slots, in_mapping = enumerate(node), False
    elif isinstance(node, MutableMapping):
        slots, in_mapping = iter(node.items()), True
    else:
        return
    for key, value in slots:  # values are replaced in place; no key is added or removed
        if isinstance(value, str):
            new = _renamed(value, rewrite, stems, in_mapping)
            if new is not None:
                node[key] = new
        else:
            _rewrite_refs(value, rewrite, stems)


def _renamed(value: str, rewrite: dict[str, str], stems: dict[str, tuple[int, str]], in_mapping: bool) -> str | None:
    if value in rewrite:
        return rewrite[value]
    first: tuple[int, str, str] | None = None  # (order, stem, newstem) of the first stem that matches
    for end, char in enumerate(value):
        if char in "/#":
            found = stems.get(value[: end + 1])
            if found is not None and (first is None or found[0] < first[0]):
                first = (found[0], value[: end + 1], found[1])
    if first is None:
        return None
    _, stem, newstem = first
    rest = value[len(stem):]
    # as cwltool: a mapping's value already named after the new stem (a packed tool) only gets "#"
    new = "#" + rest if in_mapping and rest.startswith(newstem.strip("#")) else newstem + rest
    rewrite[value] = new
    return new


def restore_lost_outputs(packed: Any, tool: Any) -> Any:
    """`packed` with every bare `$import` in a process's `outputs` replaced by the output of that
    name from the loaded `tool` tree, where exactly one loaded output matches."""
    loaded = list(_loaded_processes(tool))

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        repaired = {key: visit(value) for key, value in node.items()}
        if isinstance(repaired.get("outputs"), list):
            repaired["outputs"] = [_restored(output, loaded) for output in repaired["outputs"]]
        return repaired

    return visit(packed)


def _restored(output: Any, loaded: list[dict[str, Any]]) -> Any:
    if not (isinstance(output, dict) and set(output) == {"$import"} and isinstance(output["$import"], str)):
        return output
    reference = output["$import"]  # "#file.cwl/name"
    document, _, name = reference.lstrip("#").rpartition("/")
    matches = [o for process in loaded if _basename(process.get("id", "")) == document
               for o in process.get("outputs") or [] if _shortname(o.get("id", "")) == name]
    if len(matches) != 1 or _mentions_a_file_uri(matches[0], skip="id"):
        return output  # not found, ambiguous, or it names other objects by absolute URI: leave it
    restored = copy.deepcopy(dict(matches[0]))
    restored["id"] = reference
    return restored


def _loaded_processes(tool: Any) -> Iterator[dict[str, Any]]:
    yield tool.tool
    for step in getattr(tool, "steps", []) or []:
        yield from _loaded_processes(step.embedded_tool)


def _basename(uri: str) -> str:
    return uri.partition("#")[0].rstrip("/").rsplit("/", 1)[-1]


def _shortname(uri: str) -> str:
    return uri.partition("#")[2].rsplit("/", 1)[-1]


def _mentions_a_file_uri(node: Any, skip: str = "") -> bool:
    if isinstance(node, str):
        return node.startswith("file://")
    if isinstance(node, dict):
        return any(_mentions_a_file_uri(value) for key, value in node.items() if key != skip)
    if isinstance(node, list):
        return any(_mentions_a_file_uri(item) for item in node)
    return False


def embed_step_tools(workflow: Any, loading_context: Any) -> None:
    """Replace each step's `run` reference into the workflow's own document by (a copy of) the
    tool the loader already holds for it; references to other documents are left alone."""
    index = loading_context.loader.idx if loading_context.loader is not None else {}
    document = urldefrag(str(workflow.get("id", "")))[0]
    for step in workflow.get("steps", []):
        run = step.get("run")
        if isinstance(run, str) and urldefrag(run)[0] == document and run in index:
            step["run"] = copy.deepcopy(index[run])


def read_packed_as_json(path: str) -> None:
    """Have cwltool's main read the packed document at `path` with `json`; any other document is
    fetched as usual. The result is what cwltool's loader makes of it, line numbers apart: the
    document, its id set to the file's URI when it has none, and the file's URI in the loader's
    index."""
    original = cwltool.main.fetch_document
    names = {path, Path(path).as_uri()}

    def fetch_document(argsworkflow: Any, loadingContext: LoadingContext | None = None) -> Any:
        # cwltool's main passes the URI it resolved the command line's argument to.
        if not isinstance(argsworkflow, str) or urldefrag(argsworkflow)[0] not in names or loadingContext is None:
            return original(argsworkflow, loadingContext)
        loading = loadingContext.copy()
        if loading.loader is None:
            loading.loader = default_loader(loading.fetcher_constructor, enable_dev=loading.enable_dev,
                                            doc_cache=loading.doc_cache)
        uri, fileuri = resolve_tool_uri(argsworkflow, resolver=loading.resolver, document_loader=loading.loader)
        with open(path, encoding="utf-8") as text:
            document = cmap(json.load(text), fn=fileuri)
        loader = loading.loader
        if isinstance(document, MutableMapping) and loader.identifiers:  # as schema-salad's Loader.fetch does
            named = [key for key in loader.identifiers if key in document]
            for key in named:
                loader.idx[loader.expand_url(document[key], fileuri, scoped_id=True)] = document
            if not named:
                document[loader.identifiers[0]] = fileuri
        loader.idx[fileuri] = document
        return loading, document, uri

    cwltool.main.fetch_document = fetch_document
