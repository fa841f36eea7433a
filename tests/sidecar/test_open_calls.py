"""Open calls in the spool: a sidecar run tracks each decision until its call's final outcome, keeps it past
upload while the call is open, and a later run closes the calls of a run whose process is gone (never those
of a live sidecar sharing the spool). The kill -9 proof with real processes is in test_durability.py."""

from __future__ import annotations

import httpx
import pytest

from cordum.sidecar.enforcer import INTERRUPTED_FORWARDED, INTERRUPTED_HELD, Enforcer, Verdict
from cordum.sidecar.ids import utc_now_rfc3339, uuid7_str
from cordum.sidecar.spool import Spool
from cordum.sidecar.uploader import Uploader

pytestmark = pytest.mark.anyio


def _verdict(spool: Spool, decision: str = "allow") -> Verdict:
    record = {"record_type": "decision", "decision_id": uuid7_str(), "decision": decision, "outcome": None,
              "timestamp": utc_now_rfc3339()}
    verdict = Verdict(decision, "r", "", "v1", record)
    verdict.seq = spool.add(record)
    return verdict


def _enforcer(spool: Spool) -> Enforcer:
    return Enforcer(spool=spool, agent="a", environment="dev", team=None, sidecar_id="sc")


def _die(spool: Spool) -> None:
    """What kill -9 does to a run: the kernel drops its lock; nothing else is written."""
    spool._run_lock.close()


def test_a_live_sidecars_open_calls_are_never_taken_by_another_run(tmp_path):
    first = Spool(tmp_path / "spool.db")
    first.start_run()
    _verdict(first)
    second = Spool(tmp_path / "spool.db")
    second.start_run()
    assert second.orphaned_calls() == []
    assert _enforcer(second).recover_interrupted() == 0
    first.close()
    second.close()


def test_a_dead_runs_forwarded_and_held_calls_are_closed_once_by_the_next_run(tmp_path):
    dead = Spool(tmp_path / "spool.db")
    dead.start_run()
    forwarded, held, finished = _verdict(dead), _verdict(dead, "require_approval"), _verdict(dead)
    _enforcer(dead).record_outcome(finished, "executed")
    approved_then_forwarded = _verdict(dead, "require_approval")
    _enforcer(dead).record_outcome(approved_then_forwarded, "approved")
    _die(dead)

    restarted = Spool(tmp_path / "spool.db")
    restarted.start_run()
    assert _enforcer(restarted).recover_interrupted() == 3
    outcomes = {r["decision_id"]: r for r in restarted.records() if r["record_type"] == "outcome"}
    assert set(outcomes) == {forwarded.decision_id, held.decision_id, approved_then_forwarded.decision_id}
    assert (outcomes[forwarded.decision_id]["outcome"], outcomes[forwarded.decision_id]["error"]) == (
        "unknown", INTERRUPTED_FORWARDED)
    assert (outcomes[approved_then_forwarded.decision_id]["outcome"]) == "unknown"
    assert (outcomes[held.decision_id]["outcome"], outcomes[held.decision_id]["comment"]) == (
        "cancelled", INTERRUPTED_HELD)
    assert _enforcer(restarted).recover_interrupted() == 0  # closed once
    assert not list((tmp_path / "spool.db.runs").glob(f"{dead.run_id}.lock"))
    restarted.close()


async def test_an_uploaded_decision_is_kept_while_its_call_is_open_and_dropped_when_it_closes(tmp_path,
                                                                                              control_plane):
    spool = Spool(tmp_path / "spool.db")
    spool.start_run()
    verdict = _verdict(spool)
    async with httpx.AsyncClient(base_url=control_plane.url) as client:
        uploader = Uploader(spool, client)
        assert await uploader.drain() is True  # acknowledged: nothing left to upload...
        assert spool.depth() == 0 and spool.records() == []
        assert [s for s, _, _ in spool.orphaned_calls()] == []  # ...and its own run's calls are not orphans
        _enforcer(spool).record_outcome(verdict, "executed")  # the call closes
        assert await uploader.drain() is True
    assert f"{verdict.decision_id}:executed" in control_plane.stored
    with spool._lock:
        assert spool._db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0  # the kept row is gone
    spool.close()


