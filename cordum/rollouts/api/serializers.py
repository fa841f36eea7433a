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
    bundle_sequence = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, allow_null=True,
                                               default=None)
    shadow_version = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True,
                                           default="")
    spool_depth = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, default=0)
    last_upload_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    counters = HeartbeatCountersSerializer(required=False, default=dict)
    interval_seconds = serializers.FloatField(min_value=0, max_value=3600, required=False, default=15)


class HeartbeatResponseSerializer(serializers.Serializer):
    ok = serializers.BooleanField()


class SidecarSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name")
    team = serializers.CharField(source="agent.team.slug", default=None, allow_null=True)
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


class RolloutEventSerializer(serializers.Serializer):
    action = serializers.CharField()
    actor = serializers.CharField(source="actor_name")
    from_stage = serializers.IntegerField(allow_null=True)
    to_stage = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()
    created_at = serializers.DateTimeField()


class RolloutSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    repository = serializers.CharField(source="repository.name")
    from_version = serializers.CharField(source="from_version.version")
    to_version = serializers.CharField(source="to_version.version")
    from_sequence = serializers.IntegerField(source="from_bundle.sequence")
    to_sequence = serializers.IntegerField(source="to_bundle.sequence")
    state = serializers.CharField()
    stage_index = serializers.IntegerField()
    stage = serializers.JSONField()
    stages = serializers.JSONField()
    stage_started_at = serializers.DateTimeField(allow_null=True)
    soak_remaining_seconds = serializers.SerializerMethodField()
    guardrail = serializers.JSONField()
    halted_reason = serializers.CharField()
    rollback_sequence = serializers.IntegerField(source="rollback_bundle.sequence", default=None)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_soak_remaining_seconds(self, obj) -> int:
        return int(obj.soak_remaining()) if obj.is_active else 0


class RolloutDetailSerializer(RolloutSerializer):
    agents = serializers.SerializerMethodField()
    stage_rates = serializers.SerializerMethodField()
    events = RolloutEventSerializer(many=True, source="events.all")

    def get_agents(self, obj) -> list[dict]:
        return [{"agent": row["agent"].name, "team": row["agent"].team.slug if row["agent"].team_id else None,
                 "assigned_version": row["assigned"], "enforces_new": row["enforces_new"],
                 "shadows_new": row["shadows_new"],
                 "sidecars": [{"sidecar_id": s.sidecar_id, "bundle_version": s.bundle_version,
                               "shadow_version": s.shadow_version, "is_stale": s.is_stale()}
                              for s in row["sidecars"]]}
                for row in self.context["agents"]]

    def get_stage_rates(self, obj) -> list[dict]:
        return [{"index": v.index, "name": v.stage.get("name"), "status": v.status, "rates": v.rates}
                for v in self.context["stages"]]


class PromoteSerializer(serializers.Serializer):
    force = serializers.BooleanField(required=False, default=False)


class RollbackSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class RolloutPlanSerializer(serializers.Serializer):
    repository = serializers.IntegerField(source="repository_id", read_only=True)
    stages = serializers.JSONField()
    auto_start = serializers.BooleanField(required=False, default=True)
    auto_promote = serializers.BooleanField(required=False, default=False)
    max_new_restriction_rate = serializers.FloatField(required=False, default=0.05, min_value=0, max_value=1)
    forecast_margin = serializers.FloatField(required=False, default=0.05, min_value=0, max_value=1)
    min_calls = serializers.IntegerField(required=False, default=20, min_value=1, max_value=2**31 - 1)


class FleetSummarySerializer(serializers.Serializer):
    text = serializers.CharField()
    target_version = serializers.CharField(allow_null=True)
    on_target = serializers.IntegerField()
    live = serializers.IntegerField()
    stale = serializers.IntegerField()
    total = serializers.IntegerField()
    by_version = serializers.DictField(child=serializers.IntegerField())


class FleetSerializer(serializers.Serializer):
    """The fleet page as JSON: the summary line and one row per sidecar."""

    summary = FleetSummarySerializer()
    sidecars = SidecarSerializer(many=True)
