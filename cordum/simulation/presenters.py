"""Shapes a saved report for the templates: matrix cells, bar widths (server-rendered charts), links."""

from __future__ import annotations

from cordum.policy.simulate import DECISIONS
from cordum.simulation.selectors import evidence_record_samples

LABELS = {"allow": "allow", "require_approval": "approval", "deny": "deny"}


def _pct(n: int, total: int) -> float:
    return round(100.0 * n / total, 1) if total else 0.0


def report_view(simulation, *, membership=None) -> dict | None:
    """`membership`: link samples only to the evidence records that member may open."""
    report = simulation.report
    if not report:
        return None
    total = report["summary"]["total_calls"]
    matrix = report["matrix"]
    rows = []
    cell_max = max([matrix[b][a] for b in DECISIONS for a in DECISIONS] + [1])
    for before in DECISIONS:
        cells = []
        for after in DECISIONS:
            n = matrix[before][after]
            cells.append({"after": after, "count": n, "pct": _pct(n, total), "changed": before != after,
                          "shade": round(0.06 + 0.3 * n / cell_max, 2) if n else 0})  # light enough for text on it
        rows.append({"before": before, "cells": cells, "total": sum(matrix[before].values())})
    column_totals = [sum(matrix[b][a] for b in DECISIONS) for a in DECISIONS]

    per_day = report["approval_load"]["per_day"]
    day_max = max([max(d["before"], d["after"]) for d in per_day] + [1])
    days = [{**d, "before_w": _pct(d["before"], day_max), "after_w": _pct(d["after"], day_max)} for d in per_day]
    top = report["rules"]["top"]
    top_max = max([t["count"] for t in top] + [1])
    top_rules = [{**t, "w": _pct(t["count"], top_max)} for t in top]

    sample_ids: set[str] = set()
    for key in ("changed_by_rule", "changed_by_agent", "changed_calls"):
        for group in report.get(key, []):
            sample_ids.update(group.get("samples", []))
    known = evidence_record_samples(organization=simulation.organization, decision_ids=sample_ids,
                                    membership=membership)

    def samples(group):
        return [{"id": s, "short": s[-12:], **known.get(s, {"url": "", "call": ""})} for s in group.get("samples", [])]

    def changed_call(group):
        """The call as people read it (from a sample they may open), beside its before -> after."""
        calls = [known[s]["call"] for s in group.get("samples", []) if s in known and known[s]["call"]]
        return {**group, "sample_links": samples(group), "call": calls[0] if calls else ""}

    return {
        "summary": report["summary"],
        "matrix_rows": rows,
        "column_totals": column_totals,
        "decisions": DECISIONS,
        "labels": LABELS,
        "days": days,
        "approval_load": report["approval_load"],
        "top_rules": top_rules,
        "dead_rules": report["rules"]["dead"],
        "by_rule": [{**g, "sample_links": samples(g)} for g in report["changed_by_rule"]],
        "by_agent": [{**g, "sample_links": samples(g), "transitions_list": sorted(g["transitions"].items())}
                     for g in report["changed_by_agent"]],
        "changed_calls": [changed_call(g) for g in report["changed_calls"][:50]],
        "changed_calls_more": max(len(report["changed_calls"]) - 50, 0) + report.get("changed_calls_truncated", 0),
        "run": report.get("run", {}),
        "gate": simulation.gate,
        "drift": report.get("drift"),
    }


def compare_rows(left, right) -> list[dict]:
    """Side-by-side figures of two reports, with the difference."""
    a, b = left.report or {}, right.report or {}
    if not a or not b:
        return []
    rows = []
    for key, label in (("total_calls", "Calls replayed"), ("changed_calls", "Calls that change decision"),
                       ("newly_denied", "Newly denied"), ("newly_require_approval", "Newly need approval"),
                       ("newly_allowed", "Newly allowed"), ("distinct_signatures", "Distinct signatures")):
        x, y = a["summary"][key], b["summary"][key]
        rows.append({"label": label, "left": x, "right": y, "delta": y - x})
    for before in DECISIONS:
        for after in DECISIONS:
            x, y = a["matrix"][before][after], b["matrix"][before][after]
            rows.append({"label": f"{before} → {after}", "left": x, "right": y, "delta": y - x})
    x, y = a["approval_load"]["avg_per_day_after"], b["approval_load"]["avg_per_day_after"]
    rows.append({"label": "Approvals per day (after)", "left": x, "right": y, "delta": round(y - x, 2)})
    rows.append({"label": "Dead rules", "left": ", ".join(a["rules"]["dead"]) or "—",
                 "right": ", ".join(b["rules"]["dead"]) or "—", "delta": ""})
    return rows


def change_report_view(simulation, *, membership) -> dict | None:
    """The report as a change page shows it: the organisation-wide figures (matrix, counts, approvals per day,
    rules that never match: what the gates judge), and the example calls only of the teams the viewer may read
    (the same rule as evidence: team_scope), each linked to an evidence record they may open. Rows of other
    teams are counted, not shown."""
    view = report_view(simulation, membership=membership)
    if view is None:
        return None
    scope = membership.team_scope() if membership is not None else None
    if scope is None:
        view["hidden_rows"] = 0
        return view
    from cordum.accounts.models import Team

    readable = set(Team.objects.filter(pk__in=scope).values_list("slug", flat=True))

    def visible_samples(group):
        return {**group, "sample_links": [s for s in group["sample_links"] if s["url"]]}

    by_agent = [g for g in view["by_agent"] if g["team"] in readable]
    changed = [g for g in view["changed_calls"] if g["team"] in readable]
    view["hidden_rows"] = (len(view["by_agent"]) - len(by_agent)) + (len(view["changed_calls"]) - len(changed))
    view["by_agent"] = [visible_samples(g) for g in by_agent]
    view["changed_calls"] = [visible_samples(g) for g in changed]
    view["by_rule"] = [visible_samples(g) for g in view["by_rule"]]
    return view
