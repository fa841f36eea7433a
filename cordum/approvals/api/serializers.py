from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cordum.approvals.choices import ReviewDecision
from cordum.approvals.models import ApprovalRequest, ApprovalVote
from cordum.approvals.selectors import approval_diff_for
from cordum.policy.model import MAX_APPROVALS_REQUIRED


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
    approvals_required = serializers.IntegerField(min_value=1, max_value=MAX_APPROVALS_REQUIRED, required=False,
                                                  default=1)
    session_approval = serializers.JSONField(required=False, default=None, allow_null=True,
                                             help_text='The policy\'s bound on "approve for this session": '
                                                       '{"max_calls": N, "max_minutes": M}; null or false: not offered.')

    def validate_session_approval(self, value):
        if value is None or value is False:
            return None
        if not isinstance(value, dict) or not value or set(value) - {"max_calls", "max_minutes"} or not all(
                type(v) is int and 1 <= v <= 1_000_000 for v in value.values()):
            raise serializers.ValidationError(
                'must be null, false or {"max_calls": N, "max_minutes": M} with positive whole numbers.')
        return value


class ApprovalOpenedSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApprovalRequest
        fields = ["id", "state", "expires_at"]


class ApprovalVoteSerializer(serializers.ModelSerializer):
    """One reviewer's answer (a request needing two approvals lists both)."""

    reviewer = serializers.CharField(source="reviewer_email")
    decided_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = ApprovalVote
        fields = ["reviewer", "decision", "target_pattern", "comment", "decided_at"]


class ApprovalStatusSerializer(serializers.ModelSerializer):
    """GET /api/v1/approvals/{id} (sidecar): the state, who decided, and what an approval covers
    (`scope` once|session, `target_pattern` for a session answer)."""

    reviewer = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = ["id", "state", "reviewer", "comment", "decided_at", "expires_at", "consumed_at", "scope",
                  "target_pattern", "approvals_required", "approvals"]

    def get_reviewer(self, obj) -> str | None:
        return obj.reviewer_email or None

    @extend_schema_field(ApprovalVoteSerializer(many=True))
    def get_approvals(self, obj) -> list[dict]:
        return ApprovalVoteSerializer([v for v in obj.votes.all() if v.approves], many=True).data


class ApprovalConsumeSerializer(serializers.Serializer):
    args_digest = serializers.CharField(max_length=80)
    session_id = serializers.CharField(max_length=128, allow_blank=True, required=False, default="")
    tool = serializers.CharField(max_length=200)


class ApprovalRequestSerializer(serializers.ModelSerializer):
    """People's API: the whole request as a reviewer sees it."""

    agent = serializers.CharField(source="agent.name")
    diff = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()
    agent_owner = serializers.SerializerMethodField()
    reviewer = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id", "state", "agent", "agent_owner", "decision_id", "session_id", "server", "tool", "action",
            "target", "topic", "risk_tags", "rule", "reason", "args_digest", "args", "diff", "policy_version",
            "reviewers", "allow_self_approval", "approvals_required", "approvals", "session_approval", "scope",
            "target_pattern", "reviewer", "comment", "created_at", "expires_at", "decided_at", "consumed_at",
        ]

    @extend_schema_field(ApprovalVoteSerializer(many=True))
    def get_approvals(self, obj) -> list[dict]:
        """Who approved so far ("1 of 2 approvals" until the second distinct reviewer approves)."""
        return ApprovalVoteSerializer([v for v in obj.votes.all() if v.approves], many=True).data

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
    target_pattern = serializers.CharField(allow_blank=True, required=False, default="", max_length=1000,
                                           help_text="approve_session only: the targets the answer covers (a glob "
                                                     "that covers this call's target; default: the target itself)")
    comment = serializers.CharField(allow_blank=True, required=False, default="", max_length=2000)


class TimelineEntrySerializer(serializers.Serializer):
    decision_id = serializers.CharField(source="record.decision_id")
    timestamp = serializers.DateTimeField(source="record.timestamp")
    action = serializers.CharField(source="record.action")
    tool = serializers.CharField(source="record.tool")
    target = serializers.CharField(source="record.target")
    decision = serializers.CharField(source="record.decision")
    rule = serializers.CharField(source="record.rule")
    outcomes = serializers.SerializerMethodField()
    this = serializers.BooleanField()

    def get_outcomes(self, entry) -> list[dict]:
        return [{"outcome": outcome, "reviewer": reviewer or None} for outcome, reviewer in entry["outcomes"]]


class SimilarDecisionsSerializer(serializers.Serializer):
    pattern = serializers.CharField()
    approved = serializers.IntegerField()
    denied = serializers.IntegerField()
    reviewers = serializers.ListField(child=serializers.CharField())
    last_decided_at = serializers.DateTimeField(source="last.decided_at", default=None)
    last_state = serializers.CharField(source="last.state", default=None)
    last_reviewer = serializers.CharField(source="last.reviewer_email", default=None)


class ApprovalContextSerializer(serializers.Serializer):
    timeline = TimelineEntrySerializer(many=True)
    similar = SimilarDecisionsSerializer()
