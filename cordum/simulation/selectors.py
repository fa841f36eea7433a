"""Reads for simulations: the recorded calls of a window, grouped in SQL and streamed with a server-side cursor.

PostgreSQL: `connection.chunked_cursor()` is a named (server-side) cursor; rows arrive in batches of
`FETCH_SIZE`. SQLite (embedded demo): the same SQL with SQLite's date function and one sample per group
(no ordered array aggregate there).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from cordum.decisions.models import EvidenceRecord
from cordum.policy.simulate import BUSY_PERIOD
from cordum.simulation.models import Simulation

FETCH_SIZE = 2000
# A 64-bit hash of a call signature (PostgreSQL), so the per-call stream carries one bigint, not six strings.
SIGNATURE_HASH = (
    "hashtextextended(concat_ws(chr(31), server, tool, args_digest, agent_name, team_slug, environment, root), 0)")
# The same for a session id (the limits replay's session key).
SESSION_HASH = "hashtextextended(session_id, 0)"
GROUP_WORK_MEM = "64MB"
SIGNATURE_COLUMNS = "server, tool, args_digest, agent_name, team_slug, environment, root"  # = policy.simulate.Signature


@dataclass(frozen=True)
class Window:
    organization_id: int
    start: dt.datetime
    end: dt.datetime
    team: str = ""
    agent: str = ""
    environment: str = ""
    team_ids: tuple[int, ...] | None = None  # the creator's scope (None: every team)

    @classmethod
    def of(cls, simulation: Simulation) -> Window:
        scope = simulation.team_scope
        return cls(simulation.organization_id, simulation.window_start, simulation.window_end,
                   simulation.team, simulation.agent, simulation.environment,
                   tuple(int(t) for t in scope) if scope is not None else None)

    def where(self) -> tuple[str, list]:
        sql = ["organization_id = %s", "record_type = 'decision'", "\"timestamp\" >= %s", "\"timestamp\" < %s"]
        params: list = [self.organization_id, self.start, self.end]
        for column, value in (("team_slug", self.team), ("agent_name", self.agent), ("environment", self.environment)):
            if value:
                sql.append(f"{column} = %s")
                params.append(value)
        if self.team_ids is not None:
            sql.append(f"team_id IN ({', '.join(['%s'] * len(self.team_ids))})" if self.team_ids else "1 = 0")
            params.extend(self.team_ids)
        return " AND ".join(sql), params


def _table() -> str:
    return connection.ops.quote_name(EvidenceRecord._meta.db_table)


def _stream(sql: str, params: list) -> Iterator[tuple]:
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(FETCH_SIZE)
            if not rows:
                return
            yield from rows


def evidence_window_count(*, window: Window) -> int:
    where, params = window.where()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {_table()} WHERE {where}", params)  # noqa: S608
        return cursor.fetchone()[0]


def evidence_signature_groups(*, window: Window) -> Iterator[tuple]:
    """Rows of (server, tool, args_digest, agent, team, environment, root, decision, day, count, any_id, first_seq,
    last_seq, signature_hash): one per distinct call signature, recorded decision and UTC day
    (signature_hash is None on SQLite).

    Only integer aggregates: PostgreSQL hash-aggregates them cheaply (no text comparisons, no ordered
    aggregate forcing a sort). `any_id` locates one record whose args stand for the signature (identical
    args_digest means identical arguments; see `evidence_args`); first/last seq are the sample candidates.
    """
    where, params = window.where()
    pg = connection.vendor == "postgresql"
    day = '("timestamp" AT TIME ZONE \'UTC\')::date' if pg else 'substr("timestamp", 1, 10)'
    sql = (
        f"SELECT {SIGNATURE_COLUMNS}, decision, {day} AS day, count(*), min(id), min(seq), max(seq), "  # noqa: S608
        f"{SIGNATURE_HASH if pg else 'NULL'} "
        f"FROM {_table()} WHERE {where} GROUP BY {SIGNATURE_COLUMNS}, decision, day"
    )
    if not pg:
        yield from _stream(sql, params)
        return
    # The planner cannot know how few signatures there are (it assumes one group per row) and would sort
    # a million wide rows; a hash aggregate over the few thousand real groups is what we want.
    with connection.cursor() as cursor:
        cursor.execute(f"SET work_mem = '{GROUP_WORK_MEM}'")
        cursor.execute("SET enable_sort = off")
    try:
        for row in _stream(sql, params):
            yield (*row[:8], row[8].isoformat(), *row[9:])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET work_mem")
            cursor.execute("RESET enable_sort")


def evidence_watermark(*, organization_id: int) -> int:
    """How far the organisation's evidence chain goes (its highest seq; 0 when empty): part of a change
    simulation's cache key, so new evidence means a new simulation."""
    from cordum.decisions.models import ChainHead

    return ChainHead.objects.filter(organization_id=organization_id).values_list("seq", flat=True).first() or 0


