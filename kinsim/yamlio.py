"""Reading YAML files into raw mappings, with clear errors and ``extends:`` inheritance.

Nothing here knows what a hardware or workload file means; :mod:`kinsim.schema` gives the raw
mapping its meaning.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kinsim.errors import SpecError


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects a key written twice in one mapping (YAML would keep the last)."""


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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, expected a YAML file", file=str(path)) from None
    except UnicodeDecodeError:
        raise SpecError("is not UTF-8 text", file=str(path)) from None
    except OSError as error:
        raise SpecError(f"cannot be read ({error.strerror})", file=str(path)) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
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
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, resolved))
        raise SpecError(f"extends forms a cycle ({cycle})", path="extends", file=str(path))
    data = read_yaml_mapping(path)
    parent_name = data.pop("extends", None)
    if parent_name is None:
        return data
    if not isinstance(parent_name, str) or not parent_name.strip():
        raise SpecError("expected a file name", path="extends", value=parent_name, file=str(path))
    parent_path = path.parent / parent_name
    if not parent_path.is_file():
        raise SpecError("extends a file that does not exist", path="extends", value=parent_name,
                        file=str(path), hint=f"looked for {parent_path}")
    parent = read_with_extends(parent_path, (*_chain, resolved))
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
