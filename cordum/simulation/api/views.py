"""Simulation API: authors/admins start a run (CI on every PR), auditors read the reports."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from cordum.accounts.access import HasOrgPermission
from cordum.accounts.permissions import Perm
from cordum.common.notify import wait_for
from cordum.simulation import selectors, services
from cordum.simulation.api import serializers as s


class SimulationListCreateApi(APIView):
    permission_classes = [HasOrgPermission]
    required_perms = {"GET": Perm.VIEW_SIMULATION, "POST": Perm.RUN_SIMULATION}

    @extend_schema(responses=s.SimulationListSerializer(many=True))
    def get(self, request):
        qs = selectors.simulation_list(organization=self.organization, membership=self.membership)[:100]
        return Response(s.SimulationListSerializer(qs, many=True, context={"request": request}).data)

    @extend_schema(request=s.SimulationCreateSerializer, responses={202: s.SimulationSerializer})
    def post(self, request):
        serializer = s.SimulationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        simulation = services.simulation_create(organization=self.organization, user=request.user,
                                                **serializer.validated_data)
        simulation.refresh_from_db()
        return Response(s.SimulationSerializer(simulation, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class SimulationDetailApi(APIView):
    permission_classes = [HasOrgPermission]
    required_perm = Perm.VIEW_SIMULATION

    @extend_schema(
        parameters=[OpenApiParameter("wait", int, description="long-poll: wait up to N seconds for completion")],
        responses=s.SimulationSerializer,
    )
    def get(self, request, pk: int):
        simulation = selectors.simulation_get(organization=self.organization, pk=pk, membership=self.membership)
        wait = request.query_params.get("wait", "")
        if wait.isdigit() and int(wait) > 0 and not simulation.is_finished:
            timeout = min(int(wait), settings.CORDUM_LONG_POLL_MAX_SECONDS)

            def finished():
                simulation.refresh_from_db()
                return simulation.is_finished

            wait_for(services.simulation_channel(simulation.pk), timeout, finished)
        return Response(s.SimulationSerializer(simulation, context={"request": request}).data)