def evidence_args(*, organization_id: int, ids: list[int]) -> dict[int, tuple[str, str]]:
    """id -> (args, facts) (canonical JSON text) for a batch of evidence records."""
    if not ids:
        return {}
    rows = EvidenceRecord.objects.filter(organization_id=organization_id, id__in=ids).values_list(
        "id", "args", "facts")
    return {pk: (args, facts) for pk, args, facts in rows}


def evidence_decision_ids(*, organization_id: int, seqs: set[int]) -> dict[int, str]:
    """seq -> decision_id for sample records (one query on the organisation's chain index)."""
    if not seqs:
        return {}
    rows = EvidenceRecord.objects.filter(organization_id=organization_id, seq__in=seqs).values_list(
        "seq", "decision_id")
    return dict(rows)


# Up to this many calls of the sessions to replay are fetched with one plain query (PostgreSQL may then scan
# and sort in parallel, which it never does for a server-side cursor); more are streamed.
FETCH_ALL_ROWS = 400_000


def evidence_calls_in_session_order(*, window: Window, hashed: bool, sessions: list[int] | None = None,
                                    expected_rows: int | None = None) -> Iterator[tuple]:
    """Rows of (session, timestamp, seq, decision, signature) ordered by session then time: the order the
    sidecar enforced limits in. No args: callers evaluate each signature first from
    `evidence_signature_groups`.

    hashed (PostgreSQL): session and signature come as 64-bit hashes and the timestamp as epoch seconds,
    so a million rows decode quickly; otherwise session_id, the stored timestamp and the signature tuple.
    sessions (hashed only): just the calls of these session hashes; expected_rows: how many calls they have.
    """
    where, params = window.where()
    if hashed and sessions is not None:
        where, params = f"{where} AND {SESSION_HASH} = ANY(%s::bigint[])", [*params, sessions]
    if not hashed:
        order = f"FROM {_table()} WHERE {where} ORDER BY session_id, \"timestamp\", seq"
        sql = f"SELECT session_id, \"timestamp\", seq, decision, {SIGNATURE_COLUMNS} {order}"  # noqa: S608
        for row in _stream(sql, params):
            yield (*row[:4], row[4:])
        return
    # Sessions in hash order (any order of sessions will do; a bigint sorts much faster than text),
    # calls within a session by time then chain position.
    sql = (
        f"SELECT {SESSION_HASH} AS s, extract(epoch FROM \"timestamp\")::float8, seq, "  # noqa: S608
        f"decision, {SIGNATURE_HASH} FROM {_table()} WHERE {where} ORDER BY s, \"timestamp\", seq"
    )
    with connection.cursor() as cursor:  # room to sort in memory; no JIT (compiling costs more than it saves)
        cursor.execute(f"SET work_mem = '{GROUP_WORK_MEM}'")
        cursor.execute("SET jit = off")
    try:
        if expected_rows is not None and expected_rows <= FETCH_ALL_ROWS:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
            yield from rows
            return
        yield from _stream(sql, params)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET work_mem")
            cursor.execute("RESET jit")


