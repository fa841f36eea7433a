"""Approvals API. Sidecars (agent token) open, wait on and consume requests; people (reviewer role)
list and decide them. Same services and the same checks as the HTML queue."""

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from cordum.accounts.access import HasOrgPermission, IsAgent
from cordum.accounts.permissions import Perm
from cordum.approvals import selectors, services
from cordum.approvals.api import serializers as s
from cordum.approvals.choices import ApprovalState
from cordum.approvals.models import ApprovalRequest
from cordum.common.errors import NotFound
from cordum.common.notify import wait_for


def _agent_approval(request, pk) -> ApprovalRequest:
    approval = (
        ApprovalRequest.objects.select_related("organization", "agent").filter(pk=pk, agent=request.user.agent).first()
    )
    if approval is None:
        raise NotFound("Approval request not found.")
    return approval


class ApprovalOpenApi(APIView):
    permission_classes = [IsAgent]

    @extend_schema(request=s.ApprovalOpenSerializer, responses={201: s.ApprovalOpenedSerializer})
    def post(self, request):
        serializer = s.ApprovalOpenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        approval, created = services.approval_request_create(agent=request.user.agent, data=serializer.validated_data)
        return Response(
            s.ApprovalOpenedSerializer(approval).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class ApprovalStatusApi(APIView):
    """GET ?wait=N long-polls: returns the moment the request is decided (Redis pub/sub wake-up)."""

    permission_classes = [IsAgent]

    @extend_schema(
        parameters=[OpenApiParameter("wait", int, description="seconds to wait for a decision (capped)")],
        responses={200: s.ApprovalStatusSerializer},
    )
    def get(self, request, pk):
        approval = services.approval_refresh(approval=_agent_approval(request, pk))
        try:
            wait = float(request.query_params.get("wait", "0") or 0)
        except ValueError:
            wait = 0.0
        wait = min(max(wait, 0.0), float(settings.CORDUM_LONG_POLL_MAX_SECONDS))
        if approval.state == ApprovalState.PENDING and wait > 0:
            # Wake at the deadline too, so the expiry decided on read is reported without delay.
            until_expiry = (approval.expires_at - timezone.now()).total_seconds() + 0.05
            wait_for(
                services.approval_channel(approval.pk),
                min(wait, max(until_expiry, 0.0)),
                lambda: ApprovalRequest.objects.filter(pk=approval.pk).exclude(state=ApprovalState.PENDING).exists(),
            )
            approval = services.approval_refresh(approval=approval)
        return Response(s.ApprovalStatusSerializer(approval).data)


class ApprovalConsumeApi(APIView):
    permission_classes = [IsAgent]

    @extend_schema(request=s.ApprovalConsumeSerializer, responses={200: s.ApprovalStatusSerializer})
    def post(self, request, pk):
        serializer = s.ApprovalConsumeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        approval = services.approval_consume(
            approval=_agent_approval(request, pk), agent=request.user.agent, **serializer.validated_data
        )
        return Response(s.ApprovalStatusSerializer(approval).data)


class ApprovalCancelApi(APIView):
    """The sidecar stopped waiting (its agent went away): pending -> cancelled."""

    permission_classes = [IsAgent]

    @extend_schema(request=None, responses={200: s.ApprovalStatusSerializer})
    def post(self, request, pk):
        approval = services.approval_cancel(approval=_agent_approval(request, pk), agent=request.user.agent)
        return Response(s.ApprovalStatusSerializer(approval).data)


# --- people -----------------------------------------------------------------------------------
class ApprovalRequestListApi(APIView):
    """Pending requests the caller may review (?state=decided for the history)."""

    permission_classes = [HasOrgPermission]
    required_perm = Perm.REVIEW_APPROVALS

    @extend_schema(
        parameters=[OpenApiParameter("state", str, description="pending (default), or a decided state, or 'decided'"),
                    *(OpenApiParameter(key, str, description=f"pending only: requests of this {key}")
                      for key in selectors.QUEUE_FILTERS)],
        responses={200: s.ApprovalRequestSerializer(many=True)},
    )
    def get(self, request):
        services.approvals_expire_due(organization=self.organization)
        state = request.query_params.get("state", "pending")
        if state == "pending":
            filters = {key: request.query_params.get(key, "").strip() for key in selectors.QUEUE_FILTERS}
            items = [item["approval"] for item in
                     selectors.approval_queue_for_reviewer(membership=self.membership, filters=filters)]
        else:
            filters = {} if state == "decided" else {"state": state}
            items = selectors.approval_history_list(membership=self.membership, filters=filters)[:500]
        return Response(s.ApprovalRequestSerializer(items, many=True, context={"membership": self.membership}).data)


class ApprovalRequestDetailApi(APIView):
    permission_classes = [HasOrgPermission]
    required_perm = Perm.REVIEW_APPROVALS

    @extend_schema(responses={200: s.ApprovalRequestSerializer})
    def get(self, request, pk):
        approval = selectors.approval_get(membership=self.membership, pk=pk)
        if approval is None:
            raise NotFound("Approval request not found.")
        return Response(s.ApprovalRequestSerializer(services.approval_refresh(approval=approval),
                                                    context={"membership": self.membership}).data)


class ApprovalRequestDecideApi(APIView):
    """POST {"decision": "approve"|"deny", "comment": ""}: 200, 403 (not a named reviewer / own agent),
    409 (already decided: the message names who decided)."""

    permission_classes = [HasOrgPermission]
    required_perm = Perm.REVIEW_APPROVALS

    @extend_schema(request=s.ApprovalDecideSerializer, responses={200: s.ApprovalRequestSerializer})
    def post(self, request, pk):
        serializer = s.ApprovalDecideSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        approval = selectors.approval_get(membership=self.membership, pk=pk)
        if approval is None:
            raise NotFound("Approval request not found.")
        approval = services.approval_decide(approval=approval, membership=self.membership, **serializer.validated_data)
        return Response(s.ApprovalRequestSerializer(approval, context={"membership": self.membership}).data)


class ApprovalRequestContextApi(APIView):
    """What the card shows beside the call: the session's recent calls (from the evidence the caller may read)
    and similar past decisions (same rule, tool and target pattern)."""

    permission_classes = [HasOrgPermission]
    required_perm = Perm.REVIEW_APPROVALS

    @extend_schema(responses={200: s.ApprovalContextSerializer})
    def get(self, request, pk):
        approval = selectors.approval_get(membership=self.membership, pk=pk)
        if approval is None:
            raise NotFound("Approval request not found.")
        context = selectors.approval_context(approval=approval, membership=self.membership)
        return Response(s.ApprovalContextSerializer(context).data)
