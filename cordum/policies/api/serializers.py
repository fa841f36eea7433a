from django.urls import reverse
from rest_framework import serializers

from cordum.policies.models import PolicyBundle, PolicyRepository, PolicyVersion, SigningKey


class PolicyRepositorySerializer(serializers.ModelSerializer):
    has_credentials = serializers.SerializerMethodField()
    webhook_url = serializers.SerializerMethodField()
    live_version = serializers.SerializerMethodField()

    class Meta:
        model = PolicyRepository
        fields = ["id", "name", "url", "branch", "policy_path", "is_enabled", "has_credentials", "webhook_url",
                  "sync_status", "sync_progress", "sync_message", "last_synced_at", "last_error", "branch_heads",
                  "live_version", "created_at"]

    def get_has_credentials(self, obj) -> bool:
        return bool(obj.credentials_encrypted)

    def get_webhook_url(self, obj) -> str:
        path = reverse("git_webhook", args=[obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_live_version(self, obj) -> str | None:
        live = obj.versions.filter(is_live=True).only("version").first()
        return live.version if live else None


class PolicyRepositoryWriteSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    url = serializers.CharField(max_length=500)
    branch = serializers.CharField(max_length=200, default="main")
    policy_path = serializers.CharField(max_length=300, default="safety.yaml")
    credentials = serializers.CharField(required=False, allow_blank=True, default="", write_only=True,
                                        help_text="https access token or ssh deploy key (stored encrypted)")
    webhook_secret = serializers.CharField(required=False, allow_blank=True, default="", write_only=True,
                                           help_text="Generated when empty; returned once on create")
    is_enabled = serializers.BooleanField(default=True)


class PolicyRepositoryUpdateSerializer(PolicyRepositoryWriteSerializer):
    def __init__(self, *args, **kwargs):
        kwargs["partial"] = True
        super().__init__(*args, **kwargs)
        for f in self.fields.values():
            f.required = False
            f.default = serializers.empty


class PolicyVersionSerializer(serializers.ModelSerializer):
    repository = serializers.SlugRelatedField(slug_field="name", read_only=True)
    repository_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = PolicyVersion
        fields = ["id", "repository", "repository_id", "commit_sha", "parent_sha", "version", "tag", "branches",
                  "author", "author_email", "message", "committed_at", "is_valid", "is_live", "errors", "warnings",
                  "content_sha256"]


class PolicyVersionDetailSerializer(PolicyVersionSerializer):
    class Meta(PolicyVersionSerializer.Meta):
        fields = PolicyVersionSerializer.Meta.fields + ["source_text", "policy"]


class SigningKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = SigningKey
        fields = ["id", "key_id", "alg", "public_key", "status", "created_at", "retired_at"]


class PolicyBundleSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="version.version", read_only=True)
    repository = serializers.CharField(source="repository.name", read_only=True)

    class Meta:
        model = PolicyBundle
        fields = ["id", "sequence", "version", "repository", "rollback", "etag", "manifest", "created_at"]


# --- tool pinning -----------------------------------------------------------------------------------------------
DRIFT_TEXT_MAX = 100_000  # characters of one tool description
DRIFT_SCHEMA_MAX = 131_072  # bytes of one input schema as canonical JSON


class DriftSideSerializer(serializers.Serializer):
    """A tool as pinned or as listed: its digest must be the digest of the text that comes with it."""

    digest = serializers.RegexField(r"^sha256:[0-9a-f]{64}$")
    description = serializers.CharField(max_length=DRIFT_TEXT_MAX, allow_blank=True, trim_whitespace=False,
                                        required=False, default="")
    input_schema = serializers.DictField(required=False, default=dict)


class ToolDriftReportSerializer(serializers.Serializer):
    server = serializers.CharField(max_length=200)
    tool = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=["new", "changed", "removed"])
    action = serializers.ChoiceField(choices=["deny", "require_approval", "allow"])
    locked = DriftSideSerializer(allow_null=True, required=False, default=None)
    seen = DriftSideSerializer(allow_null=True, required=False, default=None)
    policy_version = serializers.CharField(max_length=200, allow_blank=True, allow_null=True, required=False)
    observed_at = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        from cordum.policy.evidence import canonical_json
        from cordum.policy.toollock import tool_digest

        needs = {"new": ("seen",), "changed": ("locked", "seen"), "removed": ("locked",)}[attrs["kind"]]
        for side in needs:
            if attrs.get(side) is None:
                raise serializers.ValidationError({side: f"a {attrs['kind']} tool needs '{side}'."})
        for side in ("locked", "seen"):
            value = attrs.get(side)
            if value is None:
                continue
            try:
                size = len(canonical_json(value["input_schema"]))
                digest = tool_digest(attrs["tool"], value["description"], value["input_schema"])
            except (TypeError, ValueError):
                raise serializers.ValidationError({side: "input_schema is not JSON the digest can be taken of."}) \
                    from None
            if size > DRIFT_SCHEMA_MAX:
                raise serializers.ValidationError({side: f"input_schema is over {DRIFT_SCHEMA_MAX} bytes."})
            if digest != value["digest"]:
                raise serializers.ValidationError({side: "digest does not match the description and input schema."})
        return attrs


class ToolDriftBatchSerializer(serializers.Serializer):
    sidecar_id = serializers.CharField(max_length=128, allow_blank=True, required=False, default="")
    drifts = ToolDriftReportSerializer(many=True, allow_empty=False, max_length=100)


class ToolDriftBatchResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()


class ToolDriftSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name")

    class Meta:
        from cordum.policies.models import ToolDrift

        model = ToolDrift
        fields = ["id", "agent", "sidecar_id", "server", "tool", "kind", "action", "locked_digest", "seen_digest",
                  "locked", "seen", "policy_version", "status", "lock_branch", "times_seen", "first_seen_at",
                  "last_seen_at"]


class ToolLockUpdateSerializer(serializers.Serializer):
    drifts = serializers.ListField(child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=500)


class LockProposalSerializer(serializers.Serializer):
    branch = serializers.CharField()
    commit = serializers.CharField()
    drifts = serializers.IntegerField()
