"""The sidecar in front of real MCP servers, driven by the mcp SDK's client."""

from __future__ import annotations

from pathlib import Path

import pytest

from cordum.sidecar.bundles import bundle_build, bundle_sign, generate_keypair, key_id_for
from cordum.sidecar.spool import Spool

from .conftest import POLICY, PYTHON, fs_direct_params, mcp_session, sidecar_params, text_of, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def fs_sidecar(fs_bin: str, project: Path, spool: Path, *extra: str, bundle: Path | str = POLICY):
    outside = project.parent / "outside"
    return sidecar_params(["run", "--bundle", str(bundle), "--spool", str(spool), "--agent", "claude-code-t",
                           *extra, "--", fs_bin, str(project), str(outside)], cwd=project)


async def test_tools_list_through_the_sidecar_equals_the_upstreams(fs_server_bin, project, tmp_path):
    async with mcp_session(fs_direct_params(fs_server_bin, project, project.parent / "outside", cwd=project)) as s:
        direct = await s.list_tools()
    async with mcp_session(fs_sidecar(fs_server_bin, project, tmp_path / "spool.db")) as s:
        proxied = await s.list_tools()
    assert [t.model_dump() for t in proxied.tools] == [t.model_dump() for t in direct.tools]
    assert any(t.name == "read_text_file" for t in proxied.tools)


async def test_allowed_read_returns_the_upstreams_real_result_and_is_recorded(fs_server_bin, project, tmp_path):
    spool_path = tmp_path / "spool.db"
    async with mcp_session(fs_sidecar(fs_server_bin, project, spool_path)) as s:
        result = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
    assert not result.is_error
    assert text_of(result) == "# hello from the project\n"
    [record] = Spool(spool_path).records()
    assert record["decision"] == "allow" and record["rule"] == "allow-code-read"
    assert record["outcome"] == "executed"
    assert record["server"] == "filesystem" and record["tool"] == "read_text_file"
    assert record["agent"] == "claude-code-t"
    assert record["args_digest"].startswith("sha256:")
    assert record["policy_version"].startswith("local:safety.yaml@")
    assert record["target"] == str(project / "README.md")


async def test_write_outside_the_project_is_denied_with_the_rules_reason_and_nothing_is_written(
    fs_server_bin, project, tmp_path
):
    target = project.parent / "outside" / "evil.txt"
    spool_path = tmp_path / "spool.db"
    async with mcp_session(fs_sidecar(fs_server_bin, project, spool_path)) as s:
        result = await s.call_tool("write_file", {"path": str(target), "content": "pwned"})
        inside = await s.call_tool("write_file", {"path": str(project / "ok.txt"), "content": "fine"})
    assert result.is_error
    text = text_of(result)
    assert text.startswith("Denied by Cordum policy rule deny-write-outside-project: "
                           "Writes outside the project directory are blocked (policy local:safety.yaml@")
    assert not target.exists()
    assert not inside.is_error and (project / "ok.txt").read_text() == "fine"
    denied, allowed = Spool(spool_path).records()
    assert (denied["decision"], denied["outcome"]) == ("deny", "blocked")
    assert (allowed["decision"], allowed["outcome"]) == ("allow", "executed")


async def test_reading_a_secret_is_denied(fs_server_bin, project, tmp_path):
    async with mcp_session(fs_sidecar(fs_server_bin, project, tmp_path / "spool.db")) as s:
        result = await s.call_tool("read_text_file", {"path": str(project / ".env")})
    assert result.is_error and "deny-secrets-access" in text_of(result)
    assert "SECRET" not in text_of(result)


async def test_without_a_policy_every_call_is_denied_with_the_reason(fs_server_bin, project, tmp_path):
    config = write_config(tmp_path / "sidecar.yaml", spool=str(tmp_path / "spool.db"), upstreams=[
        {"name": "filesystem", "command": [fs_server_bin, str(project)]}])
    async with mcp_session(sidecar_params(["run", "--config", str(config)], cwd=project)) as s:
        tools = await s.list_tools()  # listing still works: the agent sees what it would be allowed to ask for
        result = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
    assert tools.tools
    assert result.is_error
    assert text_of(result).startswith("Denied by Cordum: no policy configured")
    assert "fail closed" in text_of(result)


async def test_a_missing_bundle_file_denies_every_call(fs_server_bin, project, tmp_path):
    params = fs_sidecar(fs_server_bin, project, tmp_path / "spool.db", bundle=tmp_path / "nope.yaml")
    async with mcp_session(params) as s:
        result = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
    assert result.is_error and "cannot read policy file" in text_of(result)


