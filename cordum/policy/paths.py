"""One resolver for the paths a call names, as the MCP server or the agent's tool will resolve them: `~` expanded,
relative paths taken against the call's root, `..` collapsed and symlinks followed (where the file system is at
hand). The sidecar and the hooks judge a call by both the path it names and the file it reaches, so a symlink
`innocent.txt -> .env` or a `~/.bashrc` cannot pass for something else.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .engine import Call, evaluate
from .model import DECISION_RANK

PATH_ARGUMENTS = ("path", "file_path", "notebook_path", "source", "destination")


def resolve_path(value: str, root: str | None) -> str:
    """The file `value` reaches: `~` expanded, relative to `root` (else the working directory), symlinks followed."""
    expanded = os.path.expanduser(value) if value.startswith("~") else value
    absolute = expanded if os.path.isabs(expanded) else os.path.join(root or os.getcwd(), expanded)
    return os.path.realpath(absolute)


def reached_paths(call: Call) -> dict[str, str]:
    """Each path argument whose file is not the one it names (symlink, `~`, `..`) -> the file it reaches."""
    arguments: dict[str, Any] = call.arguments or {}
    changed: dict[str, str] = {}
    for name in PATH_ARGUMENTS:
        value = arguments.get(name)
        if isinstance(value, str) and value:
            real = resolve_path(value, call.root)
            literal = value if os.path.isabs(value) else os.path.normpath(os.path.join(call.root or "", value))
            if real != literal:
                changed[name] = real
    return changed


def strictest(decision, call: Call, evaluate, reaches: dict[str, str] | None = None) -> Any:
    """`decision` for `call`, or the decision for the files it really reaches where that is stricter.

    `reaches`: what `reached_paths` found when the call was made (the simulator replays the recorded answer,
    having no file system of the agent's); None looks now."""
    if reaches is None:
        reaches = reached_paths(call)
    if not reaches:
        return decision
    arguments = call.arguments or {}
    other = evaluate(dataclasses.replace(call, arguments={**arguments, **reaches}))
    if DECISION_RANK.get(other.decision, 2) <= DECISION_RANK.get(decision.decision, 2):
        return decision
    shown = ", ".join(f"{arguments.get(k)} -> {v}" for k, v in reaches.items())
    return dataclasses.replace(other, reason=f"{other.reason} (the call reaches {shown})")


def decide_reaching(compiled, call: Call, reaches: dict[str, str] | None = None, session: Any = None) -> Any:
    """The decision as the sidecar makes it (`strictest` of the path named and the file reached) for a call of a
    session holding `session`'s labels, with the labels the call sets: those of both (a symlink to .env is a
    secret read too)."""
    labelled: list[str] = []

    def judge(c: Call) -> Any:
        out = evaluate(compiled, c, session)
        labelled.extend(out.labels)
        return out

    decision = strictest(judge(call), call, judge, reaches)
    labels = tuple(dict.fromkeys(labelled))
    return decision if labels == decision.labels else dataclasses.replace(decision, labels=labels)
