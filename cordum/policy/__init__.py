"""Cordum's policy engine: pure Python, no Django.

load (YAML -> typed model with positions) -> validate (issues with file:line:col) -> compile
(indexes, precompiled patterns) -> evaluate (pure, no I/O, thread-safe).
"""

from .diff import PolicyDiff, diff_policies
from .engine import TOPIC_PREFIX, Call, CompiledPolicy, Decision, compile_policy, evaluate
from .evidence import args_digest, canonical_json, redact_arguments, redact_target
from .flows import SessionFlows, label_origin
from .limits import LimitsTracker
from .loader import LoadResult, PolicyIssue, load_policy_file, load_policy_text, local_version, parse_duration
from .model import (
    Approval,
    ArgCondition,
    Defaults,
    EvidenceSettings,
    LabelRule,
    Limits,
    Match,
    Policy,
    RateLimits,
    Rule,
    RuleLimits,
    SessionLimits,
    ToolMapping,
    policy_from_dict,
)

__all__ = [
    "TOPIC_PREFIX",
    "Approval",
    "ArgCondition",
    "Call",
    "CompiledPolicy",
    "Decision",
    "Defaults",
    "EvidenceSettings",
    "LabelRule",
    "Limits",
    "LimitsTracker",
    "LoadResult",
    "Match",
    "Policy",
    "PolicyDiff",
    "PolicyIssue",
    "RateLimits",
    "Rule",
    "RuleLimits",
    "SessionFlows",
    "SessionLimits",
    "ToolMapping",
    "args_digest",
    "canonical_json",
    "compile_policy",
    "diff_policies",
    "evaluate",
    "label_origin",
    "load_policy_file",
    "load_policy_text",
    "local_version",
    "parse_duration",
    "policy_from_dict",
    "redact_arguments",
    "redact_target",
]
