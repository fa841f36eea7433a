"""The one place the policies app calls the policy engine (cordum/policy): parse, validate, diff.

Kept as a thin adapter so the app never grows a second parser or diff.
"""

from dataclasses import dataclass, field
from typing import Any

from cordum.policy.gates import GATES_FILENAME, MAX_GATES_BYTES
from cordum.policy.loader import MAX_POLICY_BYTES
from cordum.sidecar.bundles import content_sha256

__all__ = ["GATES_FILENAME", "MAX_GATES_BYTES", "MAX_POLICY_BYTES", "ParsedPolicy", "diff", "diff_located",
           "gates_errors", "parse_oversized", "parse_policy"]


@dataclass
class ParsedPolicy:
    policy: dict | None
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    content_sha256: str = ""

    @property
    def is_valid(self) -> bool:
        return self.policy is not None and not self.errors


def _issue(issue, filename: str) -> dict:
    if hasattr(issue, "to_dict"):
        data = issue.to_dict()
    else:
        data = {"file": getattr(issue, "file", filename), "line": getattr(issue, "line", 1),
                "col": getattr(issue, "col", 1), "message": getattr(issue, "message", str(issue))}
    return {"file": data.get("file") or filename, "line": data.get("line") or 1, "col": data.get("col") or 1,
            "message": data.get("message", "")}


def parse_oversized(*, size: int, filename: str) -> ParsedPolicy:
    """The invalid result for a policy file too large to read (the loader's own limit and message)."""
    message = f"policy is {size} bytes, over the limit of {MAX_POLICY_BYTES} bytes"
    return ParsedPolicy(None, [{"file": filename, "line": 1, "col": 1, "message": message}])


def parse_policy(text: str | None, *, filename: str, version: str = "") -> ParsedPolicy:
    """Validate policy text; on success return its canonical dict (Policy.to_dict())."""
    from cordum.policy import load_policy_text

    if text is None:
        return ParsedPolicy(None, [{"file": filename, "line": 1, "col": 1,
                                    "message": f"{filename} does not exist in this commit"}])
    result = load_policy_text(text, filename=filename)
    errors = [_issue(e, filename) for e in result.errors]
    warnings = [_issue(w, filename) for w in result.warnings]
    if errors or result.policy is None:
        return ParsedPolicy(None, errors or [{"file": filename, "line": 1, "col": 1, "message": "invalid policy"}],
                            warnings)
    try:  # a policy that loads but does not compile is not distributable either
        from cordum.policy import compile_policy

        compile_policy(result.policy, version or "unversioned")
    except ImportError:
        pass
    except Exception as exc:
        return ParsedPolicy(None, [{"file": filename, "line": 1, "col": 1,
                                    "message": f"policy does not compile: {exc}"}], warnings)
    policy_dict = result.policy.to_dict()
    return ParsedPolicy(policy_dict, [], warnings, content_sha256(policy_dict))


def diff(old: dict | None, new: dict | None) -> dict[str, Any] | None:
    """Semantic diff between two canonical policy dicts: {"summary": {...}, "text": "..."}."""
    if new is None:
        return None
    from cordum.policy import diff_policies, policy_from_dict

    old_policy = policy_from_dict(old) if old is not None else policy_from_dict({"version": "v1", "rules": []})
    result = diff_policies(old_policy, policy_from_dict(new))
    return {"summary": result.to_dict(), "text": result.to_text()}


def diff_located(*, old: dict | None, old_text: str, new: dict, new_text: str, filename: str) -> dict[str, Any]:
    """The semantic diff with every entry linked to its line: {"summary": {... "at": {side, file, line}}, "text"}."""
    from cordum.policy.diff import locate_diff

    plain = diff(old, new)
    old_dict = old if old is not None else {"version": "v1", "tools": [], "rules": []}
    summary = locate_diff(plain["summary"], old_policy=old_dict, new_policy=new, old_text=old_text or "",
                          new_text=new_text or "", filename=filename)
    return {"summary": summary, "text": plain["text"]}


def gates_errors(text: str | None, *, filename: str = GATES_FILENAME) -> list[dict]:
    """Validation issues of a cordum.yaml (file, line, col, message); [] when valid or absent."""
    from cordum.policy.gates import load_gates_text

    return [_issue(e, filename) for e in load_gates_text(text, filename).errors]
