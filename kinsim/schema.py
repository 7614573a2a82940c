"""One declarative schema for every spec kinsim reads: frozen dataclasses whose fields say their unit,
rule and meaning.

A spec class is a frozen dataclass whose fields are made with :func:`spec_field`. That one declaration
serves four purposes, so they cannot drift apart:

* :func:`build` turns a raw mapping (parsed YAML) into the dataclass, parsing quantities with units,
  rejecting unknown keys (and listing the allowed ones) and naming the key path of every error;
* ``__post_init__`` (via :func:`check_fields`) applies each field's rule, so a spec built in Python is
  validated exactly like one read from YAML;
* :func:`to_raw` writes a spec back to a lossless mapping, which makes validated copies with overrides
  (:func:`with_overrides`) and content hashes possible;
* :func:`iter_keys` lists every key with its unit and meaning, from which ``docs/file-formats.md`` is
  generated and checked.

Supported field types: ``str``, ``int``, ``float`` (a plain number, or a quantity when the field has a
``unit``), ``bool``, nested spec classes, ``X | None``, ``tuple[X, ...]`` (a YAML list), ``dict[str, X]``
and a union of spec classes told apart by a tag key (``policy: block_topk``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Union

import yaml

from kinsim.errors import SpecError
from kinsim.limits import MAX_INT
from kinsim.units import exact_quantity, format_quantity, parse_quantity
from kinsim.yamlio import load_yaml_text

Check = Callable[[Any], "str | None"]


# ----------------------------------------------------------------------------------------- rules

def positive(value: float) -> str | None:
    return None if value > 0 else "must be positive"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


def fraction(value: float) -> str | None:
    """A share in (0, 1]."""
    return None if 0 < value <= 1 else "must be in (0, 1]"


def at_least(bound: float) -> Check:
    def rule(value: float) -> str | None:
        return None if value >= bound else f"must be at least {bound:g}"

    rule.__name__ = f"at_least_{bound:g}"
    return rule


def at_most(bound: float, why: str) -> Check:
    """A cap from :mod:`kinsim.limits`; ``why`` says what it guards in the message."""
    def rule(value: float) -> str | None:
        return None if value <= bound else f"must be at most {bound:,} ({why})"

    rule.__name__ = f"at_most_{bound:g}"
    return rule


def one_of(*choices: str) -> Check:
    def rule(value: str) -> str | None:
        return None if value in choices else "must be one of " + ", ".join(choices)

    rule.__name__ = "one_of"
    return rule


def power_of_two(value: int) -> str | None:
    return None if value > 0 and value & (value - 1) == 0 else "must be a power of two"


def non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


# ----------------------------------------------------------------------------------------- fields

def spec_field(
    doc: str,
    *,
    unit: str | None = None,
    default: Any = dataclasses.MISSING,
    check: Check | tuple[Check, ...] | None = None,
    choices: tuple[str, ...] | None = None,
    tag: str | None = None,
    shorthand: Callable[[Any], Any] | None = None,
    example: str | None = None,
    words: str | None = None,
) -> Any:
    """Declare a spec field.

    Args:
        doc: one sentence saying what the key means (shown in the file-format reference).
        unit: quantity kind (see :mod:`kinsim.units`) when the YAML value is a string with a unit; the
            field then holds a float in SI base units. For a ``dict`` or ``tuple`` field it applies to
            the elements.
        default: value when the key is absent; without one the key is required.
        check: rule(s) applied to the value (or to each element of a collection).
        choices: the allowed strings.
        tag: for a union of spec classes, the key whose value selects the class (each class has a
            ``KIND`` class attribute).
        shorthand: turns a non-mapping YAML value into the mapping it abbreviates (``150`` into
            ``{dist: constant, value: 150}``); it returns None when it does not apply.
        example: a typical value as written in a file (``"50 MB"`` for an L2 cache), shown in the
            file-format reference; without one a quantity shows its kind's example (``"4 us"``).
        words: how the reference names the field's type where its annotation cannot (an ``Any`` field,
            which takes a value of more than one kind and checks it with ``check``).
    """
    checks = () if check is None else (check if isinstance(check, tuple) else (check,))
    metadata = {"doc": doc, "unit": unit, "checks": checks, "choices": choices, "tag": tag,
                "shorthand": shorthand, "example": example,
                "words": words}
    if isinstance(default, (dict, list)):
        frozen_default = default
        return dataclasses.field(default_factory=lambda: type(frozen_default)(frozen_default),
                                 metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_fields(spec: Any) -> None:
    """Apply every field's rules to a spec instance; raise :class:`SpecError` naming the field.

    Called from each spec class's ``__post_init__``. Plain ints given for float fields are stored as
    floats, so that specs built in Python compare equal to specs read from YAML.
    """
    hints = _hints(type(spec))
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        tp = hints[f.name]
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(spec, f.name, float(value))
            value = float(value)
        if value is None:
            continue
        for element_path, element in _elements(f.name, value):
            _check_value(element, f.metadata, element_path)


def _elements(name: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, element in value.items():
            yield f"{name}.{key}", element
    elif isinstance(value, tuple):
        for i, element in enumerate(value):
            yield f"{name}[{i}]", element
    else:
        yield name, value


def _check_value(value: Any, metadata: Mapping[str, Any], path: str) -> None:
    if dataclasses.is_dataclass(value):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError("must be finite", path=path, value=value)
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise SpecError("must be one of " + ", ".join(choices), path=path, value=value)
    for rule in metadata.get("checks", ()):
        broken = rule(value)
        if broken:
            raise SpecError(broken, path=path, value=_shown(value, metadata))


def _shown(value: Any, metadata: Mapping[str, Any]) -> Any:
    """Show an SI float back in its unit in messages ("-3.35 TB/s" reads better than -3.35e12)."""
    unit = metadata.get("unit")
    if unit and isinstance(value, float):
        return format_quantity(unit, value)
    return value


# ----------------------------------------------------------------------------------------- build

def build(cls: type, raw: Any, *, path: str = "", file: str | None = None) -> Any:
    """Build spec class ``cls`` from a raw mapping, naming ``file`` and the key path in any error."""
    if not isinstance(raw, Mapping):
        raise SpecError("expected a mapping of keys to values", path=path, value=raw, file=file)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    tag_key = getattr(cls, "TAG_KEY", None)
    allowed = set(fields) | ({tag_key} if tag_key else set())
    for key in raw:
        if key not in allowed:
            raise SpecError(
                f"unknown key {key!r}", path=path, file=file,
                hint="allowed keys here: " + ", ".join(sorted(allowed)),
            )
    kwargs = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in raw:
            kwargs[name] = _convert(hints[name], f.metadata, raw[name], key_path, file)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError("missing required key", path=key_path, file=file,
                            hint=f.metadata.get("doc"))
    try:
        return cls(**kwargs)
    except SpecError as error:
        raise error.within(path, file) from None


def _convert(tp: Any, metadata: Mapping[str, Any], value: Any, path: str, file: str | None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if value is None:
            if len(members) < len(args):
                return None
            raise SpecError("must not be empty", path=path, value=value, file=file)
        if len(members) == 1:
            return _convert(members[0], metadata, value, path, file)
        return _convert_variant(members, metadata, value, path, file)
    if dataclasses.is_dataclass(tp):
        value = _expand_shorthand(metadata, value)
        return build(tp, value, path=path, file=file)
    if origin is tuple:
        if not isinstance(value, list):
            raise SpecError("expected a list", path=path, value=value, file=file)
        return tuple(_convert(args[0], metadata, v, f"{path}[{i}]", file) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SpecError("expected a mapping", path=path, value=value, file=file)
        return {str(k): _convert(args[1], metadata, v, _join(path, str(k)), file) for k, v in value.items()}
    return _convert_scalar(tp, metadata, value, path, file)


def _convert_variant(members, metadata, value, path, file):
    value = _expand_shorthand(metadata, value)
    tag = metadata.get("tag")
    if tag is None:
        raise TypeError(f"{path}: a union of spec classes needs spec_field(tag=...)")
    by_kind = {m.KIND: m for m in members}
    if not isinstance(value, Mapping):
        raise SpecError("expected a mapping of keys to values", path=path, value=value, file=file)
    if tag not in value:
        raise SpecError("missing required key", path=_join(path, tag), file=file,
                        hint="one of " + ", ".join(by_kind))
    kind = value[tag]
    if not isinstance(kind, str) or kind not in by_kind:  # a list or mapping here is no tag (nor hashable)
        raise SpecError("must be one of " + ", ".join(by_kind), path=_join(path, tag), value=kind,
                        file=file)
    return build(by_kind[kind], value, path=path, file=file)


def _expand_shorthand(metadata: Mapping[str, Any], value: Any) -> Any:
    expand = metadata.get("shorthand")
    if expand is not None and not isinstance(value, Mapping):
        expanded = expand(value)
        if expanded is not None:
            return expanded
    return value


def _convert_scalar(tp: Any, metadata: Mapping[str, Any], value: Any, path: str, file: str | None) -> Any:
    unit = metadata.get("unit")
    if tp is float and unit:
        return parse_quantity(unit, value, path=path, file=file)
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError("expected true or false", path=path, value=value, file=file)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError("expected a whole number", path=path, value=value, file=file)
        if abs(value) > MAX_INT:
            raise SpecError(f"must fit a 64-bit integer (at most {MAX_INT:,})", path=path, value=value, file=file)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError("expected a number", path=path, value=value, file=file)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SpecError("expected a string", path=path, value=value, file=file)
        return value
    if tp is Any:
        return value
    raise TypeError(f"{path}: unsupported spec field type {tp!r}")


# ----------------------------------------------------------------------------------------- to_raw

def to_raw(spec: Any) -> dict[str, Any]:
    """A lossless mapping of ``spec``: ``build(type(spec), to_raw(spec)) == spec``.

    Quantities are written in their SI base unit with every digit (``"3350000000000.0 B/s"``)."""
    out: dict[str, Any] = {}
    tag_key = getattr(type(spec), "TAG_KEY", None)
    if tag_key:
        out[tag_key] = type(spec).KIND
    for f in dataclasses.fields(spec):
        if f.init:
            out[f.name] = _raw_value(getattr(spec, f.name), f.metadata.get("unit"))
    return out


def _raw_value(value: Any, unit: str | None) -> Any:
    if dataclasses.is_dataclass(value):
        return to_raw(value)
    if isinstance(value, tuple):
        return [_raw_value(v, unit) for v in value]
    if isinstance(value, dict):
        return {k: _raw_value(v, unit) for k, v in value.items()}
    if unit and isinstance(value, float):
        return exact_quantity(unit, value)
    return value


# ----------------------------------------------------------------------------------------- overrides

def parse_override(text: str) -> tuple[str, Any]:
    """Split a command-line override ``KEY=VALUE``; the value is read as YAML (``2`` is a number,
    ``"6.7 TB/s"`` a string, ``true`` a boolean)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("expected an override like gpu.memory.bandwidth=\"6.7 TB/s\"", path="--set",
                        value=text)
    try:
        parsed = load_yaml_text(value) if value.strip() else ""
    except (yaml.YAMLError, RecursionError):
        parsed = value
    return key.strip(), parsed


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any],
                    file: str | None = None) -> dict[str, Any]:
    """A deep copy of ``raw`` with each dotted key of ``overrides`` set (intermediate mappings are
    created). Whether the key exists is checked when the result is built."""
    out = copy.deepcopy(dict(raw))
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise SpecError("cannot set a key inside a value that is not a mapping",
                                path=".".join(parts[: depth + 1]), value=child, file=file,
                                hint=f"override {'.'.join(parts[: depth + 1])} itself")
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out


