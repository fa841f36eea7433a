"""Evidence survives kill -9 of the sidecar and a control-plane outage, and reaches the real control plane
(Django live server: POST /api/v1/decisions -> ingest -> append-only evidence table) exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections import Counter

import anyio
import pytest

from cordum.sidecar.bundles import BundleStore, generate_keypair, key_id_for
from cordum.sidecar.spool import Spool

from .conftest import mcp_session, sidecar_params, sidecar_pids, text_of, write_config
from .test_proxy import _signed_bundle


def _wait_for_outcomes(spool_path, calls: int, timeout: float = 20.0) -> None:
    """Block until the spool holds an outcome for each of `calls` decisions (folded in or as its own record)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = Spool(spool_path).records()
        decided = {r["decision_id"] for r in records if r.get("record_type") == "decision"}
        done = {r["decision_id"] for r in records if r.get("outcome")}
        if len(decided) == calls and decided <= done:
            return
        time.sleep(0.05)
    raise AssertionError(f"the spool never held {calls} outcomes: {Spool(spool_path).records()}")


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _config(tmp_path, *, control_plane, fs_bin, project, public, key_id):
    return write_config(
        tmp_path / f"sidecar-{abs(hash(control_plane))}.yaml", control_plane=control_plane, token_env="CORDUM_AGENT_TOKEN",
        agent="claude-code-test", environment="dev", spool=str(tmp_path / "spool.db"),
        bundle_store=str(tmp_path / "bundle.json"), trusted_keys={key_id: public},
        upload={"interval_seconds": 0.2}, heartbeat={"interval_seconds": 3600},
        upstreams=[{"name": "filesystem", "command": [fs_bin, str(project), str(project.parent / "outside")]}])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_kill_9_during_an_outage_then_restart_uploads_every_record_exactly_once(
    live_server, celery_eager, fs_server_bin, project, tmp_path, stderr_log, settings
):
    from cordum.decisions.models import EvidenceRecord

    # the sidecar long-polls GET /api/v1/bundle; keep the live server's polls short so none outlives the test
    settings.CORDUM_LONG_POLL_MAX_SECONDS = 1
    from tests.factories import OrganizationFactory, agent_with_token

    org = OrganizationFactory()
    _agent, issued = agent_with_token(organization=org, name="claude-code-test")
    private, public = generate_keypair()
    key_id = key_id_for(public)
    BundleStore(tmp_path / "bundle.json").save(_signed_bundle(private, key_id))  # the last good bundle on disk
    env = {"CORDUM_AGENT_TOKEN": issued.plaintext}
    log_handle, log_path = stderr_log
    readme = str(project / "README.md")

    async def phase_one() -> None:  # the control plane is down; the sidecar is killed mid-session
        config = _config(tmp_path, control_plane=_closed_port_url(), fs_bin=fs_server_bin, project=project,
                         public=public, key_id=key_id)
        with contextlib.suppress(Exception):
            async with mcp_session(sidecar_params(["run", "--config", str(config)], cwd=project, env=env),
                                   errlog=log_handle) as s:
                for _ in range(4):
                    assert not (await s.call_tool("read_text_file", {"path": readme})).is_error
                denied = await s.call_tool("write_file", {"path": str(project.parent / "outside" / "x"),
                                                          "content": "x"})
                assert "deny-write-outside-project" in text_of(denied)
                # An outcome is spooled just after the answer reaches the agent; wait for the last one so the
                # kill tests what was spooled, not a race with the final outcome write.
                await anyio.to_thread.run_sync(_wait_for_outcomes, tmp_path / "spool.db", 5)
                os.kill(sidecar_pids(log_path)[-1], signal.SIGKILL)

    async def phase_two() -> None:  # restarted, the control plane is back
        config = _config(tmp_path, control_plane=live_server.url, fs_bin=fs_server_bin, project=project,
                         public=public, key_id=key_id)
        async with mcp_session(sidecar_params(["run", "--config", str(config)], cwd=project, env=env),
                               errlog=log_handle) as s:
            for _ in range(2):
                assert not (await s.call_tool("read_text_file", {"path": readme})).is_error

    asyncio.run(phase_one())
    log_handle.flush()
    spooled = Spool(tmp_path / "spool.db").records()
    # committed before forwarding, so kill -9 lost none (an outcome is its own record when it was spooled while
    # an upload attempt held its decision in flight)
    spooled_before_restart = [r["decision_id"] for r in spooled if r.get("record_type") == "decision"]
    assert len(spooled_before_restart) == len(set(spooled_before_restart)) == 5
    assert {r["decision_id"] for r in spooled} == set(spooled_before_restart)

    asyncio.run(phase_two())
    assert Spool(tmp_path / "spool.db").depth() == 0  # everything acknowledged, so everything deleted

    rows = list(EvidenceRecord.objects.filter(record_type="decision").values_list("decision_id", "decision",
                                                                                  "agent_name", "outcome"))
    counts = Counter(r[0] for r in rows)
    assert set(spooled_before_restart) <= set(counts)
    assert len(counts) == 7 and set(counts.values()) == {1}  # every call exactly once
    assert {r[2] for r in rows} == {"claude-code-test"}
    assert sorted(r[1] for r in rows) == ["allow"] * 6 + ["deny"]
    # an outcome is folded into its decision record, or is its own record when the decision was already uploaded
    separate = dict(EvidenceRecord.objects.filter(record_type="outcome").values_list("decision_id", "outcome"))
    assert Counter(r[3] or separate.get(r[0]) for r in rows) == {"executed": 6, "blocked": 1}
    assert len(sidecar_pids(log_path)) == 2

    from cordum.rollouts.models import SidecarInstance  # the heartbeat reached the fleet view

    fleet = SidecarInstance.objects.get(agent=_agent)
    assert (fleet.bundle_version, fleet.bundle_sequence, fleet.spool_depth) == ("v1.0.0@3f2c1ab", 1, 0)
    assert fleet.last_upload_at is not None


