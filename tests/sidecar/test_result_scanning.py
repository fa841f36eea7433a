"""Tool results that carry secrets reach the agent masked (or withheld), and the evidence says what was masked:
the real filesystem server behind a real sidecar, a real MCP client in front."""

from __future__ import annotations

import pytest

from cordum.sidecar.spool import Spool

from .conftest import POLICY, mcp_session, text_of
from .test_proxy import fs_sidecar

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PRIVATE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAwJGUYZ3pGz2yLw9gS6ZQmnvKjL0s\n"
               "-----END RSA PRIVATE KEY-----")


@pytest.fixture
def leaky_file(project):
    path = project / "deploy-notes.md"
    path.write_text(f"# deploy\naws_access_key_id = {AWS_KEY}\nkey:\n{PRIVATE_KEY}\nport = 8080\n")
    return path


def _policy(tmp_path, results: str):
    policy = tmp_path / "safety.yaml"
    policy.write_text(POLICY.read_text() + results)
    return policy


async def test_secrets_in_a_tool_result_reach_the_agent_masked_and_the_evidence_names_their_kinds(
        fs_server_bin, project, tmp_path, leaky_file):
    spool_path = tmp_path / "spool.db"
    async with mcp_session(fs_sidecar(fs_server_bin, project, spool_path)) as s:
        result = await s.call_tool("read_text_file", {"path": str(leaky_file)})
    text = text_of(result)
    assert not result.is_error
    assert AWS_KEY not in text and "MIIEowIBAAKCAQEA" not in text
    assert "[REDACTED: AWS Access Key]" in text and "[REDACTED: Private Key]" in text and "port = 8080" in text
    [record] = Spool(spool_path).records()
    assert record["outcome"] == "executed"
    assert record["facts"] == {"masked": {"AWS Access Key": 1, "Private Key": 1}}
    assert AWS_KEY not in str(record)


async def test_a_policy_that_withholds_results_with_secrets_returns_an_error_instead(
        fs_server_bin, project, tmp_path, leaky_file):
    spool_path = tmp_path / "spool.db"
    policy = _policy(tmp_path, "results:\n  on_secret: withhold\n")
    async with mcp_session(fs_sidecar(fs_server_bin, project, spool_path, bundle=policy)) as s:
        result = await s.call_tool("read_text_file", {"path": str(leaky_file)})
        clean = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
    assert result.is_error and "withheld" in text_of(result) and "AWS Access Key ×1" in text_of(result)
    assert AWS_KEY not in text_of(result)
    assert text_of(clean) == "# hello from the project\n"  # a result without secrets passes unchanged
    records = Spool(spool_path).records()
    assert records[0]["outcome"] == "executed"  # it ran; the agent was kept from its result
    assert records[0]["facts"] == {"masked": {"AWS Access Key": 1, "Private Key": 1}, "withheld": True}
    assert records[1]["outcome"] == "executed" and "facts" not in records[1]


async def test_the_policys_own_patterns_are_masked_too(fs_server_bin, project, tmp_path):
    (project / "internal.txt").write_text("session itok_0123456789abcdef0123456789abcdef ok\n")
    policy = _policy(tmp_path, 'results:\n  patterns:\n    - {name: Acme internal token, regex: "itok_[0-9a-f]{32}"}\n')
    async with mcp_session(fs_sidecar(fs_server_bin, project, tmp_path / "spool.db", bundle=policy)) as s:
        result = await s.call_tool("read_text_file", {"path": str(project / "internal.txt")})
    assert text_of(result) == "session [REDACTED: Acme internal token] ok\n"
