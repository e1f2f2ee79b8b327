"""YAML loaded with the line and column of every value, so a config error points at its line.

PyYAML's composed nodes carry start marks; this turns a node tree into plain Python data and a
map from each value's path (``("sources", 0, "endpoint")``) to its 1-based line and column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from plantstream.errors import ConfigError

Path_ = tuple[str | int, ...]
Marks = dict[Path_, tuple[int, int]]


def _convert(node: yaml.Node, path: Path_, marks: Marks, where: str) -> Any:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key_node, yaml.ScalarNode) or not isinstance(key, str):
                line = key_node.start_mark.line + 1
                raise ConfigError(f"{where}:{line}: a key must be a plain name")
            if key in out:  # PyYAML keeps the last one silently; a config must not
                line = key_node.start_mark.line + 1
                raise ConfigError(f"{where}:{line}: {key!r} is given twice")
            out[key] = _convert(value_node, (*path, key), marks, where)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), marks, where) for i, item in enumerate(node.value)]
    return yaml.SafeLoader(  # a scalar: resolved exactly as safe_load would (int, bool, ...)
        ""
    ).construct_object(node)


def load_with_marks(text: str, *, where: str) -> tuple[Any, Marks]:
    """Parse ``text`` (safe YAML only); (data, marks). ``where`` names the file in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}{line}: not valid YAML: {problem}") from None
    marks: Marks = {}
    if node is None:
        return {}, marks
    return _convert(node, (), marks, where), marks


def read_with_marks(path: Path) -> tuple[Any, Marks]:
    """``load_with_marks`` of a file; a missing or unreadable file is a ``ConfigError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from None
    return load_with_marks(text, where=str(path))


def locate(marks: Marks, loc: Sequence[str | int]) -> tuple[int, int] | None:
    """The mark of the deepest known prefix of ``loc`` (a missing key points at its parent)."""
    parts = tuple(loc)
    while parts:
        if parts in marks:
            return marks[parts]
        parts = parts[:-1]
    return marks.get(())
