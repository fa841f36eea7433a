"""Evidence API: sidecar uploads (agent token) and the SIEM pull (people/CI tokens with audit rights)."""

import os

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from cordum.accounts.access import HasOrgPermission, IsAgent
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError
from cordum.decisions import selectors, services
from cordum.decisions.api import serializers as s

MAX_UPLOAD_BYTES = int(os.environ.get("CORDUM_EVIDENCE_MAX_UPLOAD_BYTES", str(32 * 1024 * 1024)))


class EvidenceUploadApi(APIView):
    """POST /api/v1/decisions: a batch of evidence records; 202 once durably queued."""

    permission_classes = [IsAgent]

    @extend_schema(request=s.EvidenceUploadSerializer, responses={202: s.EvidenceAcceptedSerializer})
    def post(self, request):
        # Read the stream ourselves: Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) would turn a sidecar's
        # batch with large redacted args into an HTML 400 that names no record. Our own cap answers in JSON.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_UPLOAD_BYTES:
            raise CordumError(
                f"Upload too large: {length} bytes (at most {MAX_UPLOAD_BYTES}); send smaller batches.",
                {"field": "records", "max_bytes": MAX_UPLOAD_BYTES}, status_code=413,
            )
        body = request._request.read(MAX_UPLOAD_BYTES + 1)  # raw bytes: validated and staged without a DRF parser
        accepted = services.evidence_upload_enqueue(agent=request.user.agent, body=body)
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


class EvidenceListApi(APIView):
    """GET /api/v1/evidence?cursor=...: the trail in chain order, for SIEM pulls (at-least-once, resumable)."""

    permission_classes = [HasOrgPermission]
    required_perm = Perm.VIEW_OWN_TEAM

    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str, description="next_cursor of the previous page; omit to start"),
            OpenApiParameter("limit", int, description="records per page (max 5000, default 1000)"),
        ],
        responses=s.EvidencePageSerializer,
    )
    def get(self, request):
        try:
            limit = min(max(int(request.query_params.get("limit", 1000)), 1), 5000)
        except ValueError:
            raise CordumError("Invalid input: limit: must be an integer.", {"field": "limit"}) from None
        page = selectors.evidence_siem_page(
            membership=self.membership, filters=request.query_params, cursor=request.query_params.get("cursor"),
            limit=limit,
        )
        return Response(page)
