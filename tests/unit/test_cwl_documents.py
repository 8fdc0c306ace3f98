"""Loaded documents made cheap to copy (cwl_crunch.cwl.documents): copies are whole and
independent, keep their line numbers, and cwltool's errors still point into the user's file."""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cwl_crunch.cwl.documents import CheapMap, CheapSeq, make_cheap_to_copy

DOCUMENT = textwrap.dedent("""\
    class: CommandLineTool
    inputs:
      - id: a
        type: string   # a comment
      - id: b
        type: int
    baseCommand: [echo, hello]
""")


def test_every_node_is_turned_in_place_and_copies_are_whole_and_independent() -> None:
    document = YAML().load(DOCUMENT)
    inputs = document["inputs"]
    shared = CommentedMap(x=CommentedSeq([1, 2]))
    document["twice"] = [shared, shared]  # a plain list holding one node twice
    make_cheap_to_copy(document)

    assert type(document) is CheapMap and document["inputs"] is inputs and type(inputs) is CheapSeq
    assert type(inputs[0]) is CheapMap and type(shared["x"]) is CheapSeq
    copied = copy.deepcopy(document)
    assert copied == document and type(copied["inputs"][1]) is CheapMap
    assert copied["twice"][0] is copied["twice"][1] is not shared  # the memo is honoured
    copied["inputs"][0]["type"] = "File"
    copied["baseCommand"].append("again")
    assert document["inputs"][0]["type"] == "string" and document["baseCommand"] == ["echo", "hello"]
    # Where each node came from travels with its copy.
    assert (copied["inputs"][1].lc.line, copied["inputs"][1].lc.col) == (4, 4)
    assert copied["inputs"].lc.data == document["inputs"].lc.data


def test_turning_twice_changes_nothing() -> None:
    document = YAML().load(DOCUMENT)
    make_cheap_to_copy(document)
    make_cheap_to_copy([document, document["inputs"]])
    assert type(document) is CheapMap and copy.deepcopy(document) == document


def test_an_input_objects_long_sequence_copies_without_copying_its_line_numbers_per_item(monkeypatch) -> None:
    """ruamel.yaml copies a sequence's YAML attributes (with the line and column of every item)
    once per item: quadratic in the length of an input array, which the workflow and the steps
    reading it copy whole. Turned, the copy shares them instead, and is the same sequence."""
    job_order = YAML().load("xs: [" + ", ".join(str(n) for n in range(300)) + "]\n")
    calls = []
    original = CommentedSeq.copy_attributes
    monkeypatch.setattr(CommentedSeq, "copy_attributes", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    copy.deepcopy(job_order)
    assert len(calls) == 300, "ruamel.yaml's own copy: once per item"
    calls.clear()
    make_cheap_to_copy(job_order)
    copied = copy.deepcopy(job_order)
    assert calls == [] and copied == job_order and copied["xs"] == list(range(300))
    assert copied["xs"].lc.data == job_order["xs"].lc.data and copied["xs"].lc.item(299)[1] > 1000


def test_an_invalid_workflow_is_still_reported_at_its_line(tmp_path: Path) -> None:
    workflow = tmp_path / "broken.cwl"
    workflow.write_text(textwrap.dedent("""\
        cwlVersion: v1.2
        class: Workflow
        inputs: {}
        outputs: {}
        steps:
          one:
            run:
              class: CommandLineTool
              inputs: {}
              outputs: {}
              baseCommand: true
              requirements:
                - class: ResourceRequirement
                  ramMin: not-a-number
            in: {}
            out: []
    """))
    with socket.socket() as probe:  # a service nobody answers at: the load fails first, and nothing starts
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    done = subprocess.run([sys.executable, "-m", "cwl_crunch.cwl.main", "--api", nowhere, "--token", "t", str(workflow)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "broken.cwl:14:" in done.stderr, done.stderr  # the line and column of the bad value


ARRAY_TOOL = textwrap.dedent("""\
    cwlVersion: v1.2
    class: CommandLineTool
    baseCommand: echo
    inputs:
      words: {type: "string[]", inputBinding: {position: 1, prefix: -w}}
      joined: {type: "string[]", inputBinding: {position: 2, prefix: -j, itemSeparator: ","}}
      each:
        type: {type: array, items: string, inputBinding: {prefix: -e}}
        inputBinding: {position: 3}
      nested:
        type: {type: array, items: {type: array, items: string}}
        inputBinding: {position: 4}
      files: {type: "File[]", inputBinding: {position: 5}}
    outputs: []
""")


def _command_line(tool_path: Path, job: dict[str, object]) -> list[str]:
    """The command line cwltool builds for `job` (its Builder's bindings, ordered as its job() orders them)."""
    from cwltool.context import LoadingContext, RuntimeContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool

    tool = load_tool(str(tool_path), LoadingContext({"construct_tool_object": default_make_tool}))
    builder = tool._init_job(copy.deepcopy(job), RuntimeContext({"outdir": str(tool_path.parent)}))
    builder.bindings.sort(key=lambda binding: binding["position"])
    return [str(arg) for binding in builder.bindings for arg in builder.generate_arg(binding)]


def test_array_items_are_bound_as_cwltool_binds_them_without_copying_the_array_for_each(tmp_path: Path, monkeypatch) -> None:
    from cwltool import builder

    from cwl_crunch.cwl.documents import share_array_data_in_item_bindings

    tool = tmp_path / "tool.cwl"
    tool.write_text(ARRAY_TOOL)
    files = []
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
        files.append({"class": "File", "location": (tmp_path / name).as_uri(), "path": str(tmp_path / name)})
    job = {"words": ["x", "y"], "joined": ["p", "q"], "each": ["e1", "e2"], "nested": [["n1", "n2"], ["n3"]],
           "files": files}
    big = {**job, "words": [f"w{i}" for i in range(300)]}

    copied = 0  # strings deep-copied (copy's own recursion is reached through its dispatch table)
    atomic = copy._deepcopy_dispatch[str]

    def counted(value, memo):  # type: ignore[no-untyped-def]
        nonlocal copied
        copied += 1
        return atomic(value, memo)

    monkeypatch.setattr(builder, "copy", copy)  # cwltool as it comes
    expected = _command_line(tool, job)
    monkeypatch.setitem(copy._deepcopy_dispatch, str, counted)
    _command_line(tool, big)
    cwltool_copies, copied = copied, 0

    share_array_data_in_item_bindings()
    assert builder.copy is not copy
    assert _command_line(tool, big)[:3] == ["echo", "-w", "w0"]
    ours = copied
    assert _command_line(tool, job) == expected
    assert expected[:12] == ["echo", "-w", "x", "y", "-j", "p,q", "-e", "e1", "-e", "e2", "n1", "n2"]
    assert cwltool_copies > 300 * 300  # each of the 300 items copied the 300-item array
    assert ours < cwltool_copies / 20, (ours, cwltool_copies)
