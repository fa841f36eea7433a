"""Shared parts of the approvals end-to-end tests: a synced policy repo published as a signed bundle, a real
`cordum-sidecar` in front of the real filesystem MCP server, and waits on events (never on wall time)."""

import asyncio
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import git
import pytest
import yaml
from django.db import connection

from cordum.accounts.choices import Role
from cordum.approvals import services as approval_services
from cordum.approvals.models import ApprovalRequest
from cordum.common.notify import wait_for
from cordum.decisions.models import EvidenceRecord
from cordum.policies import services as policy_services
from cordum.policies.models import PolicyBundle, SigningKey
from cordum.sidecar.bundles import BundleStore
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, UserFactory, agent_with_token

REPO = Path(__file__).resolve().parents[2]
FS_SERVER = REPO / "node_modules" / ".bin" / "mcp-server-filesystem"
ORIGINAL = "DEBUG = True\n"
NEW = "DEBUG = False\n"

POLICY = """version: v1
defaults:
  decision: deny
  approval: {timeout: TIMEOUT, on_timeout: deny, reviewers: ["role:reviewer"], allow_self_approval: false}
tools:
  - server: filesystem
    tool: ["read_*", "list_*", "get_file_info", "search_files", "directory_tree", "list_allowed_directories"]
    topic: job.mcp-bridge.read.file
  - server: filesystem
    tool: [write_file, edit_file, create_directory, move_file]
    topic: job.mcp-bridge.write.file
    risk_tags: [code-change]
    target: "{path}"
    write: true
rules:
  - id: allow-code-read
    match: {topics: ["job.mcp-bridge.read.*"]}
    decision: allow
    reason: "File reads are safe"
  - id: approve-file-writes
    match: {topics: ["job.mcp-bridge.write.*"]}
    decision: require_approval
    reason: "File writes pause for developer review"
"""



@pytest.fixture(scope="session")
def fs_server_bin() -> str:
    if not FS_SERVER.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True)
    return str(FS_SERVER)


@pytest.fixture
def world(tmp_path, settings, live_server, celery_eager, fs_server_bin):
    """An org whose policy repo (real git) is synced and published as a signed bundle; a sidecar config."""
    settings.CORDUM_GIT_CACHE_DIR = tmp_path / "git-cache"

    def build(timeout: str = "15m", on_timeout: str = "deny", extra_policy: str = "", approval_extra: str = "",
              listen: str = "stdio") -> dict:
        org = OrganizationFactory(slug="acme-e2e")
        payments = TeamFactory(organization=org, slug="payments", name="Payments")
        owner = MembershipFactory(organization=org, role=Role.MEMBER, user=UserFactory(username="mo",
                                                                                        email="mo@example.com"))
        alice = MembershipFactory(organization=org, role=Role.REVIEWER,
                                  user=UserFactory(username="alice", email="alice@example.com"))
        _agent, issued = agent_with_token(organization=org, name="claude-code-mo", team=payments, owner=owner.user)

        policy_repo = git.Repo.init(tmp_path / "policies", initial_branch="main")
        with policy_repo.config_writer() as config:
            config.set_value("user", "name", "Pat Author")
            config.set_value("user", "email", "pat@example.com")
            config.set_value("commit", "gpgsign", "false")
        (tmp_path / "policies" / "safety.yaml").write_text(POLICY.replace("TIMEOUT", timeout).replace(
            "on_timeout: deny", f"on_timeout: {on_timeout}").replace(
            "allow_self_approval: false}", f"allow_self_approval: false{', ' + approval_extra if approval_extra else ''}}}"
        ) + extra_policy)
        policy_repo.index.add(["safety.yaml"])
        policy_repo.index.commit("File writes need approval")
        policy_repo.create_tag("v1.0.0")
        policy_services.signing_key_create(organization=org)
        repository, _secret = policy_services.repository_create(
            organization=org, actor=None, name="policies", url=str(tmp_path / "policies"))
        result = policy_services.sync_repository(repository=repository)
        assert result.published_bundle, result.warning
        bundle = PolicyBundle.objects.filter(organization=org).order_by("-sequence").first()

        project = tmp_path / "project"
        (project / "src").mkdir(parents=True)
        (project / "src" / "app.py").write_text(ORIGINAL)
        # The sidecar starts with the published bundle in its store (as after any earlier run) so the first
        # call is decided by it; it keeps long-polling the live server for newer ones.
        BundleStore(tmp_path / "bundle.json").save(bundle.bundle)
        config = {
            "control_plane": live_server.url, "token_env": "CORDUM_AGENT_TOKEN", "agent": "claude-code-mo",
            "team": "payments", "environment": "dev", "spool": str(tmp_path / "spool.db"),
            "bundle_store": str(tmp_path / "bundle.json"),
            "trusted_keys": {k.key_id: k.public_key for k in SigningKey.objects.filter(organization=org)},
            "approvals": {"poll_wait_seconds": 10, "progress_interval_seconds": 1},
            "upload": {"interval_seconds": 0.2}, "heartbeat": {"interval_seconds": 3600}, "listen": listen,
            "upstreams": [{"name": "filesystem", "command": [fs_server_bin, str(project)]}],
        }
        config_path = tmp_path / "sidecar.yaml"
        config_path.write_text(yaml.safe_dump(config))
        return {"org": org, "alice": alice, "owner": owner, "token": issued.plaintext, "project": project, "tmp": tmp_path,
                "config": config_path, "bundle": bundle, "log": tmp_path / "sidecar.log"}

    return build


