"""The sidecar enforces what the control plane publishes: a new signed bundle takes effect while it runs,
a downgrade is refused, and a bundle signed by an untrusted key never replaces the one in force."""

from __future__ import annotations

import anyio
import pytest

from cordum.policy import load_policy_text
from cordum.sidecar.bundles import bundle_build, bundle_sign, generate_keypair, key_id_for

from .conftest import mcp_session, sidecar_params, text_of, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

READS_ALLOWED = """version: v1
tools:
  - {server: filesystem, tool: "read_*", topic: job.mcp-bridge.read.file}
rules:
  - {id: allow-reads, match: {topics: ["job.mcp-bridge.read.*"]}, decision: allow, reason: "reads are fine"}
"""
READS_DENIED = READS_ALLOWED.replace('decision: allow, reason: "reads are fine"',
                                     'decision: deny, reason: "reads frozen for the audit"')


def _bundle(text: str, private: str, key_id: str, *, sequence: int, version: str, rollback: bool = False) -> dict:
    policy = load_policy_text(text).policy
    bundle = bundle_build(policy_dict=policy.to_dict(), manifest={
        "org": "acme", "repo": "policies", "repo_id": 1, "commit": f"{sequence:040x}", "version": version,
        "sequence": sequence, "rollback": rollback, "created_at": "2026-11-25T12:00:00Z"})
    return bundle_sign(bundle, key_id=key_id, private_key=private)


async def test_a_published_bundle_takes_effect_while_the_sidecar_runs(fs_server_bin, project, tmp_path,
                                                                       control_plane):
    private, public = generate_keypair()
    key_id = key_id_for(public)
    v1 = _bundle(READS_ALLOWED, private, key_id, sequence=1, version="v1@0000001")
    control_plane.publish(v1)
    config = write_config(tmp_path / "sidecar.yaml", control_plane=control_plane.url, spool=str(tmp_path / "s.db"),
                          bundle_store=str(tmp_path / "bundle.json"), trusted_keys={key_id: public},
                          upstreams=[{"name": "filesystem", "command": [fs_server_bin, str(project)]}])
    params = sidecar_params(["run", "--config", str(config)], cwd=project, env={"CORDUM_AGENT_TOKEN": "cdm_agent_t"})
    readme = {"path": str(project / "README.md")}
    async with mcp_session(params) as s:
        await anyio.to_thread.run_sync(control_plane.wait_for_sidecar_holding, v1)
        assert not (await s.call_tool("read_text_file", readme)).is_error

        v2 = _bundle(READS_DENIED, private, key_id, sequence=2, version="v2@0000002")
        control_plane.publish(v2)
        await anyio.to_thread.run_sync(control_plane.wait_for_sidecar_holding, v2)
        frozen = await s.call_tool("read_text_file", readme)
        assert frozen.is_error and text_of(frozen) == (
            "Denied by Cordum policy rule allow-reads: reads frozen for the audit (policy v2@0000002)")

        # a lower sequence without rollback, then a bundle signed by a key nobody trusts: both are fetched
        # (the sidecar long-polls with their ETags afterwards) and both refused, v2 stays in force
        stale = _bundle(READS_ALLOWED, private, key_id, sequence=1, version="v1b@0000003")
        control_plane.publish(stale)
        await anyio.to_thread.run_sync(control_plane.wait_for_sidecar_holding, stale)
        assert text_of(await s.call_tool("read_text_file", readme)).endswith("(policy v2@0000002)")
        forged_private, forged_public = generate_keypair()
        forged = _bundle(READS_ALLOWED, forged_private, key_id_for(forged_public), sequence=9, version="v9@0000009")
        control_plane.publish(forged)
        await anyio.to_thread.run_sync(control_plane.wait_for_sidecar_holding, forged)
        assert text_of(await s.call_tool("read_text_file", readme)).endswith("(policy v2@0000002)")

        rollback = _bundle(READS_ALLOWED, private, key_id, sequence=3, version="v1@0000001", rollback=True)
        control_plane.publish(rollback)
        await anyio.to_thread.run_sync(control_plane.wait_for_sidecar_holding, rollback)
        assert not (await s.call_tool("read_text_file", readme)).is_error
