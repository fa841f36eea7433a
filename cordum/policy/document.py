"""Bounded YAML: compose a policy (or policy test) document into positioned nodes, refusing documents
that would exhaust memory or the stack before anything is expanded.

A policy arrives from any branch of a git repository, so its text is untrusted: a deeply nested
document used to raise RecursionError inside the composer and a "billion laughs" alias chain used to
expand to tens of megabytes once serialised. Every limit below is checked while composing (aliases
are sized, never copied), and a breach is reported at the offending file:line:col naming the limit.
The limits are listed for people in docs/limits.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode

__all__ = [
    "MAX_ALIASES",
    "MAX_DOCUMENT_BYTES",
    "MAX_EXPANDED_SIZE",
    "MAX_NESTING_DEPTH",
    "MAX_RULES",
    "DocumentLimitError",
    "compose_bounded",
    "document_too_large",
]

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""Largest policy file, in UTF-8 bytes (a 10,000-rule policy is about 1.5 MB)."""
MAX_NESTING_DEPTH = 64
"""Deepest nesting of mappings and lists (safety.yaml itself needs fewer than 10 levels)."""
MAX_ALIASES = 256
"""Most `*alias` references in one document."""
MAX_EXPANDED_SIZE = MAX_DOCUMENT_BYTES
"""Largest size of the document with every alias replaced by what it refers to (characters of scalars
plus one per node): aliases may shorten a policy, never make it larger than a policy written out."""
MAX_RULES = 10_000
"""Most rules (and most tool map entries) in one policy."""


@dataclass(frozen=True)
class DocumentLimitError(Exception):
    """A document breaks one of the limits above; `line`/`col` are 1-based."""

    message: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return self.message


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader's composer with a depth guard, an alias budget and a running expanded size."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._expanded = 0
        self._done: set[int] = set()  # ids of collection nodes fully composed (an alias to any other is recursive)
        self._sizes: dict[int, int] = {}

    def _grow(self, amount: int, mark, what: str) -> None:
        self._expanded += amount
        if self._expanded > MAX_EXPANDED_SIZE:
            raise DocumentLimitError(
                f"{what} makes the document larger than {MAX_EXPANDED_SIZE:,} characters once aliases are expanded "
                f"(limit MAX_EXPANDED_SIZE)", mark.line + 1, mark.column + 1,
            )

    def _size(self, node: Node) -> int:
        """Expanded size of a finished node; memoised, so shared (aliased) nodes are walked once."""
        key = id(node)
        if key in self._sizes:
            return self._sizes[key]
        if isinstance(node, ScalarNode):
            size = 1 + len(node.value)
        elif isinstance(node, MappingNode):
            size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
        else:
            size = 1 + sum(self._size(item) for item in node.value)
        self._sizes[key] = min(size, MAX_EXPANDED_SIZE + 1)
        return self._sizes[key]

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            mark = event.start_mark
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise DocumentLimitError(
                    f"more than {MAX_ALIASES} aliases in one document (limit MAX_ALIASES)", mark.line + 1, mark.column + 1
                )
            target = self.anchors.get(event.anchor)
            if target is not None and not isinstance(target, ScalarNode) and id(target) not in self._done:
                raise DocumentLimitError(
                    f"alias '*{event.anchor}' refers to a node that contains it (recursive aliases are not allowed)",
                    mark.line + 1, mark.column + 1,
                )
            node = super().compose_node(parent, index)  # raises the usual error for an undefined alias
            self._grow(self._size(node), mark, f"alias '*{event.anchor}'")
            return node
        start = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_NESTING_DEPTH:
            raise DocumentLimitError(
                f"nesting deeper than {MAX_NESTING_DEPTH} levels (limit MAX_NESTING_DEPTH)", start.line + 1,
                start.column + 1,
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_scalar_node(self, anchor):
        node = super().compose_scalar_node(anchor)
        self._grow(1 + len(node.value), node.start_mark, "this value")
        return node

    def compose_sequence_node(self, anchor):
        return self._compose_collection(super().compose_sequence_node, anchor)

    def compose_mapping_node(self, anchor):
        return self._compose_collection(super().compose_mapping_node, anchor)

    def _compose_collection(self, compose, anchor):
        self._grow(1, self.peek_event().start_mark, "this collection")
        node = compose(anchor)
        self._done.add(id(node))
        return node


def document_too_large(size: int) -> DocumentLimitError:
    return DocumentLimitError(
        f"the document is {size:,} bytes; the limit is {MAX_DOCUMENT_BYTES:,} bytes (limit MAX_DOCUMENT_BYTES)"
    )


def compose_bounded(text: str) -> Node | None:
    """YAML text -> root node (None for an empty document) within the limits above.

    Raises DocumentLimitError for a breached limit and yaml.YAMLError for a syntax error.
    """
    if len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise document_too_large(len(text.encode("utf-8", "surrogatepass")))
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()
