"""Dashboard: the panel (decisions in the last 24 hours) and the trends of the last two weeks, within what this
member may read."""

import statistics
from collections import defaultdict
from datetime import timedelta
from urllib.parse import urlencode

from django.db.models import Count
from django.db.models.functions import TruncDay
from django.urls import reverse
from django.utils import timezone

from cordum.accounts.permissions import Perm
from cordum.decisions.choices import DecisionValue, Outcome, RecordType
from cordum.decisions.presenters import decision_chart_svg
from cordum.decisions.selectors import decision_counts, evidence_visible


def panel(*, membership) -> dict | None:
    if not membership.has_perm(Perm.VIEW_OWN_TEAM):
        return None
    since = timezone.now() - timedelta(hours=24)
    rows = (
        evidence_visible(membership=membership)
        .filter(timestamp__gte=since, record_type=RecordType.DECISION)
        .values("decision").annotate(n=Count("id")).order_by()
    )
    counts = {r["decision"]: r["n"] for r in rows}
    total = sum(counts.values())
    detail = ", ".join(f"{counts.get(d, 0)} {d.replace('_', ' ')}" for d in ("allow", "require_approval", "deny"))
    return {"title": "Tool calls, last 24 h", "value": total, "detail": detail, "url": reverse("decisions:explorer")}


TREND_DAYS = 14
TIME_TO_DECISION_SAMPLE = 20_000  # held calls looked at for the medians (the most recent)


def _explorer(**params) -> str:
    return f"{reverse('decisions:explorer')}?{urlencode({k: v for k, v in params.items() if v})}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _percentiles(waits: dict, *, link) -> list[dict]:
    """Per key: how many held calls were decided, and the p50 and p90 of their waits, slowest p90 first."""
    rows = []
    for key, values in waits.items():
        ordered = sorted(values)
        p90 = statistics.quantiles(ordered, n=10, method="inclusive")[8] if len(ordered) > 1 else ordered[0]
        rows.append({"key": key, "decided": len(ordered), "p50_s": statistics.median(ordered), "p90_s": p90,
                     "url": link(key)})
    return sorted(rows, key=lambda r: (-r["p90_s"], r["key"]))[:10]


def trends(*, membership, days: int = TREND_DAYS) -> dict | None:
    """The last `days` days as charts and tables, each linking to the explorer filtered on what it shows."""
    if not membership.has_perm(Perm.VIEW_OWN_TEAM):
        return None
    visible = evidence_visible(membership=membership)
    end = timezone.now()
    start = (end - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = decision_counts(qs=visible, filters={"start": start, "end": end})

    def bar_href(when, decision):
        return _explorer(start=f"{when:%Y-%m-%d}", end=f"{when + timedelta(days=1):%Y-%m-%d}", decision=decision)

    decisions = visible.filter(record_type=RecordType.DECISION, timestamp__gte=start)
    held = list(decisions.filter(decision=DecisionValue.REQUIRE_APPROVAL).order_by("-timestamp")
                .values_list("decision_id", "timestamp", "team_slug", "rule")[:TIME_TO_DECISION_SAMPLE])
    held_at = {decision_id: (opened, team, rule) for decision_id, opened, team, rule in held}
    waits: dict = defaultdict(list)
    by_team: dict = defaultdict(list)
    by_rule: dict = defaultdict(list)
    for decision_id, outcome_at in (visible.filter(
            record_type=RecordType.OUTCOME, decision_id__in=list(held_at),
            outcome__in=(Outcome.APPROVED, Outcome.DENIED)).values_list("decision_id", "timestamp")):
        opened, team, rule = held_at[decision_id]
        wait = (outcome_at - opened).total_seconds()
        waits[opened.date()].append(wait)
        by_team[team or "(no team)"].append(wait)
        by_rule[rule or "(default)"].append(wait)
    opened_per_day = defaultdict(int)
    for _, opened, _team, _rule in held:
        opened_per_day[opened.date()] += 1
    approvals = [
        {"day": day, "opened": opened_per_day[day], "decided": len(waits[day]),
         "median_s": _median(waits[day]),
         "url": _explorer(start=f"{day:%Y-%m-%d}", end=f"{day + timedelta(days=1):%Y-%m-%d}",
                          decision=DecisionValue.REQUIRE_APPROVAL)}
        for day in sorted(opened_per_day)
    ]
    peak_opened = max((a["opened"] for a in approvals), default=0) or 1
    for a in approvals:
        a["width"] = round(100 * a["opened"] / peak_opened)

    top_denying = [
        {**row, "url": _explorer(rule=row["rule"], decision=DecisionValue.DENY, start=f"{start:%Y-%m-%d}")}
        for row in decisions.filter(decision=DecisionValue.DENY).exclude(rule="")
        .values("rule").annotate(n=Count("id")).order_by("-n", "rule")[:5]
    ]

    version_rows = (decisions.annotate(day=TruncDay("timestamp")).values("day", "policy_version")
                    .annotate(n=Count("id")).order_by("day"))
    by_day: dict = defaultdict(dict)
    totals: dict = defaultdict(int)
    for row in version_rows:
        by_day[row["day"].date()][row["policy_version"]] = row["n"]
        totals[row["policy_version"]] += row["n"]
    versions = [v for v, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:4]]
    fleet_versions = [
        {"day": day, "shares": [
            {"version": v, "n": n, "percent": round(100 * n / sum(per.values())),
             "url": _explorer(policy_version=v, start=f"{day:%Y-%m-%d}", end=f"{day + timedelta(days=1):%Y-%m-%d}")}
            for v in versions if (n := per.get(v, 0))]}
        for day, per in sorted(by_day.items())
    ]
    return {
        "days": days,
        "chart": decision_chart_svg(counts, href=bar_href),
        "approvals": approvals,
        "wait_by_team": _percentiles(by_team, link=lambda team: _explorer(
            team=team if team != "(no team)" else "", decision=DecisionValue.REQUIRE_APPROVAL, start=f"{start:%Y-%m-%d}")),
        "wait_by_rule": _percentiles(by_rule, link=lambda rule: _explorer(
            rule=rule if rule != "(default)" else "", decision=DecisionValue.REQUIRE_APPROVAL, start=f"{start:%Y-%m-%d}")),
        "top_denying": top_denying,
        "versions": versions,
        "fleet_versions": fleet_versions,
    }
