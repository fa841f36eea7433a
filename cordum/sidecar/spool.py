"""The local evidence spool: SQLite in WAL mode, one row per record, written before a call is forwarded.

Durability choice: `journal_mode=WAL` with `synchronous=NORMAL` and autocommit. Every INSERT is its own
transaction whose frames are written to the WAL file with write(2) before `add()` returns, so the record is in
the operating system's page cache the moment the call is forwarded. Killing the sidecar (kill -9, OOM, a
crash) therefore loses nothing: the kernel still holds the pages and the next open replays the WAL. What WAL
without a per-call fsync does not survive is a power cut or kernel panic within the last checkpoint interval;
a per-call fsync would cost ~1-5 ms per tool call on ordinary disks, which is 10x the whole overhead budget.
Set `CORDUM_SPOOL_SYNC=FULL` to fsync every commit when that trade-off is wrong for you.

Upload protocol: `claim()` marks a batch in flight, `ack()` deletes only the ids the control plane
acknowledged, `release()` puts the rest back. After a crash, in-flight marks are cleared on open, so records
whose acknowledgement was lost are posted again; the server's ingestion is idempotent on record id, so each
record is stored exactly once.

Open calls: a sidecar that `start_run()`s tracks each decision it spools until the call's final outcome is
recorded (`open` = 1 held for approval, 2 forwarded; the row is kept, marked uploaded, if the control plane
acknowledges the decision first). Each run holds an exclusive lock (flock) on `<spool>.runs/<run id>.lock`
for its lifetime; the kernel drops it when the process dies, however it dies. `orphaned_calls()` returns the
open calls of runs whose lock is free (their process is gone), so a restarted sidecar can append the outcome
a kill -9 kept it from writing, without touching the calls of other live sidecars sharing the spool.

Hook sessions: the agent hook runs one process per tool call, so a session's limit counters (see
`cordum.policy.limits`) live in the `hook_sessions` table. `hook_session()` holds a write transaction
(BEGIN IMMEDIATE) around load → decide → save, so hook processes deciding calls of one session at the same
time are serialized and none loses another's count; the decision's evidence record is added in the same
transaction, so a call is counted exactly when its record is committed. Sessions idle for a day are deleted.
`hook_calls` remembers the decision of each call a hook let through until the agent's post-tool event
(Claude Code `PostToolUse` / `PostToolUseFailure`) says whether it ran, so its `executed`/`failed` outcome is
recorded like the proxy's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

try:
    import fcntl
except ImportError:  # not POSIX: runs are not tracked, so interrupted calls are not recovered
    fcntl = None  # type: ignore[assignment]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    body BLOB NOT NULL,
    inflight INTEGER NOT NULL DEFAULT 0,
    claimed_at REAL,
    open INTEGER NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hook_sessions (
    session_id TEXT PRIMARY KEY,
    counters BLOB NOT NULL,
    policy_version TEXT,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS hook_calls (
    call_key TEXT PRIMARY KEY,
    decision_id TEXT NOT NULL,
    opened REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS session_grants (
    approval_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    grant_body BLOB NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
"""

HOOK_SESSION_IDLE_SECONDS = 86400.0


@dataclass
class HookSession:
    """A hook session's stored limit counters (`LimitsTracker.export_session` format, plus `flow_labels`: the
    session's data-flow labels, `SessionFlows.export_session` format), or None for a new one.
    Set `counters` inside `Spool.hook_session()` to what should be stored when the block ends."""

    session_id: str
    counters: dict[str, Any] | None
    policy_version: str | None


STALE_CLAIM_SECONDS = 120.0

# `inflight`: 0 waiting, 1 claimed for upload, 2 rejected by the control plane (parked), 3 uploaded but kept
# because its call is still open (UPLOADED_OPEN; the SQL below spells it 3). `open`: 0 closed (or not tracked), 1 held for approval, 2 forwarded.
UPLOADED_OPEN = 3
HELD, FORWARDED = 1, 2


