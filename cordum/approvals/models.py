"""Approval requests: a risky tool call held by a sidecar until a person approves or denies it.

A request is bound to exactly the call that was reviewed (agent, session, tool, digest of the
arguments) and is used once: the sidecar forwards the call only after `consume` succeeds.
"""

import uuid

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import models
from django.utils import timezone

from cordum.approvals.choices import ApprovalScope, ApprovalState, ReviewDecision
from cordum.common.crypto import decrypt, encrypt

__all__ = ["ApprovalRequest", "ApprovalVote"]


class ApprovalRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("accounts.Agent", on_delete=models.CASCADE, related_name="approval_requests")

    # The evidence record this request belongs to, and the call it covers.
    decision_id = models.CharField(max_length=64)
    session_id = models.CharField(max_length=128, blank=True)
    server = models.CharField(max_length=200, blank=True)
    tool = models.CharField(max_length=200)
    action = models.CharField(max_length=200, blank=True)
    target = models.TextField(blank=True)
    topic = models.CharField(max_length=300, blank=True)
    risk_tags = models.JSONField(default=list, blank=True)
    rule = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    args_digest = models.CharField(max_length=80)
    args = models.JSONField(default=dict, blank=True)  # redacted per policy by the sidecar
    # Unified diff of a file write, built by the sidecar from the real (unredacted, credential-masked) arguments:
    # stored Fernet-encrypted (cordum.common.crypto) and emptied once the request is decided, expired or cancelled.
    # Read it through `diff_text`, and only after the reviewer-scope selectors let the reader see the request.
    diff = models.TextField(blank=True)
    policy_version = models.CharField(max_length=200, blank=True)

    # From the policy's approval settings.
    reviewers = models.JSONField(default=list, blank=True)  # ["role:reviewer", "team:payments", "user:a@x"]
    allow_self_approval = models.BooleanField(default=False)
    on_timeout = models.CharField(max_length=20, default="deny")
    # Distinct reviewers who must approve (the two-person rule); the agent's owner never counts when it is > 1.
    approvals_required = models.PositiveSmallIntegerField(default=1)
    # The policy's bound on "approve for this session" ({"max_calls", "max_minutes"}), or null: not offered.
    session_approval = models.JSONField(null=True, blank=True)

    state = models.CharField(max_length=20, choices=ApprovalState.choices, default=ApprovalState.PENDING)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_email = models.CharField(max_length=254, blank=True)  # as decided, kept if the user goes
    comment = models.TextField(blank=True)
    # Once approved: what the approval covers, and for a session answer the targets it covers.
    scope = models.CharField(max_length=10, choices=ApprovalScope.choices, blank=True)
    target_pattern = models.TextField(blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    # The link the chat notification carries: signed, single-use; only its sha256 is kept, and when it was used.
    link_digest = models.CharField(max_length=64, blank=True)
    link_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A sidecar retrying its POST gets the same request back (idempotent on the decision).
            models.UniqueConstraint(fields=["agent", "decision_id"], name="approval_unique_decision_per_agent"),
        ]
        indexes = [
            models.Index(fields=["organization", "state", "created_at"], name="approval_org_state_created"),
            models.Index(fields=["state", "expires_at"], name="approval_state_expires"),
        ]

    def __str__(self):
        return f"{self.agent} {self.action or self.tool} ({self.state})"

    @staticmethod
    def seal_diff(text: str) -> str:
        """The stored form of a diff: encrypted, or "" for none."""
        return encrypt(text) if text else ""

    @property
    def diff_text(self) -> str:
        """The diff in clear for an eligible reader; "" once purged (or unreadable with the current key)."""
        if not self.diff:
            return ""
        try:
            return decrypt(self.diff).decode()
        except InvalidToken:
            return ""

    @property
    def is_pending(self) -> bool:
        return self.state == ApprovalState.PENDING

    @property
    def is_overdue(self) -> bool:
        return self.state == ApprovalState.PENDING and self.expires_at <= timezone.now()


class ApprovalVote(models.Model):
    """One reviewer's answer to a request. A request needing two approvals collects two approve votes from
    distinct people before it is approved; one deny vote ends it."""

    approval = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    reviewer_email = models.CharField(max_length=254)  # as answered, kept if the user goes
    decision = models.CharField(max_length=20, choices=ReviewDecision.choices)
    target_pattern = models.TextField(blank=True)  # for approve_session
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["approval", "user"], name="approval_vote_once_per_reviewer"),
        ]

    def __str__(self):
        return f"{self.reviewer_email} {self.decision} {self.approval_id}"

    @property
    def approves(self) -> bool:
        return self.decision != ReviewDecision.DENY