def evidence_signatures(*, window: Window) -> list[tuple]:
    """Rows of (server, tool, args_digest, agent, team, environment, root, any_id, signature_hash): one per distinct
    call signature of the window (signature_hash is None on SQLite). The limits replay evaluates these
    first; its other passes carry only the 64-bit hash."""
    where, params = window.where()
    if connection.vendor != "postgresql":
        sql = f"SELECT {SIGNATURE_COLUMNS}, min(id), NULL FROM {_table()} WHERE {where} GROUP BY {SIGNATURE_COLUMNS}"  # noqa: S608
        return list(_stream(sql, params))
    sql = (
        f"SELECT {SIGNATURE_COLUMNS}, min(id), {SIGNATURE_HASH} FROM {_table()} WHERE {where} "  # noqa: S608
        f"GROUP BY {SIGNATURE_COLUMNS}"
    )
    return _small_aggregate(sql, params)


def evidence_session_stats(*, window: Window, write_digests: list[str] | None,
                           label_digests: list[str] | None = None) -> Iterator[tuple]:
    """Rows of (session_hash, calls, writes, busiest, duration_seconds, labelling), one per session (PostgreSQL):
    the aggregates `Replay.session_may_be_limited` decides on. writes counts the calls whose args_digest is in
    `write_digests` (the digests of the signatures that may count as writes: a superset of the write calls,
    cheaper to test than a signature; None: not counted, 0); labelling likewise counts the calls whose
    args_digest is in `label_digests` (signatures that may set a session data-flow label; None: 0); busiest is
    the most calls in one epoch-aligned UTC period of `BUSY_PERIOD` seconds; duration is from the first to the
    last call. Sessions are 64-bit hashes, as in the call stream (a collision would merge two sessions'
    aggregates, which only makes them look busier).
    """
    where, params = window.where()
    writes = "count(*) FILTER (WHERE args_digest = ANY(%s::text[]))" if write_digests else "0"
    labels = "count(*) FILTER (WHERE args_digest = ANY(%s::text[]))" if label_digests else "0"
    sql = (
        "SELECT s, sum(n)::bigint, sum(w)::bigint, max(n), extract(epoch FROM max(t1) - min(t0))::float8, "  # noqa: S608
        "sum(lb)::bigint FROM ("
        f"SELECT {SESSION_HASH} AS s, floor(extract(epoch FROM \"timestamp\") / {BUSY_PERIOD}) AS m, count(*) AS n, "
        f"{writes} AS w, {labels} AS lb, min(\"timestamp\") AS t0, max(\"timestamp\") AS t1 "
        f"FROM {_table()} WHERE {where} GROUP BY s, m) per_period GROUP BY s"
    )
    yield from _small_aggregate(
        sql, ([write_digests] if write_digests else []) + ([label_digests] if label_digests else []) + params)


def _small_aggregate(sql: str, params: list) -> list[tuple]:
    """A full scan aggregated into few rows (sessions, groups): a plain cursor, so PostgreSQL may scan in
    parallel (it never does for a server-side cursor), no JIT (compiling costs more than it saves here),
    and hash aggregates only (the planner cannot estimate how many rows a session filter keeps and would
    otherwise sort them all)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET work_mem = '{GROUP_WORK_MEM}'")
        cursor.execute("SET jit = off")
        cursor.execute("SET enable_sort = off")
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.execute("RESET work_mem")
            cursor.execute("RESET jit")
            cursor.execute("RESET enable_sort")


def evidence_unlimited_groups(*, window: Window, replayed_sessions: list[int]) -> Iterator[tuple]:
    """Rows of (signature_hash, decision, day, count, first_seq, last_seq) over the calls of every session
    NOT in `replayed_sessions` (session hashes): the calls no limit can touch, grouped (PostgreSQL)."""
    where, params = window.where()
    sql = (
        f"SELECT {SIGNATURE_HASH} AS h, decision, (\"timestamp\" AT TIME ZONE 'UTC')::date AS day, count(*), "  # noqa: S608
        f"min(seq), max(seq) FROM {_table()} WHERE {where} AND NOT ({SESSION_HASH} = ANY(%s::bigint[])) "
        "GROUP BY h, decision, day"
    )
    for row in _small_aggregate(sql, [*params, replayed_sessions]):
        yield (row[0], row[1], row[2].isoformat(), *row[3:])


def simulation_visible_to(simulation: Simulation, membership) -> bool:
    """A reader may open a simulation only if it replays no team's calls they may not read."""
    if membership is None:
        return True
    mine = membership.team_scope()
    if mine is None:
        return True
    return simulation.team_scope is not None and set(simulation.team_scope) <= set(mine)


