"""Loaded CWL documents that are cheap to deep-copy.

cwltool deep-copies a workflow's documents many times while building its tool objects: each
step copies its own definition, the tool it runs, that tool's inputs, the requirements it
inherits. The documents are ruamel.yaml's CommentedMap and CommentedSeq, whose deep copy also
deep-copies each node's YAML attributes (line and column numbers, comments), and does it without
the copy's memo (and, for a sequence, once per item). On a 50-step workflow that was over half of
building the tool tree, in the client and again in the runner.

`make_cheap_to_copy` turns a loaded document's nodes, in place, into subclasses whose deep copy
copies the contents and shares those attributes. They describe where the original text was, so
a copy may point at the same place; nothing in cwltool or schema-salad changes them on a copy.
Error messages keep their line numbers. The input object gets the same treatment: the workflow
copies it whole, and so does a step reading an input from it, and ruamel.yaml (0.19) copies a
sequence's attributes once per item, every time with the line and column numbers of all its
items: 500 inputs `xs: [0, 1, …]` cost the runner 0.9 s before it could submit its first step.

`share_array_data_in_item_bindings` removes a copy that grows with the square of an array's length:
see there.
"""

from __future__ import annotations

import copy
from collections.abc import MutableMapping, MutableSequence
from typing import Any

from cwltool import builder
from ruamel.yaml.comments import (
    Anchor,
    Comment,
    CommentedMap,
    CommentedSeq,
    Format,
    LineCol,
    Tag,
    merge_attrib,
)

_YAML_ATTRIBUTES = (Comment.attrib, Format.attrib, LineCol.attrib, Anchor.attrib, Tag.attrib, merge_attrib)


def _share_yaml_attributes(source: Any, target: Any) -> None:
    for name in _YAML_ATTRIBUTES:
        if hasattr(source, name):
            setattr(target, name, getattr(source, name))


class CheapMap(CommentedMap):
    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> CheapMap:
        copied = CheapMap()
        memo[id(self)] = copied
        for key, value in self.items():
            copied[key] = copy.deepcopy(value, memo)
        _share_yaml_attributes(self, copied)
        return copied


class CheapSeq(CommentedSeq):
    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> CheapSeq:
        copied = CheapSeq()
        memo[id(self)] = copied
        copied.extend(copy.deepcopy(item, memo) for item in self)
        _share_yaml_attributes(self, copied)
        return copied


def make_cheap_to_copy(document: Any) -> None:
    """Turn every CommentedMap and CommentedSeq in `document` into its cheap-to-copy kind, in
    place (the objects stay the same ones: whatever refers to them sees the change). A node
    already turned is skipped with all below it."""
    pending = [document]
    while pending:
        node = pending.pop()
        kind = type(node)
        if kind is CommentedMap:
            node.__class__ = CheapMap
            pending.extend(value for value in node.values() if isinstance(value, (dict, list)))
        elif kind is CommentedSeq:
            node.__class__ = CheapSeq
            pending.extend(item for item in node if isinstance(item, (dict, list)))
        elif kind is dict:
            pending.extend(value for value in node.values() if isinstance(value, (dict, list)))
        elif kind is list:
            pending.extend(item for item in node if isinstance(item, (dict, list)))


class _ItemBindingCopies:
    """What `cwltool.builder` sees as the `copy` module: the module itself, except that a deep copy
    of an input binding holding an array as its `datum` shares that array instead of copying it.

    cwltool binds each item of an array input with a deep copy of the array's own binding, whose
    `datum` is the whole array, and then sets the copy's `datum` to the item. Copying the array
    is wasted, n times over: a gather step over a 500-way scatter deep-copied 500 Files 500
    times, 1.3 s of the runner before the step could be submitted (cwltool pays it as well).
    That copy is the only one in the module of a mapping with a `datum`.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        if not (isinstance(value, MutableMapping) and isinstance(value.get("datum"), MutableSequence)):
            return copy.deepcopy(value, memo)
        datum = value["datum"]
        value["datum"] = None  # (a binding being built: no other thread sees it)
        try:
            copied = copy.deepcopy(value, memo)
        finally:
            value["datum"] = datum
        copied["datum"] = datum
        return copied


def share_array_data_in_item_bindings() -> None:
    """Install `_ItemBindingCopies` in cwltool's Builder module (once; not over anything but the
    `copy` module, so a cwltool that changed its imports is left as it is)."""
    if builder.__dict__.get("copy") is copy:
        builder.copy = _ItemBindingCopies()  # type: ignore[assignment]