@asynccontextmanager
async def sidecar_session(w):
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "cordum.sidecar", "run", "--config", str(w["config"])],
        cwd=str(w["project"]),
        env={"PYTHONPATH": str(REPO), "CORDUM_AGENT_TOKEN": w["token"], "PATH": os.environ.get("PATH", "")},
    )
    with open(w["log"], "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def in_thread(fn):
    """Run DB work off the event loop, on its own connection (closed afterwards)."""

    def run():
        try:
            return fn()
        finally:
            connection.close()

    return asyncio.to_thread(run)


def wait_for_request(org) -> ApprovalRequest:
    found = wait_for(approval_services.approvals_org_channel(org.pk), 60,
                     lambda: ApprovalRequest.objects.filter(organization=org).select_related("agent").first())
    assert found is not None, "the sidecar never opened an approval request"
    return found


def wait_for_evidence(org, decision_id, predicate):
    def check():
        rows = list(EvidenceRecord.objects.filter(organization=org, decision_id=decision_id).order_by("seq"))
        return rows if predicate(rows) else None

    rows = wait_for(f"evidence:{org.pk}", 60, check)
    assert rows, f"evidence for {decision_id} never arrived: {list(EvidenceRecord.objects.filter(organization=org).values('record_type', 'outcome'))}"
    return rows


def outcomes(rows) -> list[str]:
    """The trail for one call in chain order: the decision, then each outcome (as `type:outcome[:reviewer]`)."""
    return [f"{r.record_type}:{r.decision if r.record_type == 'decision' else r.outcome}" for r in rows]


def held_call_then(w, decide, *, expect_error: bool, path: str = "src/app.py", content: str = NEW):
    """Call write_file through the sidecar, let `decide(request)` act while it is held, return (result, request)."""
    progress: list[str] = []

    async def scenario():
        async with sidecar_session(w) as session:
            async def on_progress(progress_value, total, message):
                progress.append(message or "")

            call = asyncio.create_task(session.call_tool(
                "write_file", {"path": str(w["project"] / path), "content": content},
                progress_callback=on_progress))
            request = await in_thread(lambda: wait_for_request(w["org"]))
            assert not call.done(), "the write was not held for approval"
            # The decision record is in the trail before anyone decides.
            await in_thread(lambda: wait_for_evidence(
                w["org"], request.decision_id, lambda rows: any(r.record_type == "decision" for r in rows)))
            await in_thread(lambda: decide(request))
            result = await asyncio.wait_for(call, 120)
            assert result.is_error is expect_error, result
            final = "executed" if not expect_error else None
            if final:
                await in_thread(lambda: wait_for_evidence(
                    w["org"], request.decision_id,
                    lambda rows: any(r.outcome == final and r.record_type == "outcome" for r in rows)))
            return result, request

    result, request = asyncio.run(scenario())
    return result, request, progress