def outcome_record(decision_id: str, outcome: str, *, reviewer: str | None = None, comment: str = "",
                   error: str = "", duration_ms: int | None = None, facts: dict | None = None) -> dict[str, Any]:
    """An outcome record for a decision already spooled (the evidence contract's outcome fields)."""
    from cordum.sidecar.ids import utc_now_rfc3339

    record = {"record_type": "outcome", "decision_id": decision_id, "outcome": outcome, "reviewer": reviewer,
              "comment": comment or "", "error": (error or "")[:2000], "timestamp": utc_now_rfc3339(),
              "duration_ms": duration_ms}
    if facts:
        record["facts"] = facts
    return record


def record_id_of(record: dict[str, Any]) -> str:
    """The acknowledgement id: decision_id for decisions, "<decision_id>:<outcome>" for outcomes."""
    if record.get("record_type") == "outcome":
        return f"{record['decision_id']}:{record['outcome']}"
    return record["decision_id"]


class Spool:
    def __init__(self, path: str | os.PathLike[str], *, recover: bool = True):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, every statement is its own durable (to the OS) transaction.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        self._lock = threading.RLock()  # re-entrant: hook_session() holds it across the statements it wraps
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={os.environ.get('CORDUM_SPOOL_SYNC', 'NORMAL')}")
        # Checkpoints (which fsync) never run on the call path: a background thread does them (see below).
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.execute("PRAGMA journal_size_limit=8388608")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
        for name, ddl in (("open", "open INTEGER NOT NULL DEFAULT 0"), ("owner", "owner TEXT")):
            if name not in columns:  # a spool written by an older sidecar
                try:
                    self._db.execute(f"ALTER TABLE records ADD COLUMN {ddl}")
                except sqlite3.OperationalError:  # another process sharing the spool added it first
                    pass
        self.run_id: str | None = None
        self._run_lock: Any = None
        # A previous process died with a batch in flight: put it back in the queue. (Short-lived openers such as
        # the hook pass recover=False so they never take back a batch a running sidecar is uploading.)
        if recover:
            self._db.execute("UPDATE records SET inflight = 0 WHERE inflight = 1")
        else:  # only batches whose uploader is surely gone (claimed over 2 minutes ago)
            self._db.execute("UPDATE records SET inflight = 0 WHERE inflight = 1 AND claimed_at < ?",
                             (time.time() - STALE_CLAIM_SECONDS,))
        self._writes = 0
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()

    def start_checkpointer(self, interval: float = 1.0) -> None:
        """Move WAL frames into the database file from a background thread, off the call path.

        With SQLite's automatic checkpoint the commit that crosses the WAL threshold pays for the
        checkpoint and its fsync (measured: p99 insert 0.66 ms, spikes to 50 ms); here a PASSIVE checkpoint
        runs every `interval` seconds on its own connection and never blocks the writer.
        """
        if self._checkpointer is not None or str(self.path) == ":memory:":
            return

        def run() -> None:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
            seen = -1
            try:
                while not self._stop.wait(interval):
                    if self._writes != seen:
                        seen = self._writes
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            finally:
                conn.close()

        self._checkpointer = threading.Thread(target=run, name="spool-checkpoint", daemon=True)
        self._checkpointer.start()

    # -- this process's run (open-call tracking) ---------------------------------------------------

    def _runs_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".runs")

    def start_run(self) -> str | None:
        """Track the decisions this process spools until their calls close (see the module docstring)."""
        if self.run_id is not None or fcntl is None or str(self.path) == ":memory:":
            return self.run_id
        from cordum.sidecar.ids import uuid7_str

        run_id = uuid7_str()
        runs = self._runs_dir()
        runs.mkdir(parents=True, exist_ok=True)
        # Locked before it gets its name, so no other process ever sees this run's lock file unlocked.
        temp = runs / f".{run_id}.tmp"
        handle = open(temp, "a+b")  # noqa: SIM115 (held for the life of the run)
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temp, runs / f"{run_id}.lock")
        self._run_lock, self.run_id = handle, run_id
        for other in runs.glob("*.lock"):  # lock files of runs that died with no call open
            if other.stem != run_id:
                self._run_is_gone(other.stem)
        return run_id

    def _run_is_gone(self, run_id: str) -> bool:
        """True when the run's process is gone: its lock file is missing or nobody holds its lock."""
        path = self._runs_dir() / f"{run_id}.lock"
        try:
            handle = open(path, "a+b")  # noqa: SIM115
        except OSError:
            return True
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # a live sidecar holds it
            path.unlink(missing_ok=True)  # its owner is dead and run ids are never reused
            return True

    def orphaned_calls(self) -> list[tuple[int, dict[str, Any], int]]:
        """Open calls of runs whose process is gone: (seq, decision record, HELD|FORWARDED), oldest first."""
        if fcntl is None or str(self.path) == ":memory:":
            return []
        with self._lock:
            owners = [r[0] for r in self._db.execute(
                "SELECT DISTINCT owner FROM records WHERE open > 0 AND owner IS NOT NULL").fetchall()]
        gone = [o for o in owners if o != self.run_id and self._run_is_gone(o)]
        if not gone:
            return []
        rows: list[tuple[int, bytes, int]] = []
        with self._lock:
            for owner in gone:
                rows += self._db.execute("SELECT seq, body, open FROM records WHERE open > 0 AND owner = ?",
                                         (owner,)).fetchall()
        return [(seq, orjson.loads(body), state) for seq, body, state in sorted(rows)]

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the spool's lock: BEGIN IMMEDIATE (other processes sharing the spool wait
        for it), COMMIT when the block ends, ROLLBACK on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- writes on the call path -------------------------------------------------------------------
    # No secondary index: one B-tree insert per record keeps add() at ~35 us (measured; a UNIQUE index on
    # record_id doubles it). Rows are addressed by seq (the rowid), which add() returns.

    def add(self, record: dict[str, Any]) -> int:
        """Append one record, committed (to the OS) when this returns. Returns its spool sequence number.

        In a run, a decision without an outcome opens its call (held for approval, or forwarded)."""
        body = orjson.dumps(record)
        state = 0
        if self.run_id is not None and record.get("outcome") is None and record.get("record_type") == "decision":
            state = FORWARDED if record.get("decision") == "allow" else HELD
        with self._lock:
            cur = self._db.execute("INSERT INTO records (record_id, body, open, owner) VALUES (?, ?, ?, ?)",
                                   (record_id_of(record), body, state, self.run_id if state else None))
            self._writes += 1
            return cur.lastrowid

    def merge_outcome(self, seq: int, record: dict[str, Any], *, final: bool = True) -> bool:
        """Replace a decision record that has not been picked up for upload yet with its completed version.

        Returns False when the record is already in flight or uploaded. The row must still hold this decision:
        once a record is acknowledged and deleted, SQLite may give its seq to the next record added. A final
        outcome closes the call; another (approved, allowed_on_timeout) marks it forwarded.
        """
        body = orjson.dumps(record)
        with self._lock:
            cur = self._db.execute(
                "UPDATE records SET body = ?, open = CASE WHEN ? OR open = 0 THEN 0 ELSE 2 END "
                "WHERE seq = ? AND record_id = ? AND inflight = 0", (body, final, seq, record_id_of(record)))
            return cur.rowcount == 1

    def add_outcome(self, seq: int | None, outcome_record: dict[str, Any], *, final: bool = True) -> None:
        """Append a call's outcome as its own record and, in the same transaction, close its call (`final`) or
        mark it forwarded; a decision kept only because its call was open is deleted once the call closes."""
        if seq is None:
            self.add(outcome_record)
            return
        body = orjson.dumps(outcome_record)
        decision_id = outcome_record["decision_id"]
        with self._write_transaction() as db:
            db.execute("INSERT INTO records (record_id, body) VALUES (?, ?)", (record_id_of(outcome_record), body))
            if final:
                db.execute("DELETE FROM records WHERE seq = ? AND record_id = ? AND inflight = ?",
                           (seq, decision_id, UPLOADED_OPEN))
                db.execute("UPDATE records SET open = 0 WHERE seq = ? AND record_id = ? AND open > 0",
                           (seq, decision_id))
            else:
                db.execute("UPDATE records SET open = 2 WHERE seq = ? AND record_id = ? AND open > 0",
                           (seq, decision_id))
            self._writes += 1

    def complete(self, seq: int, record: dict[str, Any], outcome_record: dict[str, Any], *,
                 final: bool = True) -> None:
        """Record a call's outcome: fold it into its decision record when that is still waiting in the spool,
        otherwise add `outcome_record`, so an outcome is never lost to a race with the uploader.

        Synchronous on purpose: the proxy calls this after the upstream's answer has been written to the agent,
        so it costs the agent no latency, and a kill -9 right after a call cannot lose its outcome.
        """
        if not self.merge_outcome(seq, record, final=final):
            self.add_outcome(seq, outcome_record, final=final)

    # -- hook sessions (limit counters across hook processes) --------------------------------------

    @contextlib.contextmanager
    def hook_session(self, session_id: str, *, policy_version: str | None,
                     now: float | None = None) -> Iterator[HookSession]:
        """Load a hook session's counters in a write transaction, run the block (decide, `add()` the record),
        then store `counters` (skipped when None), delete sessions idle for over a day, and commit. An
        exception rolls everything back, the record included. Other processes wait (busy timeout) for the
        transaction; this process's other threads wait on the spool's lock."""
        with self._write_transaction() as db:
            row = db.execute("SELECT counters, policy_version FROM hook_sessions WHERE session_id = ?",
                             (session_id,)).fetchone()
            session = HookSession(session_id, orjson.loads(row[0]) if row else None, row[1] if row else None)
            yield session
            at = time.time() if now is None else now
            if session.counters is not None:
                db.execute("INSERT OR REPLACE INTO hook_sessions (session_id, counters, policy_version, last_seen) "
                           "VALUES (?, ?, ?, ?)", (session_id, orjson.dumps(session.counters), policy_version, at))
            db.execute("DELETE FROM hook_sessions WHERE last_seen < ?", (at - HOOK_SESSION_IDLE_SECONDS,))

    def hook_call_open(self, call_key: str, decision_id: str, *, now: float | None = None) -> None:
        """A hook let a call through: remember its decision until the agent reports how the call went."""
        at = time.time() if now is None else now
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO hook_calls (call_key, decision_id, opened) VALUES (?, ?, ?)",
                             (call_key, decision_id, at))
            self._db.execute("DELETE FROM hook_calls WHERE opened < ?", (at - HOOK_SESSION_IDLE_SECONDS,))

    def hook_call_close(self, call_key: str) -> str | None:
        """The decision id of the call an agent's post-tool event reports on (once), or None if unknown."""
        with self._write_transaction() as db:
            row = db.execute("SELECT decision_id FROM hook_calls WHERE call_key = ?", (call_key,)).fetchone()
            if row:
                db.execute("DELETE FROM hook_calls WHERE call_key = ?", (call_key,))
        return row[0] if row else None

    @contextlib.contextmanager
    def _in_transaction(self) -> Iterator[sqlite3.Connection]:
        """The write transaction already open in this process (hook_session), or a new one."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            with self._write_transaction() as db:
                yield db

    def session_grant_add(self, session_id: str, approval_id: str, grant: dict[str, Any], *,
                          now: float | None = None) -> None:
        """Keep a session answer for the hook processes of this session (they share the spool)."""
        at = time.time() if now is None else now
        with self._in_transaction() as db:
            db.execute("INSERT OR REPLACE INTO session_grants (approval_id, session_id, grant_body, used, created) "
                       "VALUES (?, ?, ?, ?, ?)", (approval_id, session_id, orjson.dumps(grant), 0, at))
            db.execute("DELETE FROM session_grants WHERE created < ?", (at - HOOK_SESSION_IDLE_SECONDS,))

    def session_grant_use(self, session_id: str, covers: Callable[[dict[str, Any], int], bool]) -> \
            tuple[dict[str, Any], int] | None:
        """The first stored answer of the session that `covers(grant, used)` accepts, counted as used once more
        (in one transaction, so two hook processes never both take the last use): (grant, uses now), or None."""
        with self._in_transaction() as db:
            rows = db.execute("SELECT approval_id, grant_body, used FROM session_grants WHERE session_id = ? "
                              "ORDER BY created", (session_id,)).fetchall()
            for approval_id, body, used in rows:
                grant = orjson.loads(body)
                if covers(grant, used):
                    db.execute("UPDATE session_grants SET used = used + 1 WHERE approval_id = ?", (approval_id,))
                    return grant, used + 1
        return None

    def hook_sessions(self) -> dict[str, HookSession]:
        """Every stored hook session (status output and tests)."""
        with self._lock:
            rows = self._db.execute("SELECT session_id, counters, policy_version FROM hook_sessions").fetchall()
        return {r[0]: HookSession(r[0], orjson.loads(r[1]), r[2]) for r in rows}

    # -- the uploader's side -----------------------------------------------------------------------

    def claim(self, limit: int) -> list[tuple[int, str, bytes]]:
        """Mark up to `limit` of the oldest waiting records in flight; returns (seq, record_id, json body)."""
        with self._write_transaction() as db:
            rows = db.execute(
                "SELECT seq, record_id, body FROM records WHERE inflight = 0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            if rows:
                db.execute("UPDATE records SET inflight = 1, claimed_at = ? WHERE seq BETWEEN ? AND ? AND inflight = 0",
                           (time.time(), rows[0][0], rows[-1][0]))
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    def ack(self, seqs: list[int]) -> int:
        """Delete acknowledged records. Only records the control plane named are ever deleted."""
        if not seqs:
            return 0
        params = [(i,) for i in seqs]
        with self._write_transaction() as db:
            # a decision whose call is still open stays (marked uploaded) until its outcome closes it
            db.executemany("UPDATE records SET inflight = 3 WHERE seq = ? AND open > 0", params)
            cur = db.executemany("DELETE FROM records WHERE seq = ? AND open = 0", params)
        return cur.rowcount

    def release(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock:
            self._db.executemany("UPDATE records SET inflight = 0 WHERE seq = ?", [(i,) for i in seqs])

    # -- reads -------------------------------------------------------------------------------------

    def reject(self, seqs: list[int]) -> None:
        """Park records the control plane refused as invalid (400): kept on disk, never retried, never deleted."""
        if not seqs:
            return
        with self._lock:
            self._db.executemany("UPDATE records SET inflight = 2 WHERE seq = ?", [(i,) for i in seqs])

    def depth(self) -> int:
        """Records waiting to be uploaded (rejected ones excluded)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM records WHERE inflight < 2").fetchone()[0]

    def oldest_waiting_at(self) -> str | None:
        """RFC 3339 time of the oldest record still waiting for upload (the backlog's age), None when empty."""
        with self._lock:
            row = self._db.execute("SELECT body FROM records WHERE inflight < 2 ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        try:
            return str(orjson.loads(row[0]).get("timestamp") or "") or None
        except (orjson.JSONDecodeError, AttributeError):
            return None

    def rejected(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM records WHERE inflight = 2").fetchone()[0]

    def records(self) -> list[dict[str, Any]]:
        """Every record not yet acknowledged, oldest first (status output and tests)."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM records WHERE inflight != 3 ORDER BY seq").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def sidecar_id(self) -> str:
        """A stable id for this sidecar installation, created once and kept in the spool."""
        value = self.get_meta("sidecar_id")
        if value is None:
            from cordum.sidecar.ids import uuid7_str

            value = "sc_" + uuid7_str().replace("-", "")[:20]
            with self._lock:
                self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('sidecar_id', ?)", (value,))
            value = self.get_meta("sidecar_id") or value
        return value

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._db.close()
        if self._run_lock is not None:  # a clean exit: any call left open is recovered by the next start
            (self._runs_dir() / f"{self.run_id}.lock").unlink(missing_ok=True)
            self._run_lock.close()
            self._run_lock = None