@pytest.mark.slow
def test_a_sidecar_killed_after_answering_but_before_spooling_the_outcome_is_closed_on_restart(
    fs_server_bin, project, tmp_path, stderr_log
):
    import sqlite3

    from cordum.sidecar.enforcer import INTERRUPTED_FORWARDED

    from .conftest import POLICY

    fifo = project / "slow.txt"  # the real filesystem server blocks reading it until the test writes
    os.mkfifo(fifo)
    spool_path = tmp_path / "spool.db"
    args = ["run", "--bundle", str(POLICY), "--spool", str(spool_path), "--", fs_server_bin, str(project)]
    log_handle, log_path = stderr_log
    seen: dict = {}

    async def phase_one() -> None:
        with contextlib.suppress(Exception):
            async with mcp_session(sidecar_params(args, cwd=project), errlog=log_handle) as s:
                call = asyncio.create_task(s.call_tool("read_text_file", {"path": str(fifo)}))
                # open() returns once the upstream opened the FIFO: the call was decided, spooled, forwarded
                writer = await asyncio.to_thread(open, fifo, "w")
                # hold the spool's write lock: the sidecar can answer the agent, not spool the outcome
                blocker = sqlite3.connect(spool_path, isolation_level=None)
                blocker.execute("BEGIN IMMEDIATE")
                writer.write("late answer\n")
                writer.close()
                seen["result"] = await call  # the answer reached the agent...
                seen["rows"] = [r[0] for r in blocker.execute("SELECT body FROM records").fetchall()]
                os.kill(sidecar_pids(log_path)[-1], signal.SIGKILL)  # ...and its outcome never reaches the spool
                blocker.execute("ROLLBACK")
                blocker.close()

    asyncio.run(phase_one())
    log_handle.flush()
    assert text_of(seen["result"]) == "late answer\n"
    [decision] = [json.loads(b) for b in seen["rows"]]
    assert decision["record_type"] == "decision" and decision["outcome"] is None
    assert [r["decision_id"] for r in Spool(spool_path).records()] == [decision["decision_id"]]  # the gap

    async def phase_two() -> None:  # the restarted sidecar closes the call before serving
        async with mcp_session(sidecar_params(args, cwd=project), errlog=log_handle) as s:
            assert not (await s.call_tool("read_text_file", {"path": str(project / "README.md")})).is_error

    asyncio.run(phase_two())
    records = Spool(spool_path).records()
    [closed] = [r for r in records if r["decision_id"] == decision["decision_id"] and r["record_type"] == "outcome"]
    assert (closed["outcome"], closed["error"]) == ("unknown", INTERRUPTED_FORWARDED)
    assert [r.get("outcome") for r in records] == [None, "unknown", "executed"]  # decision, its closure, new call
    assert len(sidecar_pids(log_path)) == 2

    asyncio.run(phase_two())  # a second restart finds nothing left open: closed exactly once
    assert sum(r["decision_id"] == decision["decision_id"] for r in Spool(spool_path).records()) == 2



@pytest.mark.slow
def test_a_clean_shutdown_records_a_forwarded_call_the_upstream_never_answered_as_failed(
    fs_server_bin, project, tmp_path
):
    from .conftest import POLICY

    fifo = project / "never.txt"  # opened for writing but never written: the upstream's read never ends
    os.mkfifo(fifo)
    spool_path = tmp_path / "spool.db"
    args = ["run", "--bundle", str(POLICY), "--spool", str(spool_path), "--", fs_server_bin, str(project)]

    async def session() -> None:
        async with mcp_session(sidecar_params(args, cwd=project)) as s:
            call = asyncio.create_task(s.call_tool("read_text_file", {"path": str(fifo)}))
            # open() returns once the upstream opened the FIFO: the call was decided, spooled and forwarded
            writer = await asyncio.to_thread(open, fifo, "w")
            call.cancel()
        # leaving the session closed the sidecar's stdin: it shut down cleanly, the upstream still reading
        writer.close()

    asyncio.run(session())
    records = Spool(spool_path).records()
    assert [r["decision"] for r in records if r["record_type"] == "decision"] == ["allow"]
    assert [r.get("outcome") for r in records] in (["failed"], [None, "failed"])  # folded, or its own record
    assert records[-1]["outcome"] == "failed"
    assert Spool(spool_path).orphaned_calls() == []  # closed: nothing left for the next start
