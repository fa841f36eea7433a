"""REST API: the sidecar heartbeat (agent token), the fleet and rollouts (people, by role)."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from cordum.accounts.access import HasOrgPermission, IsAgent
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError, NotFound
from cordum.common.notify import wait_for
from cordum.policies.services import bundle_channel
from cordum.rollouts import selectors, services
from cordum.rollouts.api import serializers as s
from cordum.rollouts.assignment import bundle_for_agent


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

    @extend_schema(responses=s.FleetSerializer)
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


READ_MANAGE = {"GET": Perm.VIEW_ROLLOUT, "HEAD": Perm.VIEW_ROLLOUT, "OPTIONS": Perm.VIEW_ROLLOUT,
               "POST": Perm.MANAGE_ROLLOUT, "PUT": Perm.MANAGE_ROLLOUT}


def _detail(rollout) -> dict:
    context = {"agents": selectors.rollout_agents(rollout=rollout),
               "stages": selectors.rollout_stage_views(rollout=rollout)}
    return s.RolloutDetailSerializer(rollout, context=context).data


class RolloutListApi(APIView):
    permission_classes = [HasOrgPermission]
    required_perm = Perm.VIEW_ROLLOUT

    @extend_schema(responses=s.RolloutSerializer(many=True))
    def get(self, request):
        rollouts = selectors.rollout_list(organization=self.organization, filters=request.query_params)[:200]
        return Response(s.RolloutSerializer(rollouts, many=True).data)


class RolloutDetailApi(APIView):
    permission_classes = [HasOrgPermission]
    required_perm = Perm.VIEW_ROLLOUT

    @extend_schema(responses=s.RolloutDetailSerializer)
    def get(self, request, pk):
        return Response(_detail(selectors.rollout_get(organization=self.organization, pk=pk)))


class _RolloutActionApi(APIView):
    """POST /api/v1/rollouts/{id}/<action>: policy authors and admins; the answer is the new detail."""

    permission_classes = [HasOrgPermission]
    required_perm = Perm.MANAGE_ROLLOUT
    input_serializer = None

    def act(self, rollout, data):  # pragma: no cover - overridden
        raise NotImplementedError

    def post(self, request, pk):
        rollout = selectors.rollout_get(organization=self.organization, pk=pk)
        data = {}
        if self.input_serializer is not None:
            serializer = self.input_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        self.act(rollout, data)
        return Response(_detail(selectors.rollout_get(organization=self.organization, pk=pk)))


@extend_schema(request=s.PromoteSerializer, responses=s.RolloutDetailSerializer)
class RolloutPromoteApi(_RolloutActionApi):
    input_serializer = s.PromoteSerializer

    def act(self, rollout, data):
        services.rollout_promote(rollout=rollout, actor=self.request.user, force=data.get("force", False))


@extend_schema(request=None, responses=s.RolloutDetailSerializer)
class RolloutStartApi(_RolloutActionApi):
    def act(self, rollout, data):
        services.rollout_start(rollout=rollout, actor=self.request.user)


@extend_schema(request=None, responses=s.RolloutDetailSerializer)
class RolloutPauseApi(_RolloutActionApi):
    def act(self, rollout, data):
        services.rollout_pause(rollout=rollout, actor=self.request.user)


@extend_schema(request=None, responses=s.RolloutDetailSerializer)
class RolloutResumeApi(_RolloutActionApi):
    def act(self, rollout, data):
        services.rollout_resume(rollout=rollout, actor=self.request.user)


@extend_schema(request=s.RollbackSerializer, responses=s.RolloutDetailSerializer)
class RolloutRollbackApi(_RolloutActionApi):
    input_serializer = s.RollbackSerializer

    def act(self, rollout, data):
        services.rollout_rollback(rollout=rollout, actor=self.request.user, reason=data.get("reason", ""))


class RolloutPlanApi(APIView):
    """GET/PUT /api/v1/rollout-plans/{repository_id}: the repository's rollout plan."""

    permission_classes = [HasOrgPermission]
    required_perms = READ_MANAGE

    @extend_schema(responses=s.RolloutPlanSerializer)
    def get(self, request, repository_id):
        from cordum.policies.selectors import repository_get

        repository = repository_get(organization=self.organization, pk=repository_id)
        plan = selectors.rollout_plan_get(repository=repository)
        if plan is None:
            raise NotFound("This repository has no rollout plan: new versions go to every agent at once.")
        return Response(s.RolloutPlanSerializer(plan).data)

    @extend_schema(request=s.RolloutPlanSerializer, responses=s.RolloutPlanSerializer)
    def put(self, request, repository_id):
        from cordum.policies.selectors import repository_get

        repository = repository_get(organization=self.organization, pk=repository_id)
        serializer = s.RolloutPlanSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        plan = services.rollout_plan_set(repository=repository, actor=request.user, **serializer.validated_data)
        return Response(s.RolloutPlanSerializer(plan).data)


def _if_none_match(request) -> set[str]:
    raw = request.headers.get("If-None-Match", "")
    tags = set()
    for part in raw.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        if part:
            tags.add(part)
    return tags


class BundleApi(APIView):
    """GET /api/v1/bundle[?wait=N]: the signed bundle for the calling agent (ETag, 304, long-poll)."""

    permission_classes = [IsAgent]

    @extend_schema(parameters=[OpenApiParameter("wait", int, description="long-poll up to N seconds (max 60)")],
                   responses={200: dict, 304: None, 404: dict})
    def get(self, request):
        agent = request.user.agent
        try:
            wait = int(request.query_params.get("wait", "0") or 0)
        except ValueError:
            raise CordumError("Invalid input: wait: must be an integer number of seconds.", {"field": "wait"}) from None
        wait = max(0, min(wait, settings.CORDUM_LONG_POLL_MAX_SECONDS))
        held = _if_none_match(request)

        def newer():
            selection = bundle_for_agent(agent=agent)
            if selection is None or selection.etag in held:
                return None
            return selection

        selection = wait_for(bundle_channel(agent.organization_id), wait, newer) if wait else newer()
        if selection is None:
            selection = bundle_for_agent(agent=agent)
            if selection is None:
                return JsonResponse(
                    {"message": "no valid policy has been published for this organisation", "extra": {}}, status=404
                )
            response = HttpResponse(status=304)
        else:
            response = JsonResponse(selection.body())
        response["ETag"] = selection.etag
        response["Cache-Control"] = "no-cache"
        return response
