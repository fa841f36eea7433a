"""REST API: repositories, versions (with review diffs for CI), signing keys, and the agents' bundle endpoint."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from cordum.accounts.access import HasOrgPermission, IsAgent
from cordum.accounts.authentication import AgentPrincipal
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError, NotFound
from cordum.policies import gitrepo, selectors, services
from cordum.policies.api import serializers as s
from cordum.policies.choices import KeyStatus
from cordum.policies.models import PolicyRepository, PolicyVersion, SigningKey

READ = Perm.VIEW_POLICIES
WRITE = Perm.MANAGE_ORG
READ_WRITE = {"GET": READ, "HEAD": READ, "OPTIONS": READ, "POST": WRITE, "PATCH": WRITE, "PUT": WRITE,
              "DELETE": WRITE}


class PolicyRepositoryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Admins manage repositories; policy authors, reviewers and auditors read them."""

    permission_classes = [HasOrgPermission]
    required_perms = READ_WRITE
    serializer_class = s.PolicyRepositorySerializer
    queryset = PolicyRepository.objects.none()  # for the schema; get_queryset scopes to the organisation

    def get_queryset(self):
        return selectors.repository_list(organization=self.organization)

    @extend_schema(request=s.PolicyRepositoryWriteSerializer, responses={201: s.PolicyRepositorySerializer})
    def create(self, request):
        serializer = s.PolicyRepositoryWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        repository, secret = services.repository_create(organization=self.organization, actor=request.user,
                                                        **serializer.validated_data)
        data = s.PolicyRepositorySerializer(repository, context={"request": request}).data
        data["webhook_secret"] = secret  # shown once
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.PolicyRepositoryUpdateSerializer, responses=s.PolicyRepositorySerializer)
    def partial_update(self, request, pk=None):
        repository = self.get_object()
        serializer = s.PolicyRepositoryUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        repository = services.repository_update(repository=repository, actor=request.user,
                                                **serializer.validated_data)
        return Response(s.PolicyRepositorySerializer(repository, context={"request": request}).data)

    def destroy(self, request, pk=None):
        services.repository_delete(repository=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: s.PolicyRepositorySerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        repository = self.get_object()
        services.repository_sync_request(repository=repository, actor=request.user)
        repository.refresh_from_db()
        return Response(s.PolicyRepositorySerializer(repository, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[OpenApiParameter("commit", str, description="full or abbreviated sha"),
                    OpenApiParameter("branch", str, description="newest version on this branch")],
        responses=dict,
    )
    @action(detail=True, methods=["get"])
    def review(self, request, pk=None):
        """Validity and semantic diff vs the live version for a commit or branch (for CI PR comments)."""
        repository = self.get_object()
        version = selectors.policy_version_lookup(repository=repository, commit=request.query_params.get("commit", ""),
                                                  branch=request.query_params.get("branch", ""))
        review = selectors.policy_version_review(version=version)
        review["id"] = version.pk
        return Response(review)


class PolicyVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [HasOrgPermission]
    required_perm = READ
    queryset = PolicyVersion.objects.none()

    def get_serializer_class(self):
        return s.PolicyVersionDetailSerializer if self.action == "retrieve" else s.PolicyVersionSerializer

    @extend_schema(parameters=[OpenApiParameter(n, str) for n in ("repository", "branch", "commit", "valid", "live")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.policy_version_list(organization=self.organization, filters=self.request.query_params)

    def retrieve(self, request, pk=None):
        version = self.get_object()
        data = s.PolicyVersionDetailSerializer(version).data
        data["review"] = selectors.policy_version_review(version=version)
        return Response(data)


class SigningKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [HasOrgPermission]
    required_perms = READ_WRITE
    serializer_class = s.SigningKeySerializer
    queryset = SigningKey.objects.none()

    def get_queryset(self):
        return selectors.signing_key_list(organization=self.organization)

    @extend_schema(request=None, responses={201: s.SigningKeySerializer})
    def create(self, request):
        key = services.signing_key_create(organization=self.organization, actor=request.user)
        return Response(s.SigningKeySerializer(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.SigningKeySerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        key = services.signing_key_retire(key=self.get_object(), actor=request.user)
        return Response(s.SigningKeySerializer(key).data)


class PolicyBundleViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [HasOrgPermission]
    required_perm = READ
    serializer_class = s.PolicyBundleSerializer

    def get_queryset(self):
        return selectors.policy_bundle_list(organization=self.organization)


class IsAgentOrPolicyReader(BasePermission):
    def has_permission(self, request, view):
        if isinstance(request.user, AgentPrincipal):
            view.organization = request.user.agent.organization
            return True
        view.required_perm = READ
        return HasOrgPermission().has_permission(request, view)


class TrustedKeysApi(APIView):
    """GET /api/v1/keys: the organisation's active public keys, for sidecars' `trusted_keys`."""

    permission_classes = [IsAgentOrPolicyReader]

    @extend_schema(responses=dict)
    def get(self, request):
        """`keys`: the active keys (paste them into trusted_keys); `retired`: older keys, only as links of the
        endorsement chains by which a sidecar learns a rotated key from one it already trusts."""
        keys = list(selectors.signing_key_list(organization=self.organization))

        def entry(k):
            return {"key_id": k.key_id, "alg": k.alg, "public_key": k.public_key, "endorsements": k.endorsements}

        return Response({"keys": [entry(k) for k in keys if k.status == KeyStatus.ACTIVE],
                         "retired": [entry(k) for k in keys if k.status != KeyStatus.ACTIVE]})


class ToolDriftApi(APIView):
    """POST: a sidecar reports MCP tools that differ from the tools.lock in its bundle (new, changed, removed).
    GET: people who read policies list what was reported (`?status=open|proposed`)."""

    required_perm = READ

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), IsAgent()]
        return [HasOrgPermission()]

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=["open", "proposed"])],
                   responses=s.ToolDriftSerializer(many=True))
    def get(self, request):
        drifts = selectors.tool_drift_list(organization=self.organization,
                                           status=request.query_params.get("status", ""))[:500]
        return Response(s.ToolDriftSerializer(drifts, many=True).data)

    @extend_schema(request=s.ToolDriftBatchSerializer, responses={202: s.ToolDriftBatchResponseSerializer})
    def post(self, request):
        serializer = s.ToolDriftBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        count = services.tool_drift_record(agent=request.user.agent, sidecar_id=data["sidecar_id"],
                                           drifts=data["drifts"])
        return Response({"accepted": count}, status=status.HTTP_202_ACCEPTED)


class ToolLockUpdateApi(APIView):
    """Accept drifts into tools.lock on a new branch of the policy repository (pushed and synced, never merged)."""

    permission_classes = [HasOrgPermission]
    required_perm = WRITE

    @extend_schema(request=s.ToolLockUpdateSerializer, responses={201: s.LockProposalSerializer})
    def post(self, request):
        serializer = s.ToolLockUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = serializer.validated_data["drifts"]
        drifts = list(selectors.tool_drift_list(organization=self.organization).filter(pk__in=ids))
        missing = sorted(set(ids) - {d.pk for d in drifts})
        if missing:
            raise NotFound(f"No tool drift {', '.join(map(str, missing))} in this organisation.", {"field": "drifts"})
        try:
            proposal = services.tool_lock_update_propose(organization=self.organization, actor=request.user,
                                                         drifts=drifts)
        except gitrepo.GitFetchError as exc:
            raise CordumError(str(exc), status_code=502) from None
        return Response({"branch": proposal.branch, "commit": proposal.commit, "drifts": proposal.drifts},
                        status=status.HTTP_201_CREATED)
