"""The reviewer's decision in the evidence trail: an `outcome` record linked by decision_id.

Records follow the wire contract ("Evidence upload"); the evidence pipeline stores them append-only
and hash-chained, idempotent on "<decision_id>:<outcome>".
"""

from datetime import datetime

from cordum.approvals.models import ApprovalRequest


def outcome_record(*, approval: ApprovalRequest, outcome: str, at: datetime) -> dict:
    return {
        "record_type": "outcome",
        "decision_id": approval.decision_id,
        "outcome": outcome,
        "reviewer": approval.reviewer_email or None,
        "comment": approval.comment or "",
        "error": "",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "duration_ms": max(0, int((at - approval.created_at).total_seconds() * 1000)),
    }


def evidence_outcome_append(*, approval: ApprovalRequest, outcome: str, at: datetime) -> None:
    """Append the outcome record for the approval's decision (same transaction as the state change)."""
    from cordum.decisions.services import evidence_append

    evidence_append(
        organization=approval.organization,
        agent=approval.agent,
        records=[outcome_record(approval=approval, outcome=outcome, at=at)],
    )
