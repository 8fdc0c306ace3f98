"""The packed workflow keeps outputs that share their name with an input, and the runner loads it
without resolving it again for every step (cwl_crunch.cwl.packing)."""

from __future__ import annotations

import json
from pathlib import Path

from cwltool.context import LoadingContext
from cwltool.load_tool import fetch_document, make_tool, resolve_and_validate_document
from cwltool.main import print_pack

from cwl_crunch.cwl.packing import restore_lost_outputs

WORKFLOW = Path(__file__).resolve().parents[1] / "data" / "cwl" / "same-name" / "workflow.cwl"


def _load_and_pack() -> tuple[dict, object]:
    loading, document, uri = fetch_document(str(WORKFLOW), LoadingContext())
    loading, uri = resolve_and_validate_document(loading, document, uri)
    tool = make_tool(uri, loading)
    return json.loads(print_pack(loading, uri)), tool


def _tool_outputs(packed: dict) -> list:
    (tool,) = [p for p in packed["$graph"] if p["id"] == "#tool.cwl"]
    return tool["outputs"]


def test_cwltools_packer_loses_the_output_that_shares_an_inputs_name() -> None:
    packed, _ = _load_and_pack()
    assert _tool_outputs(packed) == [{"$import": "#tool.cwl/text"}], "the packer's behaviour changed: revisit packing.py"


def test_the_lost_output_is_restored_from_the_loaded_tool() -> None:
    packed, tool = _load_and_pack()
    (output,) = _tool_outputs(restore_lost_outputs(packed, tool))
    assert output["id"] == "#tool.cwl/text"
    assert output["type"] == "File" and output["outputBinding"] == {"glob": "out.txt"}


def test_a_document_without_the_problem_is_unchanged() -> None:
    packed, tool = _load_and_pack()
    workflow = next(p for p in packed["$graph"] if p["class"] == "Workflow")
    assert restore_lost_outputs(workflow, tool) == workflow


def _load_packed(packed_file: Path, embed: bool, monkeypatch) -> tuple[object, int]:
    """Load a packed document as the runner does (with or without embedding the steps' tools):
    the tool, and how many times cwltool resolved and validated a document on the way."""
    from cwltool import load_tool as cwltool_load_tool
    from cwltool.workflow import default_make_tool

    from cwl_crunch.cwl.packing import embed_step_tools

    calls = []
    original = cwltool_load_tool.resolve_and_validate_document
    monkeypatch.setattr(cwltool_load_tool, "resolve_and_validate_document",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))

    def construct(document, loading):
        if embed and document.get("class") == "Workflow":
            embed_step_tools(document, loading)
        return default_make_tool(document, loading)

    loading = LoadingContext()
    loading.construct_tool_object = construct
    loading, document, uri = fetch_document(packed_file.as_uri() + "#main", loading)
    loading, uri = cwltool_load_tool.resolve_and_validate_document(loading, document, uri)
    return make_tool(uri, loading), len(calls)


def test_the_runner_builds_a_packed_workflows_steps_without_resolving_the_document_again(
        tmp_path: Path, monkeypatch) -> None:
    packed, tool = _load_and_pack()  # two steps, each running a tool from a file of its own
    packed_file = tmp_path / "workflow.json"
    packed_file.write_text(json.dumps(restore_lost_outputs(packed, tool)))

    plain, plain_calls = _load_packed(packed_file, embed=False, monkeypatch=monkeypatch)
    embedded, embedded_calls = _load_packed(packed_file, embed=True, monkeypatch=monkeypatch)
    assert plain_calls == 1 + len(plain.steps)  # cwltool alone: the whole document again per step
    assert embedded_calls == 1
    # The same steps, running the same tools.
    def tools(workflow) -> dict:
        return {step.id: (step.embedded_tool.tool["id"], step.embedded_tool.tool["baseCommand"],
                          [o["id"] for o in step.embedded_tool.tool["outputs"]]) for step in workflow.steps}

    assert tools(embedded) == tools(plain) and len(tools(plain)) == 2
