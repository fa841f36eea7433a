"""End to end with the real control plane: a policy committed to a git repository is synced, signed and served
by the Django app; the sidecar process fetches it, verifies it against the organisation's published keys,
enforces it on a real MCP server, and its evidence and heartbeat land in the database."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import POLICY, mcp_session, sidecar_params, text_of, write_config


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_sidecar_enforces_the_bundle_the_control_plane_publishes(
    live_server, celery_eager, settings, fs_server_bin, project, tmp_path
):
    import httpx

    from cordum.decisions.models import EvidenceRecord
    from cordum.policies import services
    from cordum.rollouts.models import SidecarInstance
    from tests.factories import OrganizationFactory, agent_with_token
    from tests.policies.conftest import Workspace

    settings.CORDUM_GIT_CACHE_DIR = tmp_path / "git-cache"
    settings.CORDUM_LONG_POLL_MAX_SECONDS = 1
    org = OrganizationFactory(slug="acme-e2e")
    agent, issued = agent_with_token(organization=org, name="claude-code-e2e")
    workspace = Workspace(tmp_path / "policies")
    workspace.commit(POLICY.read_text(), "Sidecar test policy", tag="v1.0.0")
    services.signing_key_create(organization=org)
    repository, _ = services.repository_create(organization=org, actor=None, name="policies",
                                               url=str(workspace.remote_path), webhook_secret="s3cret")
    services.sync_repository(repository=repository)

    headers = {"Authorization": f"Bearer {issued.plaintext}"}
    keys = httpx.get(f"{live_server.url}/api/v1/keys", headers=headers).json()["keys"]
    version = httpx.get(f"{live_server.url}/api/v1/bundle", headers=headers).json()["manifest"]["version"]
    config = write_config(
        tmp_path / "sidecar.yaml", control_plane=live_server.url, agent="claude-code-e2e",
        spool=str(tmp_path / "spool.db"), bundle_store=str(tmp_path / "bundle.json"),
        trusted_keys={k["key_id"]: k["public_key"] for k in keys},
        upstreams=[{"name": "filesystem", "command": [fs_server_bin, str(project)]}])

    async def session() -> tuple:
        params = sidecar_params(["run", "--config", str(config)], cwd=project,
                                env={"CORDUM_AGENT_TOKEN": issued.plaintext})
        async with mcp_session(params) as s:  # nothing on disk yet: the sidecar fetches before serving
            ok = await s.call_tool("read_text_file", {"path": str(project / "README.md")})
            secret = await s.call_tool("read_text_file", {"path": str(project / ".env")})
        return ok, secret

    ok, secret = asyncio.run(session())
    assert not ok.is_error and text_of(ok) == "# hello from the project\n"
    assert secret.is_error and text_of(secret) == (
        f"Denied by Cordum policy rule deny-secrets-access: Direct secrets access blocked by policy (policy {version})")

    rows = EvidenceRecord.objects.filter(record_type="decision", agent_id=agent.pk)
    separate = dict(EvidenceRecord.objects.filter(record_type="outcome").values_list("decision_id", "outcome"))
    assert sorted((r.tool, r.decision, r.outcome or separate.get(r.decision_id), r.policy_version) for r in rows) == [
        ("read_text_file", "allow", "executed", version), ("read_text_file", "deny", "blocked", version)]
    fleet = SidecarInstance.objects.get(agent=agent)
    assert fleet.bundle_version == version and fleet.spool_depth == 0
