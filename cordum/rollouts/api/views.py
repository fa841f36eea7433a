"""REST API: the sidecar heartbeat (agent token), the fleet and rollouts (people, by role)."""

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from cordum.accounts.access import HasOrgPermission, IsAgent
from cordum.accounts.permissions import Perm
from cordum.rollouts import selectors, services
from cordum.rollouts.api import serializers as s


class HeartbeatApi(APIView):
    """A sidecar reports its status every `interval_seconds` (15 s by default)."""

    permission_classes = [IsAuthenticated, IsAgent]

    @extend_schema(request=s.HeartbeatSerializer, responses=s.HeartbeatResponseSerializer)
    def post(self, request):
        serializer = s.HeartbeatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.sidecar_heartbeat_record(agent=request.user.agent, data=serializer.validated_data)
        return Response({"ok": True})


class FleetApi(APIView):
    permission_classes = [HasOrgPermission]
    required_perm = Perm.VIEW_ROLLOUT

    @extend_schema(responses=s.SidecarSerializer(many=True))
    def get(self, request):
        rows = selectors.fleet_rows(organization=self.organization, filters=request.query_params)
        summary = selectors.fleet_summary(organization=self.organization, rows=rows)
        data = s.SidecarSerializer([r.sidecar for r in rows], many=True,
                                   context={"rows": {r.sidecar.pk: r for r in rows}}).data
        return Response({
            "summary": {"text": summary.text, "target_version": summary.target_version,
                        "on_target": summary.on_target, "live": summary.live, "stale": summary.stale,
                        "total": summary.total, "by_version": summary.by_version},
            "sidecars": data,
        })
