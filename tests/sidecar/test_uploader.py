"""The uploader against a small real HTTP server: only acknowledged records leave the spool."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cordum.sidecar.ids import utc_now_rfc3339, uuid7_str
from cordum.sidecar.spool import Spool
from cordum.sidecar.uploader import Uploader, UploadError

pytestmark = pytest.mark.anyio


def _decision(**extra) -> dict:
    return {"record_type": "decision", "decision_id": uuid7_str(), "decision": "allow", "outcome": None,
            "timestamp": utc_now_rfc3339(), **extra}


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool.db")
    yield s
    s.close()


async def test_only_acknowledged_ids_are_deleted(spool, control_plane):
    records = [_decision() for _ in range(5)]
    for r in records:
        spool.add(r)
    control_plane.ack_only = {records[0]["decision_id"], records[3]["decision_id"]}
    async with httpx.AsyncClient(base_url=control_plane.url) as client:
        assert await Uploader(spool, client).flush_once() == 2
    left = [r["decision_id"] for r in spool.records()]
    assert left == [records[i]["decision_id"] for i in (1, 2, 4)]
    control_plane.ack_only = None
    async with httpx.AsyncClient(base_url=control_plane.url) as client:
        assert await Uploader(spool, client).drain() is True
    assert spool.depth() == 0
    assert sorted(control_plane.posted) == sorted(r["decision_id"] for r in records)


async def test_a_failing_control_plane_keeps_every_record_and_a_later_upload_sends_them(spool, control_plane):
    for _ in range(3):
        spool.add(_decision())
    control_plane.decisions_status = 503
    async with httpx.AsyncClient(base_url=control_plane.url) as client:
        uploader = Uploader(spool, client)
        with pytest.raises(UploadError):
            await uploader.flush_once()
        assert spool.depth() == 3
        control_plane.decisions_status = 202
        assert await uploader.drain() is True
    assert spool.depth() == 0 and len(control_plane.posted) == 3


async def test_an_unreachable_control_plane_keeps_records_in_the_spool(spool):
    spool.add(_decision())
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as client:
        assert await Uploader(spool, client).drain() is False
    assert spool.depth() == 1


async def test_the_background_loop_uploads_soon_after_a_record_is_spooled(spool, control_plane):
    async with httpx.AsyncClient(base_url=control_plane.url) as client:
        uploader = Uploader(spool, client, interval=30.0, linger=0.0)
        task = asyncio.create_task(uploader.run())
        try:
            record = _decision()
            spool.add(record)
            uploader.notify()
            await asyncio.to_thread(control_plane.records_event.wait, 10)
        finally:
            task.cancel()
    assert control_plane.posted == [record["decision_id"]]


async def test_an_outcome_is_merged_before_upload_or_sent_as_its_own_record(spool, control_plane):
    from cordum.sidecar.enforcer import Enforcer, Verdict

    enforcer = Enforcer(spool=spool, agent="a", environment="dev", team=None, sidecar_id="sc")
    first = Verdict("allow", "r", "", "v1", _decision())
    first.seq = spool.add(first.record)
    enforcer.record_outcome(first, "executed")  # not uploaded yet: folded into the decision record
    assert [r.get("outcome") for r in spool.records()] == ["executed"]

    second = Verdict("allow", "r", "", "v1", _decision())
    second.seq = spool.add(second.record)
    claimed = spool.claim(10)  # an upload is in flight
    enforcer.record_outcome(second, "failed", error="boom")
    spool.release([seq for seq, _, _ in claimed])
    records = spool.records()
    assert records[-1] == {**records[-1], "record_type": "outcome", "decision_id": second.decision_id,
                           "outcome": "failed", "error": "boom"}
    async with httpx.AsyncClient(base_url=control_plane.url) as client:
        assert await Uploader(spool, client).drain() is True
    assert f"{second.decision_id}:failed" in control_plane.posted


async def test_a_record_the_server_rejects_is_parked_not_deleted_and_does_not_block_the_rest(spool):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Strict(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            records = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["records"]
            bad = [i for i, r in enumerate(records) if r.get("decision") == "maybe"]
            if bad:
                body, status = {"message": f"Invalid input: records[{bad[0]}].decision: nope"}, 400
            else:
                body, status = {"accepted": [r["decision_id"] for r in records]}, 202
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Strict)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spool.add(_decision())
        spool.add(_decision(decision="maybe"))
        spool.add(_decision())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.server_address[1]}") as client:
            uploader = Uploader(spool, client)
            await uploader.flush_once()
            assert await uploader.drain() is True
    finally:
        server.shutdown()
        server.server_close()
    assert spool.depth() == 0 and spool.rejected() == 1


def test_a_batch_left_in_flight_by_a_dead_uploader_is_uploaded_again(tmp_path):
    import time as _time

    path = tmp_path / "spool.db"
    first = Spool(path)
    record = _decision()
    first.add(record)
    assert len(first.claim(10)) == 1  # the process dies here, before the answer
    first.close()

    hook = Spool(path, recover=False)  # a short-lived opener leaves a fresh claim alone
    assert hook.claim(10) == []
    hook._db.execute("UPDATE records SET claimed_at = ?", (_time.time() - 600,))
    hook.close()
    assert len(Spool(path, recover=False).claim(10)) == 1  # ... but takes back a stale one

    restarted = Spool(path)  # a restarted sidecar takes back everything that was in flight
    assert restarted.depth() == 1 and len(restarted.claim(10)) == 1


async def test_an_outcome_never_overwrites_a_later_record_that_reused_an_uploaded_decisions_seq(spool,
                                                                                                control_plane):
    from cordum.sidecar.enforcer import Enforcer, Verdict

    enforcer = Enforcer(spool=spool, agent="a", environment="dev", team=None, sidecar_id="sc")
    first = Verdict("allow", "r", "", "v1", _decision())
    first.seq = spool.add(first.record)
    async with httpx.AsyncClient(base_url=control_plane.url) as client:
        assert await Uploader(spool, client).drain() is True  # uploaded and deleted: the spool is empty
    later = _decision()
    assert spool.add(later) == first.seq  # SQLite hands the freed seq to the next record
    enforcer.record_outcome(first, "executed")
    records = spool.records()
    assert records[0] == later  # untouched
    assert (records[1]["record_type"], records[1]["decision_id"], records[1]["outcome"]) == (
        "outcome", first.decision_id, "executed")
