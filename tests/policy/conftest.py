"""Fixtures for the policy engine tests (pure Python: no database needed)."""

from pathlib import Path

import pytest

from cordum.policy import compile_policy, load_policy_file, load_policy_text

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "policies_repo_template"
BRIEF = ROOT.parent / "shared" / "product-brief-governing-coding-agents.txt"

# The example policy from the product brief, verbatim.
BRIEF_POLICY = """\
# safety.yaml - coding agent governance
version: v1
rules:
  - id: allow-code-read
    match:
      topics: ["job.mcp-bridge.read.*"]
      risk_tags: []
    decision: allow
    reason: "File reads, git log, ls are safe"

  - id: approve-code-write
    match:
      topics: ["job.mcp-bridge.write.*"]
      risk_tags: ["code-change"]
    decision: require_approval
    reason: "File writes need developer review"

  - id: approve-git-push
    match:
      topics: ["job.mcp-bridge.git.push", "job.mcp-bridge.git.force-push"]
      risk_tags: ["deploy"]
    decision: require_approval
    reason: "Git push to remote requires approval"

  - id: deny-infra-destroy
    match:
      topics: ["job.mcp-bridge.*.destroy", "job.mcp-bridge.*.delete"]
      risk_tags: ["destructive", "infrastructure"]
    decision: deny
    reason: "Infrastructure destruction blocked"

  - id: deny-secrets-access
    match:
      topics: ["job.mcp-bridge.read.env", "job.mcp-bridge.read.secrets"]
      risk_tags: ["credentials"]
    decision: deny
    reason: "Direct secrets access blocked by policy"
"""


@pytest.fixture(scope="session")
def brief_policy():
    result = load_policy_text(BRIEF_POLICY)
    assert result.ok, result.errors
    return result.policy


@pytest.fixture(scope="session")
def brief(brief_policy):
    return compile_policy(brief_policy, "v1.7.1@3f2c1ab")


@pytest.fixture(scope="session")
def template_policy():
    result = load_policy_file(TEMPLATE)
    assert result.ok, [str(e) for e in result.errors]
    return result.policy


@pytest.fixture(scope="session")
def template(template_policy):
    return compile_policy(template_policy, "template@test")
