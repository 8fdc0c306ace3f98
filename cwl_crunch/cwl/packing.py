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
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any
from urllib.parse import urldefrag


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