def _signed_bundle(private_key: str, key_id: str, *, sequence: int = 1, policy_path: Path = POLICY) -> dict:
    from cordum.policy import load_policy_file

    policy = load_policy_file(str(policy_path)).policy
    bundle = bundle_build(policy_dict=policy.to_dict(), manifest={
        "org": "acme", "repo": "policies", "repo_id": 1, "commit": "3f2c1ab" + "0" * 33, "version": "v1.0.0@3f2c1ab",
        "sequence": sequence, "rollback": False, "created_at": "2026-11-25T12:00:00Z"})
    return bundle_sign(bundle, key_id=key_id, private_key=private_key)


async def test_a_signed_bundle_is_verified_against_trusted_keys(fs_server_bin, project, tmp_path):
    import json

    private, public = generate_keypair()
    key_id = key_id_for(public)
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(json.dumps(_signed_bundle(private, key_id)))
    config = write_config(tmp_path / "sidecar.yaml", spool=str(tmp_path / "spool.db"),
                          trusted_keys={key_id: public})
    args = ["run", "--config", str(config), "--bundle", str(bundle_path), "--", fs_server_bin, str(project)]
    async with mcp_session(sidecar_params(args, cwd=project)) as s:
        ok = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
    assert not ok.is_error

    other_private, other_public = generate_keypair()  # signed by a key the sidecar does not trust
    bundle_path.write_text(json.dumps(_signed_bundle(other_private, key_id_for(other_public))))
    async with mcp_session(sidecar_params(args, cwd=project)) as s:
        refused = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
    assert refused.is_error
    assert "not signed by a trusted key" in text_of(refused)


async def test_git_server_behind_the_sidecar(git_repo, tmp_path):
    args = ["run", "--bundle", str(POLICY), "--spool", str(tmp_path / "spool.db"), "--",
            PYTHON, "-m", "mcp_server_git", "--repository", str(git_repo)]
    async with mcp_session(sidecar_params(args, cwd=git_repo)) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        log = await s.call_tool("git_log", {"repo_path": str(git_repo)})
        commit = await s.call_tool("git_commit", {"repo_path": str(git_repo), "message": "x"})
    assert {"git_status", "git_log", "git_commit"} <= names
    assert not log.is_error and "first commit" in text_of(log)
    # require_approval with no control plane to ask: refused, fail closed
    assert commit.is_error and "approve-git-push" in text_of(commit)
    assert "offline" in text_of(commit)


async def test_several_upstreams_are_namespaced_and_routed(fs_server_bin, project, git_repo, tmp_path):
    config = write_config(
        tmp_path / "sidecar.yaml", spool=str(tmp_path / "spool.db"), bundle=str(POLICY), agent="claude-code-t",
        upstreams=[{"name": "filesystem", "command": [fs_server_bin, str(project)]},
                   {"name": "git", "command": [PYTHON, "-m", "mcp_server_git", "--repository", str(git_repo)]}])
    async with mcp_session(sidecar_params(["run", "--config", str(config)], cwd=project)) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        read = await s.call_tool("filesystem__read_text_file", {"path": str(project / "README.md")})
        log = await s.call_tool("git__git_log", {"repo_path": str(git_repo)})
        denied = await s.call_tool("filesystem__read_text_file", {"path": str(project / ".env")})
    assert "filesystem__read_text_file" in names and "git__git_log" in names
    assert not read.is_error and "hello from the project" in text_of(read)
    assert not log.is_error and "first commit" in text_of(log)
    assert denied.is_error and "deny-secrets-access" in text_of(denied)
    records = Spool(tmp_path / "spool.db").records()
    assert [(r["server"], r["tool"], r["decision"]) for r in records] == [
        ("filesystem", "read_text_file", "allow"), ("git", "git_log", "allow"),
        ("filesystem", "read_text_file", "deny")]


async def test_session_limits_are_enforced(fs_server_bin, project, tmp_path):
    limited = tmp_path / "limited.yaml"
    limited.write_text(POLICY.read_text() + "limits:\n  session: {max_calls: 2}\n")
    async with mcp_session(fs_sidecar(fs_server_bin, project, tmp_path / "spool.db", bundle=limited)) as s:
        results = [await s.call_tool("read_text_file", {"path": str(project / "README.md")}) for _ in range(3)]
    assert [r.is_error for r in results] == [False, False, True]
    assert "limits.session.max_calls" in text_of(results[2])
