"""Reading YAML files into raw mappings, with clear errors and ``extends:`` inheritance.

Nothing here knows what a hardware or workload file means; :mod:`kinsim.schema` gives the raw
mapping its meaning.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kinsim.errors import SpecError
from kinsim.limits import MAX_NESTING, MAX_YAML_VALUES
from kinsim.reading import read_text, resolved

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects a key written twice in one mapping (YAML would keep the last), nesting
    deeper than :data:`~kinsim.limits.MAX_NESTING` and documents whose aliases expand to more than
    :data:`~kinsim.limits.MAX_YAML_VALUES` values (or refer to themselves), and that reads a date
    (``2024-01-01``) as the string it is written as: no kinsim key takes a date."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None, None, f"lists and mappings nest more than {MAX_NESTING} deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_expansion(node)
        return node


_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_constructor(_TIMESTAMP_TAG, yaml.SafeLoader.construct_yaml_str)



def _refuse_tag(loader: _UniqueKeyLoader, node: yaml.Node):
    raise yaml.constructor.ConstructorError(
        None, None, f"{node.tag.rsplit(':', 1)[-1]} values (!!{node.tag.rsplit(':', 1)[-1]}) are not used by kinsim; "
        "write a plain list, mapping or string", node.start_mark)


for _kind in ("set", "binary", "omap", "pairs"):  # values that are no plain list, mapping, string or number
    _UniqueKeyLoader.add_constructor(f"tag:yaml.org,2002:{_kind}", _refuse_tag)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node | None) -> None:
    """Refuse a document whose aliases expand it beyond :data:`MAX_YAML_VALUES` values or
    :data:`MAX_NESTING` levels, or make a value contain itself. Each node is visited once (an alias is the
    node it names), without recursion, so the check costs the size of the text, not of the expansion."""
    if root is None:
        return
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once expanded
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = [sizes[id(c)] for c in _children(node)]
            size = 1 + sum(s for s, _ in children)
            depth = 1 + max((d for _, d in children), default=0)
            open_nodes.discard(key)
            if size > MAX_YAML_VALUES:
                raise yaml.composer.ComposerError(
                    None, None, f"its aliases expand to more than {MAX_YAML_VALUES:,} values", node.start_mark)
            if depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None, None, f"its aliases make lists and mappings nest more than {MAX_NESTING} deep",
                    node.start_mark)
            sizes[key] = (size, depth)
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a value that contains it",
                                              node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def load_yaml_text(text: str) -> Any:
    """YAML ``text`` read with kinsim's loader (the bounds and rules of :class:`_UniqueKeyLoader`); raises
    ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:  # `<<: *anchor` merges; its keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a plain value, not {type(key).__name__}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; every failure is a :class:`SpecError`
    naming the file (and the line, for syntax errors)."""
    path = Path(path)
    text = read_text(path, "yaml")
    try:
        data = load_yaml_text(text)
    except RecursionError:
        raise SpecError(f"lists and mappings nest more than {MAX_NESTING} deep", file=str(path)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(f"is not valid YAML: {problem}", path=where, file=str(path)) from None
    if data is None:
        raise SpecError("is empty, expected a mapping of keys to values", file=str(path))
    if not isinstance(data, dict):
        raise SpecError("expected a mapping of keys to values at the top level", value=data,
                        file=str(path))
    for key in data:
        if not isinstance(key, str):
            raise SpecError("keys must be strings", value=key, file=str(path))
    return data


def read_with_extends(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path`` and, when it has ``extends: OTHER.yaml`` (relative to its own folder), deep-merge
    it over OTHER, recursively. A cycle of ``extends`` is an error naming the files in it."""
    path = Path(path)
    here = resolved(path)
    if here in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, here))
        raise SpecError(f"extends forms a cycle ({cycle})", path="extends", file=str(path))
    data = read_yaml_mapping(path)
    parent_name = data.pop("extends", None)
    if parent_name is None:
        return data
    if not isinstance(parent_name, str) or not parent_name.strip():
        raise SpecError("expected a file name", path="extends", value=parent_name, file=str(path))
    parent_path = path.parent / parent_name
    if not os.path.lexists(parent_path):  # anything else there (a FIFO, a link loop) is refused on reading
        raise SpecError("extends a file that does not exist", path="extends", value=parent_name,
                        file=str(path), hint=f"looked for {parent_path}")
    parent = read_with_extends(parent_path, (*_chain, here))
    return deep_merge(parent, data)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, anything else in ``top`` replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
