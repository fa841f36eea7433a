from rest_framework import serializers

from cordum.approvals.choices import ReviewDecision
from cordum.approvals.models import ApprovalRequest
from cordum.approvals.selectors import approval_diff_for


class ApprovalOpenSerializer(serializers.Serializer):
    """POST /api/v1/approvals (sidecar), exactly the contract's fields."""

    decision_id = serializers.CharField(max_length=64)
    session_id = serializers.CharField(allow_null=True, max_length=128, allow_blank=True, required=False, default="")
    server = serializers.CharField(allow_null=True, max_length=200, allow_blank=True, required=False, default="")
    tool = serializers.CharField(max_length=200)
    action = serializers.CharField(allow_null=True, max_length=200, allow_blank=True, required=False, default="")
    target = serializers.CharField(allow_null=True, allow_blank=True, required=False, default="")
    topic = serializers.CharField(allow_null=True, max_length=300, allow_blank=True, required=False, default="")
    risk_tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list,
                                      allow_null=True)
    rule = serializers.CharField(max_length=200, allow_blank=True, allow_null=True, required=False, default="")
    reason = serializers.CharField(allow_null=True, allow_blank=True, required=False, default="")
    args_digest = serializers.RegexField(r"^sha256:[0-9a-f]{64}$", max_length=80)
    args = serializers.JSONField(required=False, default=dict, allow_null=True)
    diff = serializers.CharField(allow_null=True, allow_blank=True, required=False, default="", trim_whitespace=False,
                                 max_length=1_000_000)
    policy_version = serializers.CharField(allow_null=True, max_length=200, allow_blank=True, required=False, default="")
    timeout_seconds = serializers.IntegerField(min_value=1, required=False, default=900)
    on_timeout = serializers.ChoiceField(choices=["deny", "allow"], required=False, default="deny")
    reviewers = serializers.ListField(child=serializers.CharField(max_length=300), required=False, default=list,
                                      allow_null=True)
    allow_self_approval = serializers.BooleanField(required=False, default=False)


class ApprovalOpenedSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApprovalRequest
        fields = ["id", "state", "expires_at"]


class ApprovalStatusSerializer(serializers.ModelSerializer):
    """GET /api/v1/approvals/{id} (sidecar): the state and who decided."""

    reviewer = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = ["id", "state", "reviewer", "comment", "decided_at", "expires_at", "consumed_at"]

    def get_reviewer(self, obj) -> str | None:
        return obj.reviewer_email or None


class ApprovalConsumeSerializer(serializers.Serializer):
    args_digest = serializers.CharField(max_length=80)
    session_id = serializers.CharField(max_length=128, allow_blank=True, required=False, default="")
    tool = serializers.CharField(max_length=200)


class ApprovalRequestSerializer(serializers.ModelSerializer):
    """People's API: the whole request as a reviewer sees it."""

    agent = serializers.CharField(source="agent.name")
    diff = serializers.SerializerMethodField()
    agent_owner = serializers.SerializerMethodField()
    reviewer = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id", "state", "agent", "agent_owner", "decision_id", "session_id", "server", "tool", "action",
            "target", "topic", "risk_tags", "rule", "reason", "args_digest", "args", "diff", "policy_version",
            "reviewers", "allow_self_approval", "reviewer", "comment", "created_at", "expires_at",
            "decided_at", "consumed_at",
        ]

    def get_diff(self, obj) -> str:
        """The real diff only for a reviewer eligible to decide (context "membership"); "" for anyone else."""
        return approval_diff_for(approval=obj, membership=self.context.get("membership"))

    def get_agent_owner(self, obj) -> str | None:
        owner = obj.agent.owner
        return (owner.email or owner.username) if owner else None

    def get_reviewer(self, obj) -> str | None:
        return obj.reviewer_email or None


class ApprovalDecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=ReviewDecision.choices)
    comment = serializers.CharField(allow_blank=True, required=False, default="", max_length=2000)
