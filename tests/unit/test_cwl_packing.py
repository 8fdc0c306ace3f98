"""The packed workflow keeps outputs that share their name with an input (cwl_crunch.cwl.packing)."""

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