def simulation_list(*, organization, membership=None) -> list[Simulation] | QuerySet[Simulation]:
    """Newest first, without the (large) report; its headline figures come as annotations. With `membership`,
    only the simulations it may open (see simulation_visible_to)."""
    from django.db.models.fields.json import KT

    qs = (
        Simulation.objects.filter(organization=organization)
        .select_related("created_by", "candidate_version", "baseline_version")
        .defer("report", "candidate_text")
        .annotate(
            changed_calls=KT("report__summary__changed_calls"),
            newly_denied=KT("report__summary__newly_denied"),
            total_calls=KT("report__summary__total_calls"),
        )
    )
    if membership is None or membership.team_scope() is None:
        return qs
    mine = set(membership.team_scope())
    return qs.filter(pk__in=[pk for pk, scope in qs.values_list("pk", "team_scope")
                             if scope is not None and set(scope) <= mine])


def simulation_get(*, organization, pk: int, membership=None) -> Simulation:
    from django.http import Http404
    from django.shortcuts import get_object_or_404

    simulation = get_object_or_404(
        Simulation.objects.select_related("created_by", "candidate_version", "baseline_version"),
        organization=organization, pk=pk,
    )
    if not simulation_visible_to(simulation, membership):
        raise Http404("No such simulation.")
    return simulation


def evidence_record_samples(*, organization, decision_ids: set[str], membership=None) -> dict[str, dict]:
    """decision_id -> {"url", "call"}: its evidence record page and what the call did ("write.file src/app.py").

    With `membership`, only records that member may open (their scope's), so a policy author is shown neither
    links that answer 404 nor what other teams' calls did.
    """
    from django.core.exceptions import PermissionDenied
    from django.urls import reverse

    from cordum.decisions.selectors import evidence_visible

    if not decision_ids:
        return {}
    records = EvidenceRecord.objects
    if membership is not None:
        try:
            records = evidence_visible(membership=membership)
        except PermissionDenied:
            return {}
    rows = records.filter(
        organization=organization, record_type="decision", decision_id__in=decision_ids
    ).values_list("decision_id", "pk", "action", "target")
    return {decision_id: {"url": reverse("decisions:record", kwargs={"pk": pk}),
                          "call": " ".join(part for part in (action, target) if part)}
            for decision_id, pk, action, target in rows}



def policy_change_get(*, repository, ref: str):
    """The PolicyChange of a branch or request head (with its simulation), or None before the first refresh."""
    from cordum.simulation.models import PolicyChange

    return (PolicyChange.objects.filter(repository=repository, ref=ref)
            .select_related("simulation", "simulation__baseline_version", "version").first())


def policy_change_states(*, repository) -> dict:
    """ref -> PolicyChange for a repository's heads (the branch list's simulation column)."""
    from cordum.simulation.models import PolicyChange

    return {c.ref: c for c in PolicyChange.objects.filter(repository=repository).select_related("simulation")
            .defer("simulation__report", "simulation__candidate_text")}


def policy_change_gates(*, change) -> dict:
    """The gates a change is judged by (the live branch's cordum.yaml) and, once its simulation completed, a
    verdict per gate: {"source", "errors", "verdicts", "passed"} (passed None: nothing to judge yet)."""
    from cordum.policy.gates import GATES_FILENAME, evaluate_gates, load_gates_text

    source = f"{GATES_FILENAME}@{change.gates_commit[:7]}" if change.gates_commit else GATES_FILENAME
    out = {"source": source, "present": change.gates_text is not None, "errors": [], "verdicts": [],
           "passed": None}
    loaded = load_gates_text(change.gates_text)
    if loaded.gates is None:
        out["errors"] = [issue.to_dict() for issue in loaded.errors]
        out["passed"] = False  # fail closed: gates that cannot be read pass nothing
        return out
    simulation = change.simulation
    if loaded.gates.empty or simulation is None or simulation.status != "completed" or not simulation.report:
        return out
    out["verdicts"] = evaluate_gates(loaded.gates, simulation.report)
    out["passed"] = all(v["passed"] for v in out["verdicts"])
    return out
