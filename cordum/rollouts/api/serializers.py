from rest_framework import serializers

from cordum.rollouts.models import SidecarInstance


class HeartbeatCountersSerializer(serializers.Serializer):
    allow = serializers.IntegerField(min_value=0, required=False, default=0)
    deny = serializers.IntegerField(min_value=0, required=False, default=0)
    require_approval = serializers.IntegerField(min_value=0, required=False, default=0)
    errors = serializers.IntegerField(min_value=0, required=False, default=0)


class HeartbeatSerializer(serializers.Serializer):
    sidecar_id = serializers.CharField(max_length=128)
    hostname = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    version = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    bundle_version = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True,
                                           default="")
    bundle_sequence = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    shadow_version = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True,
                                           default="")
    spool_depth = serializers.IntegerField(min_value=0, required=False, default=0)
    last_upload_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    counters = HeartbeatCountersSerializer(required=False, default=dict)
    interval_seconds = serializers.IntegerField(min_value=1, max_value=3600, required=False, default=15)


class HeartbeatResponseSerializer(serializers.Serializer):
    ok = serializers.BooleanField()


class SidecarSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name")
    team = serializers.CharField(source="agent.team.slug", default=None)
    version = serializers.CharField(source="software_version")
    is_stale = serializers.SerializerMethodField()
    expected_version = serializers.SerializerMethodField()
    is_old_version = serializers.SerializerMethodField()

    class Meta:
        model = SidecarInstance
        fields = ["sidecar_id", "agent", "team", "hostname", "version", "bundle_version", "bundle_sequence",
                  "shadow_version", "expected_version", "is_old_version", "is_stale", "spool_depth",
                  "last_upload_at", "counters", "interval_seconds", "first_seen_at", "last_seen_at"]

    def _row(self, obj):
        return self.context.get("rows", {}).get(obj.pk)

    def get_is_stale(self, obj) -> bool:
        row = self._row(obj)
        return row.is_stale if row else obj.is_stale()

    def get_expected_version(self, obj) -> str:
        row = self._row(obj)
        return row.expected_version if row else ""

    def get_is_old_version(self, obj) -> bool:
        row = self._row(obj)
        return row.is_old_version if row else False
