from rest_framework import serializers

from cordum.simulation.choices import Baseline
from cordum.simulation.models import Simulation
from cordum.simulation.services import MAX_DAYS


class SimulationCreateSerializer(serializers.Serializer):
    candidate_version_id = serializers.IntegerField(required=False, allow_null=True)
    candidate_commit = serializers.CharField(required=False, allow_blank=True, max_length=40)
    policy_yaml = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    days = serializers.IntegerField(required=False, default=7, min_value=1, max_value=MAX_DAYS)
    team = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    agent = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    environment = serializers.CharField(required=False, allow_blank=True, default="", max_length=20)
    baseline = serializers.ChoiceField(choices=Baseline.choices, required=False, default=Baseline.RECORDED)
    fail_if_newly_denied_over = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class SimulationSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    candidate = serializers.SerializerMethodField()
    baseline_version = serializers.SerializerMethodField()
    window = serializers.SerializerMethodField()
    filters = serializers.SerializerMethodField()
    gate = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = Simulation
        fields = ["id", "url", "status", "progress", "rows_processed", "rows_total", "candidate", "baseline",
                  "baseline_version", "window", "filters", "gate", "report", "error", "created_by", "created_at",
                  "started_at", "finished_at"]

    def get_url(self, obj) -> str:
        from django.urls import reverse

        request = self.context.get("request")
        path = reverse("simulation:detail", kwargs={"pk": obj.pk})
        return request.build_absolute_uri(path) if request else path

    def get_candidate(self, obj) -> dict:
        return {"source": obj.candidate_source, "label": obj.candidate_label,
                "version_id": obj.candidate_version_id,
                "commit": obj.candidate_version.commit_sha if obj.candidate_version else None}

    def get_baseline_version(self, obj) -> str | None:
        return obj.baseline_version.version if obj.baseline_version else None

    def get_window(self, obj) -> dict:
        return {"days": obj.days, "start": obj.window_start, "end": obj.window_end}

    def get_filters(self, obj) -> dict:
        return {"team": obj.team, "agent": obj.agent, "environment": obj.environment}

    def get_gate(self, obj) -> dict | None:
        return obj.gate

    def get_created_by(self, obj) -> str | None:
        return obj.created_by.username if obj.created_by else None


class SimulationListSerializer(SimulationSerializer):
    class Meta(SimulationSerializer.Meta):
        fields = [f for f in SimulationSerializer.Meta.fields if f != "report"]
