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

from cordum.accounts.models import Membership
from cordum.decisions.models import EvidenceRecord
from cordum.simulation.models import Simulation

FETCH_SIZE = 2000
GROUP_WORK_MEM = "64MB"
SIGNATURE_COLUMNS = "server, tool, args_digest, agent_name, team_slug, environment"


@dataclass(frozen=True)
class Window:
    organization_id: int
    start: dt.datetime
    end: dt.datetime
    team: str = ""
    agent: str = ""
    environment: str = ""

    @classmethod
    def of(cls, simulation: Simulation) -> Window:
        return cls(simulation.organization_id, simulation.window_start, simulation.window_end,
                   simulation.team, simulation.agent, simulation.environment)

    def where(self) -> tuple[str, list]:
        sql = ["organization_id = %s", "record_type = 'decision'", "\"timestamp\" >= %s", "\"timestamp\" < %s"]
        params: list = [self.organization_id, self.start, self.end]
        for column, value in (("team_slug", self.team), ("agent_name", self.agent), ("environment", self.environment)):
            if value:
                sql.append(f"{column} = %s")
                params.append(value)
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
    """Rows of (server, tool, args_digest, agent, team, environment, decision, day, count, args, samples).

    One row per distinct call signature, recorded decision and UTC day; the args ride along as an aggregate
    (identical args_digest means identical arguments). `samples` are the smallest and largest decision id of
    the group: plain aggregates, so PostgreSQL can hash-aggregate (no ordered aggregate forcing a sort) and
    the in-memory CLI path picks exactly the same ones.
    """
    where, params = window.where()
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT {SIGNATURE_COLUMNS}, decision, "  # noqa: S608 - constant identifiers, values are parameters
            "(\"timestamp\" AT TIME ZONE 'UTC')::date AS day, count(*), min(args COLLATE \"C\"), "
            "min(decision_id COLLATE \"C\"), max(decision_id COLLATE \"C\") "
            f"FROM {_table()} WHERE {where} "
            f"GROUP BY {SIGNATURE_COLUMNS}, decision, day"
        )
        with connection.cursor() as cursor:  # room for an in-memory hash aggregate of many signatures
            cursor.execute(f"SET work_mem = '{GROUP_WORK_MEM}'")
        try:
            for row in _stream(sql, params):
                yield (*row[:7], row[7].isoformat(), row[8], row[9], (row[10], row[11]))
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET work_mem")
        return
    sql = (
        f"SELECT {SIGNATURE_COLUMNS}, decision, substr(\"timestamp\", 1, 10) AS day, count(*), min(args), "  # noqa: S608
        f"min(decision_id), max(decision_id) FROM {_table()} WHERE {where} "
        f"GROUP BY {SIGNATURE_COLUMNS}, decision, day"
    )
    for row in _stream(sql, params):
        yield (*row[:10], (row[10], row[11]))


def evidence_calls_in_session_order(*, window: Window) -> Iterator[tuple]:
    """Rows of (server, tool, args_digest, agent, team, environment, decision, session_id, timestamp,
    decision_id), ordered by session then time: the order the sidecar enforced limits in.

    No args: callers evaluate each signature first from `evidence_signature_groups`. On PostgreSQL the
    timestamp comes as seconds since the epoch (cheap to load); on SQLite as its stored string.
    """
    where, params = window.where()
    ts = 'extract(epoch FROM "timestamp")::float8' if connection.vendor == "postgresql" else '"timestamp"'
    sql = (
        f"SELECT {SIGNATURE_COLUMNS}, decision, session_id, {ts}, decision_id "  # noqa: S608
        f"FROM {_table()} WHERE {where} ORDER BY session_id, \"timestamp\", decision_id"
    )
    if connection.vendor != "postgresql":
        yield from _stream(sql, params)
        return
    with connection.cursor() as cursor:  # room to sort in memory
        cursor.execute(f"SET work_mem = '{GROUP_WORK_MEM}'")
    try:
        yield from _stream(sql, params)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET work_mem")


def simulation_list(*, organization) -> QuerySet[Simulation]:
    return (
        Simulation.objects.filter(organization=organization)
        .select_related("created_by", "candidate_version", "baseline_version")
        .defer("report", "candidate_text")
    )


def simulation_get(*, organization, pk: int) -> Simulation:
    from django.shortcuts import get_object_or_404

    return get_object_or_404(
        Simulation.objects.select_related("created_by", "candidate_version", "baseline_version"),
        organization=organization, pk=pk,
    )


def evidence_record_links(*, organization, decision_ids: set[str]) -> dict[str, str]:
    """decision_id -> URL of its evidence record page (empty when that page does not exist)."""
    from django.urls import NoReverseMatch, reverse

    if not decision_ids:
        return {}
    rows = EvidenceRecord.objects.filter(
        organization=organization, record_type="decision", decision_id__in=decision_ids
    ).values_list("decision_id", "pk")
    out = {}
    for decision_id, pk in rows:
        try:
            out[decision_id] = reverse("decisions:record", kwargs={"pk": pk})
        except NoReverseMatch:
            return {}
    return out


def membership_can_run(membership: Membership) -> bool:
    from cordum.accounts.permissions import Perm

    return membership.has_perm(Perm.RUN_SIMULATION)
