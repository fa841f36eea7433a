"""Where things are in a YAML document: the line of a key path (`["rules", 2, "match", "topics"]`).

Used to link a semantic diff or a gate to file:line. Pure Python; callers pass text the loader has already
accepted (its input limits apply before anything is composed here).
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["Positions"]


class Positions:
    """The composed node tree of one text; `line(path)` answers from it without re-parsing."""

    def __init__(self, text: str | None) -> None:
        self.root: Node | None = None
        if text:
            try:
                self.root = yaml.compose(text, Loader=yaml.SafeLoader)
            except yaml.YAMLError:
                self.root = None

    def line(self, path: Sequence[str | int]) -> int | None:
        """1-based line of the deepest element of `path` present (a key, or a list item by index);
        None when not even the first is."""
        node, line = self.root, None
        for step in path:
            child = _child(node, step)
            if child is None:
                break
            line, node = child
        return line


def _child(node: Node | None, step: str | int) -> tuple[int, Node] | None:
    if isinstance(node, MappingNode) and isinstance(step, str):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == step:
                return key.start_mark.line + 1, value
    if isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        item = node.value[step]
        return item.start_mark.line + 1, item
    return None
