"""A YAML or JSON document as a tree of values that remember their line and column.

``yaml.compose`` keeps a mark on every node; the plant model's validation reports each issue
at the node it is about, so a user reads ``plant.yaml:12:9: ...`` rather than a path to
count by hand. Anchors and aliases are refused (an alias bomb would otherwise expand here),
and so are duplicate keys, which YAML would silently let the last one win.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

from plantstream.errors import InvalidModelError

MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32


@dataclass(slots=True)
class Located:
    """A value (a scalar, a list of ``Located`` or a dict of them) and where it starts.

    ``raw`` is a scalar's text as written: identifiers and names are read from it, so YAML 1.1
    cannot turn a state called ``on`` into ``True`` or a machine ``007`` into ``7``.
    """

    value: Any
    line: int
    column: int
    raw: str | None = None
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)  # where each key is written


def parse_document(text: str | bytes, *, source: str, fmt: str | None = None) -> Located:
    """``text`` parsed as YAML (or JSON: ``fmt="json"`` or a ``.json`` source), with marks."""
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            _fail(source, 1, 1, f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            _fail(source, 1, 1, "the document is not UTF-8")
    if len(text) > MAX_DOCUMENT_BYTES:
        _fail(source, 1, 1, f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    if fmt == "json" or (fmt is None and source.lower().endswith(".json")):
        try:
            json.loads(text)  # strict JSON first: YAML would accept what JSON does not
        except json.JSONDecodeError as exc:
            _fail(source, exc.lineno, exc.colno, f"not valid JSON: {exc.msg}")
        except RecursionError:  # json raises it, not JSONDecodeError, for deep nesting
            _fail(source, 1, 1, f"not valid JSON: nested deeper than {MAX_DEPTH} levels")
        text = text.replace("\t", " ")  # JSON allows tabs between tokens, YAML does not
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        _fail(source, line, column, f"not valid YAML: {exc.problem or exc.context}")
    except (yaml.YAMLError, RecursionError) as exc:
        _fail(source, 1, 1, f"not valid YAML: {type(exc).__name__}")
    if node is None:
        _fail(source, 1, 1, "the document is empty")
    return _Converter(source).convert(node, 0)


class _Converter:
    def __init__(self, source: str) -> None:
        self.source = source
        self.seen: set[int] = set()
        self.loader = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, depth: int) -> Located:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if id(node) in self.seen:
            _fail(self.source, line, column, "anchors and aliases are not supported")
        self.seen.add(id(node))
        if depth > MAX_DEPTH:
            _fail(self.source, line, column, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.SequenceNode):
            items = [self.convert(item, depth + 1) for item in node.value]
            return Located(items, line, column)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, depth, line, column)
        try:
            value = self.loader.construct_object(node)
        except yaml.YAMLError:
            _fail(self.source, line, column, f"a value of the unsupported type {node.tag!r}")
        return Located(value, line, column, raw=str(node.value))

    def _mapping(self, node: yaml.MappingNode, depth: int, line: int, column: int) -> Located:
        values: dict[str, Located] = {}
        keys: dict[str, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key_node.tag == "tag:yaml.org,2002:merge":
                _fail(self.source, *where, "merge keys (<<) are not supported")
            if not isinstance(key_node, yaml.ScalarNode):
                _fail(self.source, *where, "a key must be a plain name")
            key = str(key_node.value)
            if key in values:
                first = keys[key][0]
                _fail(self.source, *where, f"key {key!r} appears twice (first on line {first})")
            keys[key] = where
            if id(value_node) in self.seen:  # said where the alias is, not where its anchor is
                _fail(self.source, *where, "anchors and aliases are not supported")
            values[key] = self.convert(value_node, depth + 1)
        return Located(values, line, column, keys=keys)


def _fail(source: str, line: int, column: int, message: str) -> NoReturn:
    raise InvalidModelError(source, [(line, column, "", message)])


__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_BYTES", "Located", "parse_document"]
