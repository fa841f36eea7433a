"""REST API for teams, memberships and agents: same role matrix as the HTML views."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cordum.accounts import selectors, services
from cordum.accounts.access import HasOrgPermission
from cordum.accounts.api import serializers as s
from cordum.accounts.models import Agent, Membership, Team
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError


def _team_by_slug(organization, slug, field="team"):
    if slug in (None, ""):
        return None
    team = Team.objects.filter(organization=organization, slug=slug).first()
    if team is None:
        raise CordumError(f"Invalid input: {field}: no team {slug!r} in this organisation.", {"field": field})
    return team


def _member_by_username(organization, username, field="owner"):
    if username in (None, ""):
        return None
    membership = Membership.objects.filter(organization=organization, user__username=username).select_related(
        "user").first()
    if membership is None:
        raise CordumError(f"Invalid input: {field}: no member {username!r} in this organisation.", {"field": field})
    return membership.user


class OrgScopedViewSet(viewsets.GenericViewSet):
    permission_classes = [HasOrgPermission]
    required_perm = Perm.MANAGE_ORG


class TeamViewSet(OrgScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.TeamSerializer
    queryset = Team.objects.none()  # for the schema; get_queryset scopes to the organisation

    def get_queryset(self):
        return selectors.team_list(organization=self.organization)

    def create(self, request):
        serializer = s.TeamSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        team = services.team_create(organization=self.organization, actor=request.user, **serializer.validated_data)
        return Response(s.TeamSerializer(team).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        team = self.get_object()
        serializer = s.TeamSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        team = services.team_update(team=team, actor=request.user, **serializer.validated_data)
        return Response(s.TeamSerializer(team).data)

    def destroy(self, request, pk=None):
        services.team_delete(team=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MembershipViewSet(OrgScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.MembershipSerializer
    queryset = Membership.objects.none()

    def get_queryset(self):
        return selectors.membership_list(organization=self.organization)

    @extend_schema(request=s.MembershipCreateSerializer, responses=s.MembershipSerializer)
    def create(self, request):
        serializer = s.MembershipCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data["teams"] = [_team_by_slug(self.organization, slug, "teams") for slug in data.get("teams", [])]
        membership = services.membership_create(organization=self.organization, actor=request.user, **data)
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.MembershipUpdateSerializer, responses=s.MembershipSerializer)
    def partial_update(self, request, pk=None):
        membership = self.get_object()
        serializer = s.MembershipUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "teams" in data:
            data["teams"] = [_team_by_slug(self.organization, slug, "teams") for slug in data["teams"]]
        membership = services.membership_update(membership=membership, actor=request.user, **data)
        return Response(s.MembershipSerializer(membership).data)

    def destroy(self, request, pk=None):
        services.membership_delete(membership=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentViewSet(OrgScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.AgentSerializer
    queryset = Agent.objects.none()

    def get_queryset(self):
        return selectors.agent_list(organization=self.organization, filters=self.request.query_params)

    @extend_schema(request=s.AgentCreateSerializer, responses={201: s.AgentTokenSerializer})
    def create(self, request):
        serializer = s.AgentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data["team"] = _team_by_slug(self.organization, data.get("team"))
        data["owner"] = _member_by_username(self.organization, data.get("owner")) or request.user
        agent, issued = services.agent_create(organization=self.organization, actor=request.user, **data)
        return Response({"agent": s.AgentSerializer(agent).data, "token": issued.plaintext},
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=s.AgentUpdateSerializer, responses=s.AgentSerializer)
    def partial_update(self, request, pk=None):
        agent = self.get_object()
        serializer = s.AgentUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "team" in data:
            data["team"] = _team_by_slug(self.organization, data["team"])
        if "owner" in data:
            data["owner"] = _member_by_username(self.organization, data["owner"])
        agent = services.agent_update(agent=agent, actor=request.user, **data)
        return Response(s.AgentSerializer(agent).data)

    @extend_schema(request=None, responses=s.AgentTokenSerializer)
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk=None):
        agent = get_object_or_404(self.get_queryset(), pk=pk, is_active=True)
        issued = services.agent_token_rotate(agent=agent, actor=request.user)
        return Response({"agent": s.AgentSerializer(agent).data, "token": issued.plaintext})

    @extend_schema(request=None, responses=s.AgentSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        agent = services.agent_revoke(agent=self.get_object(), actor=request.user)
        return Response(s.AgentSerializer(agent).data)
