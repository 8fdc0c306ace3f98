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


def _generated_workflow(directory: Path, steps: int) -> Path:
    """A chain of `steps` steps running a tool file, with an inline tool, a nested workflow and a
    scatter: references of every kind the packer rewrites (sources, outputSource, run, ids)."""
    (directory / "tool.cwl").write_text(json.dumps({
        "cwlVersion": "v1.2", "class": "CommandLineTool", "baseCommand": ["cat"],
        "inputs": {"prev": {"type": "File", "inputBinding": {"position": 1}}, "line": "string"},
        "stdout": "out.txt", "outputs": {"out": "stdout"}}))
    chain = {f"step{i}": {"run": "tool.cwl", "in": {"prev": f"step{i - 1}/out" if i > 1 else "seed",
                                                     "line": {"default": f"line {i}"}}, "out": ["out"]}
             for i in range(1, steps + 1)}
    inner = {"class": "Workflow", "inputs": {"files": "File[]"}, "outputs": {"all": {
        "type": "File[]", "outputSource": "each/out"}}, "requirements": {"ScatterFeatureRequirement": {}},
        "steps": {"each": {"run": "tool.cwl", "scatter": "prev", "in": {"prev": "files", "line": {"default": "x"}},
                           "out": ["out"]}}}
    chain["nested"] = {"run": inner, "in": {"files": {"source": [f"step{steps}/out", "seed"]}}, "out": ["all"]}
    chain["inline"] = {"run": {"class": "ExpressionTool", "requirements": {"InlineJavascriptRequirement": {}},
                               "inputs": {"f": "File"}, "outputs": {"g": "File"}, "expression": "${return {g: inputs.f};}"},
                       "in": {"f": f"step{steps}/out"}, "out": ["g"]}
    workflow = directory / "workflow.cwl"
    workflow.write_text(json.dumps({
        "cwlVersion": "v1.2", "class": "Workflow",
        "requirements": {"SubworkflowFeatureRequirement": {}, "MultipleInputFeatureRequirement": {}},
        "inputs": {"seed": "File"}, "steps": chain,
        "outputs": {"last": {"type": "File", "outputSource": f"step{steps}/out"},
                    "all": {"type": "File[]", "outputSource": "nested/all"},
                    "same": {"type": "File", "outputSource": "inline/g"}}}))
    return workflow


def _pack_both(workflow: Path, monkeypatch) -> tuple[object, object, int]:
    """cwltool's `--pack` output and ours, and how many walks cwltool's own rewrite made for ours."""
    import cwltool.pack

    from cwl_crunch.cwl.packing import packed

    def loaded():
        loading, document, uri = fetch_document(str(workflow), LoadingContext())
        return resolve_and_validate_document(loading, document, uri)

    theirs = json.loads(print_pack(*loaded()))
    walks = []
    original = cwltool.pack.replace_refs
    monkeypatch.setattr(cwltool.pack, "replace_refs", lambda *args: walks.append(1) or original(*args))
    ours = packed(*loaded())
    return theirs, ours, len(walks)


def test_packing_in_one_walk_gives_what_cwltools_packer_gives(tmp_path: Path, monkeypatch) -> None:
    theirs, ours, cwltool_walks = _pack_both(_generated_workflow(tmp_path, 30), monkeypatch)
    assert ours == theirs
    assert cwltool_walks == 0  # every series of rewrites was done in single walks
    main = next(p for p in ours["$graph"] if p["id"] == "#main")
    assert {o["outputSource"] for o in main["outputs"]} == {"#main/step30/out", "#main/nested/all", "#main/inline/g"}


def test_packing_a_workflow_whose_outputs_share_input_names_matches_cwltool(monkeypatch) -> None:
    theirs, ours, _ = _pack_both(WORKFLOW, monkeypatch)
    assert ours == theirs


def test_packing_a_packed_workflow_again_matches_cwltool(tmp_path: Path, monkeypatch) -> None:
    """Ids of an already packed document start with the new names: the packer treats them apart."""
    first, _, _ = _pack_both(_generated_workflow(tmp_path, 5), monkeypatch)
    again = tmp_path / "packed.cwl"
    again.write_text(json.dumps(first))
    theirs, ours, _ = _pack_both(again, monkeypatch)
    assert ours == theirs


def test_the_runner_reads_the_packed_document_as_json_into_what_cwltools_loader_makes_of_it(
        tmp_path: Path, monkeypatch) -> None:
    import cwltool.main
    from cwltool.load_tool import fetch_document as cwltools_fetch

    from cwl_crunch.cwl.packing import read_packed_as_json

    packed, tool = _load_and_pack()
    packed_file = tmp_path / "workflow.json"
    packed_file.write_text(json.dumps(restore_lost_outputs(packed, tool)))
    other_file = tmp_path / "other.json"
    other_file.write_text(packed_file.read_text())
    monkeypatch.setattr(cwltool.main, "fetch_document", cwltool.main.fetch_document)  # put back afterwards
    read_packed_as_json(str(packed_file))

    target = packed_file.as_uri() + "#main"  # what cwltool's main resolves the argument to
    ours_loading, ours, ours_uri = cwltool.main.fetch_document(target, LoadingContext())
    their_loading, theirs, their_uri = cwltools_fetch(target, LoadingContext())
    assert ours_uri == their_uri == packed_file.as_uri() + "#main"
    assert json.loads(json.dumps(ours)) == json.loads(json.dumps(theirs))
    assert ours["id"] == packed_file.as_uri()  # the id the loader gives a document without one
    assert set(ours_loading.loader.idx) == set(their_loading.loader.idx) == {packed_file.as_uri()}
    assert ours.lc.line is None and theirs.lc.line == 0  # read by json, not by the YAML parser

    _, other, _ = cwltool.main.fetch_document(other_file.as_uri() + "#main", LoadingContext())
    assert other.lc.line == 0, "any other document is fetched as usual"