async def test_a_call_killed_after_its_decision_was_uploaded_is_still_recovered(tmp_path, control_plane):
    dead = Spool(tmp_path / "spool.db")
    dead.start_run()
    verdict = _verdict(dead)
    async with httpx.AsyncClient(base_url=control_plane.url) as client:
        assert await Uploader(dead, client).drain() is True
        _die(dead)
        restarted = Spool(tmp_path / "spool.db")
        restarted.start_run()
        assert _enforcer(restarted).recover_interrupted() == 1
        assert await Uploader(restarted, client).drain() is True
    assert control_plane.stored[f"{verdict.decision_id}:unknown"]["error"] == INTERRUPTED_FORWARDED
    restarted.close()


def test_a_hook_style_spool_without_a_run_tracks_nothing(tmp_path):
    spool = Spool(tmp_path / "spool.db", recover=False)
    _verdict(spool)
    with spool._lock:
        assert spool._db.execute("SELECT open, owner FROM records").fetchall() == [(0, None)]
    spool.close()


def test_a_spool_written_by_an_older_sidecar_is_upgraded_in_place_and_keeps_its_records(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "spool.db")
    old.executescript("CREATE TABLE records (seq INTEGER PRIMARY KEY, record_id TEXT NOT NULL, body BLOB NOT NULL,"
                      " inflight INTEGER NOT NULL DEFAULT 0, claimed_at REAL);"
                      "INSERT INTO records (record_id, body) VALUES ('d1', '{\"decision_id\": \"d1\"}');")
    old.commit()
    old.close()
    spool = Spool(tmp_path / "spool.db")
    spool.start_run()
    assert spool.records() == [{"decision_id": "d1"}] and spool.orphaned_calls() == []
    _verdict(spool)
    assert spool.depth() == 2
    spool.close()


def test_run_lock_files_do_not_pile_up_across_clean_exits_and_kills(tmp_path):
    runs = tmp_path / "spool.db.runs"
    clean = Spool(tmp_path / "spool.db")
    clean.start_run()
    clean.close()
    assert list(runs.glob("*.lock")) == []  # a clean exit removes its own
    killed = Spool(tmp_path / "spool.db")
    killed.start_run()
    _die(killed)  # died with no call open
    live = Spool(tmp_path / "spool.db")
    live.start_run()
    survivor = Spool(tmp_path / "spool.db")
    survivor.start_run()  # sweeps the dead run's file, never the live one's
    assert sorted(p.stem for p in runs.glob("*.lock")) == sorted([live.run_id, survivor.run_id])
    live.close()
    survivor.close()


def test_a_new_policy_version_keeps_counting_running_sessions(tmp_path):
    from cordum.sidecar.enforcer import load_local_policy

    policy = tmp_path / "safety.yaml"
    text = "version: v1\ndefaults: {decision: allow}\nlimits:\n  session: {max_calls: 2}\n"
    enforcer = _enforcer(Spool(tmp_path / "spool.db"))
    policy.write_text(text)
    enforcer.set_policy(load_local_policy(policy, trusted_keys={}))
    calls = [enforcer.decide(server="fs", tool="read_file", arguments={}, session_id="s1") for _ in range(2)]
    assert [v.decision for v in calls] == ["allow", "allow"]
    policy.write_text(text + "# a new commit: another version\n")
    enforcer.set_policy(load_local_policy(policy, trusted_keys={}))
    assert enforcer.primary.version != calls[0].policy_version
    third = enforcer.decide(server="fs", tool="read_file", arguments={}, session_id="s1")
    assert (third.decision, third.rule) == ("deny", "limits.session.max_calls")
    assert enforcer.decide(server="fs", tool="read_file", arguments={}, session_id="s2").decision == "allow"