def with_overrides(spec: Any, overrides: Mapping[str, Any]) -> Any:
    """A validated copy of ``spec`` with dotted-key overrides, e.g.
    ``with_overrides(hw, {"gpu.memory.bandwidth": "6.7 TB/s"})``. Values are written as in YAML."""
    return build(type(spec), apply_overrides(to_raw(spec), overrides))


# ----------------------------------------------------------------------------------------- keys

@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One documented key: its dotted path, type in words, unit, whether required, default, meaning, and a
    typical value (``None``: none declared)."""

    path: str
    type: str
    unit: str | None
    required: bool
    default: Any
    doc: str
    example: str | None = None


def iter_keys(cls: type, prefix: str = "", skip: Callable[[type], bool] = lambda c: False) -> Iterator[KeyDoc]:
    """Every key a spec class accepts, depth first, with nested classes expanded. For a tagged union
    each variant's keys are listed after its tag key, so a path may appear once per variant. Classes
    for which ``skip`` is true are not expanded (they are documented elsewhere)."""
    hints = _hints(cls)
    tag_key = getattr(cls, "TAG_KEY", None)
    if tag_key:
        summary = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        summary = " ".join(summary.split())
        yield KeyDoc(f"{_join(prefix, tag_key)}: {cls.KIND}", "variant", None, True, None, summary)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = _join(prefix, f.name)
        tp = hints[f.name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING
                                          else f.default_factory())
        yield KeyDoc(path, _type_words(tp, f.metadata), f.metadata.get("unit"), required, default,
                     f.metadata["doc"], f.metadata.get("example"))
        for nested_prefix, nested in _nested_classes(tp, path):
            if not skip(nested):
                yield from iter_keys(nested, nested_prefix, skip)


def _nested_classes(tp: Any, path: str) -> Iterator[tuple[str, type]]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        yield path, tp
    elif origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        for m in members:
            yield from _nested_classes(m, path)
    elif origin is dict and dataclasses.is_dataclass(args[1]):
        yield f"{path}.<name>", args[1]
    elif origin is tuple and dataclasses.is_dataclass(args[0]):
        yield f"{path}[]", args[0]


def _type_words(tp: Any, metadata: Mapping[str, Any]) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    unit = metadata.get("unit")
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _type_words(members[0], metadata) + " or null"
        return "one of: " + ", ".join(f"`{m.KIND}`" for m in members)
    if dataclasses.is_dataclass(tp):
        return "mapping"
    if tp is Any:
        return metadata.get("words") or "any value"
    if origin is tuple:
        return f"list of {_type_words(args[0], metadata)}"
    if origin is dict:
        return f"mapping of name to {_type_words(args[1], metadata)}"
    if tp is float and unit:
        return unit.replace("_", " ")
    if metadata.get("choices"):
        return "one of: " + ", ".join(f"`{c}`" for c in metadata["choices"])
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


# ----------------------------------------------------------------------------------------- helpers

def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a spec class (cached: classes do not change at run time)."""
    return typing.get_type_hints(cls)
