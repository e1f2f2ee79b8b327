"""Reading typed fields out of a located document, collecting every issue with its line.

The plant model's validation (``model.plantfile``) asks for "a mapping with these keys",
"an identifier", "a number" and so on; each question that fails adds one issue at the node
concerned and answers None, so one pass reports everything wrong with a file.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar

from plantstream.errors import InvalidInputError, InvalidModelError
from plantstream.model.located import Located
from plantstream.model.readings import check_id

E = TypeVar("E", bound=StrEnum)
MAX_ISSUES = 100
Issue = tuple[int, int, str, str]  # line, column, path, message


class Fields:
    """The issue collector and the typed readers of one document."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[Issue] = []
        self.warnings: list[Issue] = []

    def fail(self, at: Located | tuple[int, int], path: str, message: str) -> None:
        if len(self.issues) < MAX_ISSUES:
            line, column = (at.line, at.column) if isinstance(at, Located) else at
            self.issues.append((line, column, path, f"{path}: {message}" if path else message))

    def warn(self, at: Located, path: str, message: str) -> None:
        if len(self.warnings) < MAX_ISSUES:
            self.warnings.append((at.line, at.column, path, f"{path}: {message}"))

    def raise_if_any(self) -> None:
        if self.issues:
            raise InvalidModelError(self.source, sorted(self.issues))

    def mapping(
        self, node: Located, path: str, allowed: Iterable[str], required: Iterable[str] = ()
    ) -> dict[str, Located] | None:
        """The keys of a mapping; unknown keys and missing required ones are issues."""
        if not isinstance(node.value, dict):
            self.fail(node, path, "expected a mapping (key: value)")
            return None
        allowed = tuple(allowed)
        for key, where in node.keys.items():
            if key not in allowed:
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = (
                    f"; did you mean {near[0]!r}?" if near else f"; expected {', '.join(allowed)}"
                )
                self.fail(where, path, f"unknown key {key[:40]!r}{hint}")
        for key in required:
            if key not in node.value:
                self.fail(node, path, f"{key!r} is required")
        return {k: v for k, v in node.value.items() if k in allowed}

    def sequence(self, node: Located | None, path: str, limit: int) -> list[Located]:
        if node is None or node.value is None:
            return []
        if not isinstance(node.value, list):
            self.fail(node, path, "expected a list")
            return []
        if len(node.value) > limit:
            self.fail(node, path, f"more than {limit} entries")
            return []
        return list(node.value)

    def text(self, node: Located | None, path: str, *, limit: int) -> str:
        """A scalar's text as written ('' when absent or null)."""
        if node is None or node.value is None:
            return ""
        if node.raw is None:
            self.fail(node, path, "expected a text value")
            return ""
        if len(node.raw) > limit:
            self.fail(node, path, f"longer than {limit} characters")
            return ""
        if not node.raw.isprintable():
            self.fail(node, path, "holds control characters")
            return ""
        return node.raw

    def ident(self, node: Located | None, path: str, what: str) -> str | None:
        if node is None or node.value is None:
            return None
        value = self.text(node, path, limit=64)
        try:
            check_id(value, what)
        except InvalidInputError as exc:
            self.fail(node, path, f"{value[:64]!r} is not a valid id: {exc.message}")
            return None
        return value

    def choice(self, node: Located | None, path: str, enum: type[E]) -> E | None:
        if node is None or node.value is None:
            return None
        value = self.text(node, path, limit=32)
        try:
            return enum(value)
        except ValueError:
            names = ", ".join(member.value for member in enum)
            self.fail(node, path, f"{value[:32]!r} is not one of {names}")
            return None

    def number(self, node: Located | None, path: str) -> float | None:
        if node is None or node.value is None:
            return None
        value = node.value
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(node, path, "expected a finite number")
            return None
        return float(value)

    def integer(self, node: Located | None, path: str, low: int, high: int) -> int | None:
        if node is None or node.value is None:
            return None
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, path, "expected a whole number")
            return None
        if not low <= value <= high:
            self.fail(node, path, f"must be between {low} and {high}")
            return None
        return value

    def texts(self, node: Located | None, path: str, *, limit: int, each: int) -> list[str]:
        """A list of short texts, each once."""
        out: list[str] = []
        for i, item in enumerate(self.sequence(node, path, limit)):
            value = self.text(item, f"{path}[{i}]", limit=each)
            if not value:
                self.fail(item, f"{path}[{i}]", "must not be empty")
            elif value in out:
                self.fail(item, f"{path}[{i}]", f"{value!r} is listed twice")
            else:
                out.append(value)
        return out


__all__ = ["MAX_ISSUES", "Fields", "Issue"]
