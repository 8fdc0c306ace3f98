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
