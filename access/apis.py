"""REST endpoints of access: parse, call a service or selector, serialize. No rules live here.

Objects outside the caller's scope are 404 (the selectors decide the scope); a visible object
the caller may not act on is 403 (the services decide).
"""


import django_filters
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access import decisions, enforcement, grants, policies, proposals, selectors
from access.audit import client_address
from access.exports import audit_export_response, grants_export_response
from access.filtersets import GrantFilterSet
from access.models import (
    AccessRequest,
    AuditEvent,
    Grant,
    MetadataProposal,
    ProposalStatus,
    RequestStatus,
    RolePermission,
)
from access.serializers import (
    AccessRequestCreateSerializer,
    AccessRequestSerializer,
    AccessReviewConfirmedSerializer,
    AuditEventSerializer,
    BreakGlassSerializer,
    ChainReportSerializer,
    DatasetAccessReviewSerializer,
    DatasetStewardsSerializer,
    DecisionSerializer,
    EnforcementPlanSerializer,
    GrantExtendSerializer,
    GrantSerializer,
    MatrixCellSerializer,
    MatrixCellUpdateSerializer,
    NoteSerializer,
    ProposalRefSerializer,
    ProposalSerializer,
    ReasonSerializer,
    StewardAddSerializer,
    level_name,
)
from catalog import selectors as catalog_selectors
from catalog.api_support import ID_RANGE, CursorPagination, errors_named_as_in, int_parameter, query_int
from catalog.filtersets import IdFilter, UtcDateTimeFilter
from identity.stepup import STEP_UP_OPENAPI, StepUpFresh



def _parsed(serializer_class, request):
    serializer = serializer_class(data=request.data if request.data is not None else {})
    serializer.is_valid(raise_exception=True)
    return serializer


def _dataset_for_body(*, user, pk):
    """A dataset named in a request body: one the caller may not see is reported like a missing one."""
    try:
        return catalog_selectors.dataset_get(user=user, pk=pk)
    except Http404:
        raise exceptions.ValidationError({"dataset": ["No such dataset."]}) from None


class NewestFirstCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class OldestFirstCursorPagination(NewestFirstCursorPagination):
    ordering = "id"


# Role matrix ---------------------------------------------------------------------------------


class MatrixListApi(generics.ListAPIView):
    """Every cell of the role matrix: company role x environment x sensitivity tier."""

    serializer_class = MatrixCellSerializer
    pagination_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return RolePermission.objects.none()
        return selectors.role_matrix(user=self.request.user)


class MatrixCellApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]

    @extend_schema(responses=MatrixCellSerializer)
    def get(self, request, pk):
        cell = next((c for c in selectors.role_matrix(user=request.user) if c.pk == pk), None)
        if cell is None:
            raise Http404("No such matrix cell.")
        return Response(MatrixCellSerializer(cell).data)

    @extend_schema(
        request=MatrixCellUpdateSerializer,
        responses={200: MatrixCellSerializer, 403: STEP_UP_OPENAPI},
        description="Change one cell (admins only); send only the fields that change. Audited with before and after.",
    )
    def patch(self, request, pk):
        cell = get_object_or_404(RolePermission.objects.select_related("role"), pk=pk)
        serializer = MatrixCellUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        with errors_named_as_in(serializer):
            cell = grants.role_permission_update(
                principal=request.user, cell=cell, remote_addr=client_address(request), **serializer.validated_data
            )
        return Response(MatrixCellSerializer(cell).data)


# Requests ------------------------------------------------------------------------------------


class RequestFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RequestStatus.choices)
    dataset = IdFilter(field_name="dataset_id", help_text="Dataset id.")
    requester = django_filters.CharFilter(method="filter_requester", help_text='A username, or "me".')

    class Meta:
        model = AccessRequest
        fields = ["status", "dataset", "requester"]

    def filter_requester(self, queryset, name, value):
        if value == "me":
            return queryset.filter(requester=self.request.user)
        return queryset.filter(requester__username=value)


def _requests(user):
    return selectors.request_visible(user=user).select_related("grant")


def _request_get(user, pk) -> AccessRequest:
    return get_object_or_404(_requests(user), pk=pk)


class RequestListCreateApi(generics.ListAPIView):
    """Access requests the caller may see (their own, those on datasets they own, all for
    security engineers and admins), newest first; POST asks for access."""

    serializer_class = AccessRequestSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = RequestFilterSet

    def get_queryset(self):
        return _requests(self.request.user)

    @extend_schema(
        request=AccessRequestCreateSerializer,
        responses={201: AccessRequestSerializer},
        description=(
            "Ask for read or write access to a dataset (or some of its columns) for `durationHours`. "
            "400 names the field (duration over the matrix's maximum, missing ticket, short justification, "
            "access you already have); 403 when your roles may not ask for this scope."
        ),
    )
    def post(self, request):
        serializer = _parsed(AccessRequestCreateSerializer, request)
        fields = dict(serializer.validated_data)
        dataset = _dataset_for_body(user=request.user, pk=fields.pop("dataset"))
        with errors_named_as_in(serializer):
            access_request = grants.access_request_create(
                principal=request.user, dataset=dataset, remote_addr=client_address(request), **fields
            )
        return Response(
            AccessRequestSerializer(_request_get(request.user, access_request.pk)).data, status=status.HTTP_201_CREATED
        )


class RequestDetailApi(generics.RetrieveAPIView):
    serializer_class = AccessRequestSerializer

    def get_queryset(self):
        return _requests(self.request.user)


class RequestReviewApi(APIView):
    approve = True
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]

    @extend_schema(
        request=ReasonSerializer,
        responses={200: AccessRequestSerializer, 403: STEP_UP_OPENAPI},
        description=(
            "Approve: the request is approved (and its grant made) once enough approvers agreed, with a "
            "security engineer's approval where the matrix asks. Nobody approves their own request (403); "
            "400 naming `status` when it is no longer pending, `review` when you already reviewed it."
        ),
    )
    def post(self, request, pk):
        access_request = _request_get(request.user, pk)
        reason = _parsed(ReasonSerializer, request).validated_data["reason"]
        grants.access_request_review(
            principal=request.user, request=access_request, approve=self.approve, reason=reason,
            remote_addr=client_address(request),
        )
        return Response(AccessRequestSerializer(_request_get(request.user, pk)).data)


class RequestDenyApi(RequestReviewApi):
    approve = False

    @extend_schema(
        request=ReasonSerializer,
        responses={200: AccessRequestSerializer, 403: STEP_UP_OPENAPI},
        description="Deny with a `reason` (required); one denial denies the request.",
    )
    def post(self, request, pk):
        return super().post(request, pk)


class RequestCancelApi(APIView):
    @extend_schema(request=None, responses=AccessRequestSerializer, description="The requester withdraws a pending request.")
    def post(self, request, pk):
        access_request = _request_get(request.user, pk)
        grants.access_request_cancel(principal=request.user, request=access_request, remote_addr=client_address(request))
        return Response(AccessRequestSerializer(_request_get(request.user, pk)).data)


class ApprovalQueueApi(generics.ListAPIView):
    """Pending requests the caller may review (never their own), oldest first."""

    serializer_class = AccessRequestSerializer
    pagination_class = OldestFirstCursorPagination

    def get_queryset(self):
        return selectors.approval_queue(user=self.request.user).select_related("grant")


# Grants --------------------------------------------------------------------------------------


def _grant_get(user, pk) -> Grant:
    return get_object_or_404(selectors.grant_visible(user=user), pk=pk)


class GrantListApi(generics.ListAPIView):
    """Grants the caller may see (their own, those on datasets they own, all for security
    engineers and admins), newest first. `?user=me&live=true`: what gives you access now."""

    serializer_class = GrantSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = GrantFilterSet

    def get_queryset(self):
        return selectors.grant_visible(user=self.request.user)


class GrantExportCsvApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter(name, str) for name in GrantFilterSet.base_filters],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="One row per grant.")},
        description="The grants the caller may see, with the list's filters, as CSV (newest first). "
                    "Audited as `grant.exported` with the filters used.",
    )
    def get(self, request):
        filterset = GrantFilterSet(request.query_params, queryset=selectors.grant_visible(user=request.user),
                                   request=request)
        if not filterset.is_valid():
            raise exceptions.ValidationError(filterset.errors)
        grants.grants_exported(principal=request.user, filters=request.query_params.dict(),
                               remote_addr=client_address(request))
        return grants_export_response(filterset.qs)


class GrantDetailApi(generics.RetrieveAPIView):
    serializer_class = GrantSerializer

    def get_queryset(self):
        return selectors.grant_visible(user=self.request.user)


class GrantRevokeApi(APIView):
    @extend_schema(
        request=ReasonSerializer,
        responses=GrantSerializer,
        description="End a live grant early with a `reason`: its holder, the dataset's owners, security engineers, admins.",
    )
    def post(self, request, pk):
        grant = _grant_get(request.user, pk)
        reason = _parsed(ReasonSerializer, request).validated_data["reason"]
        grants.grant_revoke(principal=request.user, grant=grant, reason=reason, remote_addr=client_address(request))
        return Response(GrantSerializer(_grant_get(request.user, pk)).data)


class GrantEnforcementRetryApi(APIView):
    @extend_schema(
        request=None,
        responses=GrantSerializer,
        description="Start a failed warehouse change over (attempts back to zero, tried at once): approvers of the "
                    "dataset, security engineers, admins. 400 when nothing failed.",
    )
    def post(self, request, pk):
        grant = _grant_get(request.user, pk)
        enforcement.grant_enforcement_retry(principal=request.user, grant=grant, remote_addr=client_address(request))
        return Response(GrantSerializer(_grant_get(request.user, pk)).data)


class GrantExtendApi(APIView):
    @extend_schema(
        request=GrantExtendSerializer,
        responses={201: AccessRequestSerializer},
        description="The holder asks to extend a live grant: a new request for the same scope, linked to the grant.",
    )
    def post(self, request, pk):
        grant = _grant_get(request.user, pk)
        serializer = _parsed(GrantExtendSerializer, request)
        with errors_named_as_in(serializer):
            extension = grants.grant_extend(
                principal=request.user, grant=grant, remote_addr=client_address(request), **serializer.validated_data
            )
        return Response(AccessRequestSerializer(_request_get(request.user, extension.pk)).data, status=status.HTTP_201_CREATED)


class GrantReviewApi(APIView):
    @extend_schema(
        request=NoteSerializer,
        responses=GrantSerializer,
        description="The after-the-fact review of a break-glass grant, with a `note`, by an approver other than its holder.",
    )
    def post(self, request, pk):
        grant = _grant_get(request.user, pk)
        note = _parsed(NoteSerializer, request).validated_data["note"]
        grants.break_glass_review(principal=request.user, grant=grant, note=note, remote_addr=client_address(request))
        return Response(GrantSerializer(_grant_get(request.user, pk)).data)


class BreakGlassApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]

    @extend_schema(
        request=BreakGlassSerializer,
        responses={201: GrantSerializer, 403: STEP_UP_OPENAPI},
        description=(
            "Access at once for an emergency, where the matrix allows break-glass for the scope: capped at "
            "`minutes` (at most the configured cap); every approver is told and a review after the fact is required."
        ),
    )
    def post(self, request):
        serializer = _parsed(BreakGlassSerializer, request)
        fields = dict(serializer.validated_data)
        dataset = _dataset_for_body(user=request.user, pk=fields.pop("dataset"))
        grant = grants.break_glass_activate(principal=request.user, dataset=dataset, remote_addr=client_address(request), **fields)
        return Response(GrantSerializer(_grant_get(request.user, grant.pk)).data, status=status.HTTP_201_CREATED)


# The decision ----------------------------------------------------------------------------------


class DecideApi(APIView):
    @extend_schema(
        parameters=[
            int_parameter("dataset", low=ID_RANGE[0], high=ID_RANGE[1], required=True, description="Dataset id."),
            OpenApiParameter("action", str, enum=list(decisions.ACTIONS), required=True),
            OpenApiParameter("columns", str, description="Comma-separated column names; default the whole dataset."),
        ],
        responses=DecisionSerializer,
        description="May the caller do `action` on the dataset (or those columns) now? The same decision the catalog enforces.",
    )
    def get(self, request):
        errors = {}
        try:
            dataset_id = query_int(request, "dataset", low=ID_RANGE[0], high=ID_RANGE[1], required=True)
        except exceptions.ValidationError as exc:
            errors.update(exc.detail)
        action = request.query_params.get("action", "")
        if action not in decisions.ACTIONS:
            errors["action"] = [f"One of {', '.join(decisions.ACTIONS)}."]
        columns = [name.strip() for name in request.query_params.get("columns", "").split(",") if name.strip()]
        if errors:
            raise exceptions.ValidationError(errors)
        dataset = catalog_selectors.dataset_get(user=request.user, pk=dataset_id)
        if columns:
            known = {column.name.lower() for column in dataset.columns.all()}
            unknown = [name for name in columns if name.lower() not in known]
            if unknown:
                raise exceptions.ValidationError({"columns": [f"Not columns of {dataset.qualified_name}: {', '.join(unknown[:10])}."]})
        decision = decisions.access_decide(request.user, action, dataset, columns or None)
        return Response(DecisionSerializer({
            "dataset": dataset.pk, "action": action, "columns": columns, "allowed": decision.allowed,
            "level": level_name(decision.level), "via": decision.via, "reason": decision.reason,
            "grant": decision.grant.pk if decision.grant else None,
        }).data)


# Audit -----------------------------------------------------------------------------------------


class AuditFilterSet(django_filters.FilterSet):
    action = django_filters.CharFilter(help_text="An action (`grant.revoked`) or a family of them (`grant`).", method="filter_action")
    actor = django_filters.CharFilter(field_name="actor_name", help_text="Username (or `system`).")
    dataset = IdFilter(field_name="dataset_id", help_text="Dataset id.")
    since = UtcDateTimeFilter(field_name="at", lookup_expr="gte", help_text="ISO 8601, inclusive.")
    until = UtcDateTimeFilter(field_name="at", lookup_expr="lt", help_text="ISO 8601, exclusive.")

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "dataset", "since", "until"]

    def is_valid(self):
        valid = super().is_valid()
        since, until = (self.form.cleaned_data.get(name) for name in ("since", "until")) if valid else (None, None)
        if since and until and since >= until:
            self.form.add_error("since", "since is not before until: nothing can match.")
            return False
        return valid

    def filter_action(self, queryset, name, value):
        return selectors.audit_action_filter(queryset, value)


AUDIT_FILTER_PARAMETERS = [
    OpenApiParameter("action", str, description="An action (`grant.revoked`) or a family of them (`grant`)."),
    OpenApiParameter("actor", str, description="Username (or `system`)."),
    OpenApiParameter("dataset", int, description="Dataset id."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="ISO 8601, inclusive."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="ISO 8601, exclusive."),
]


def _require_audit_reader(user) -> None:
    if not policies.can_read_audit(user):
        raise PermissionDenied("The audit trail is for security engineers and admins.")


class AuditListApi(generics.ListAPIView):
    """The audit trail, newest first (security engineers and admins)."""

    serializer_class = AuditEventSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = AuditFilterSet

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return AuditEvent.objects.none()
        _require_audit_reader(self.request.user)
        return selectors.audit_list(user=self.request.user)


class _AuditExportApi(APIView):
    """Streams the (filtered) trail, oldest first, without holding it in memory."""

    extension = ""

    def get(self, request):
        _require_audit_reader(request.user)
        filterset = AuditFilterSet(request.query_params, queryset=selectors.audit_list(user=request.user), request=request)
        if not filterset.is_valid():
            raise exceptions.ValidationError(filterset.errors)
        grants.audit_exported(principal=request.user, fmt=self.extension, filters=request.query_params.dict(),
                              remote_addr=client_address(request))
        return audit_export_response(filterset.qs, self.extension)


class AuditExportCsvApi(_AuditExportApi):
    extension = "csv"

    @extend_schema(
        parameters=AUDIT_FILTER_PARAMETERS,
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="One row per event; details as JSON.")},
        description="The trail as CSV, oldest first, with the same filters as the list.",
    )
    def get(self, request):
        return super().get(request)


class AuditExportJsonApi(_AuditExportApi):
    extension = "json"

    @extend_schema(
        parameters=AUDIT_FILTER_PARAMETERS,
        responses={(200, "application/json"): AuditEventSerializer(many=True)},
        description="The trail as one JSON array, oldest first, with the same filters as the list.",
    )
    def get(self, request):
        return super().get(request)


class AuditVerifyApi(APIView):
    @extend_schema(
        responses=ChainReportSerializer,
        description="Recompute the hash chain: intact, or the first event that was edited, deleted or inserted.",
    )
    def get(self, request):
        from access.audit import audit_verify

        _require_audit_reader(request.user)
        return Response(ChainReportSerializer(audit_verify()).data)


# Periodic access reviews -------------------------------------------------------------------------


def _reviewed_dataset(user, dataset_id):
    dataset = catalog_selectors.dataset_get(user=user, pk=dataset_id)
    if not policies.can_review_dataset_access(user, dataset):
        raise PermissionDenied("The dataset's owners and stewards, admins, and security engineers from Sensitive up "
                               "review its access.")
    return dataset


def _last_confirmation(dataset):
    return AuditEvent.objects.filter(action="access_review.confirmed", dataset=dataset).order_by("-id").first()


class DatasetAccessReviewApi(APIView):
    @extend_schema(
        responses=DatasetAccessReviewSerializer,
        description="Standing (company roles with read or write) and live just-in-time access to a dataset, for its owners "
                    "and stewards, admins, and security engineers (datasets at or above Sensitive).",
    )
    def get(self, request, dataset_id):
        dataset = _reviewed_dataset(request.user, dataset_id)
        review = selectors.dataset_access_review(user=request.user, dataset=dataset)
        last = _last_confirmation(dataset)
        return Response(DatasetAccessReviewSerializer({
            "dataset": dataset, "roles": review["roles"], "grants": review["grants"],
            "lastConfirmedAt": last.at if last else None, "lastConfirmedBy": last.actor_name if last else None,
        }).data)


class DatasetAccessReviewConfirmApi(APIView):
    @extend_schema(
        request=NoteSerializer,
        responses=AccessReviewConfirmedSerializer,
        description="The owner confirms the access as reviewed (audited as `access_review.confirmed`), with an optional `note`.",
    )
    def post(self, request, dataset_id):
        dataset = _reviewed_dataset(request.user, dataset_id)
        note = _parsed(NoteSerializer, request).validated_data["note"]
        grants.dataset_access_review_confirm(principal=request.user, dataset=dataset, note=note, remote_addr=client_address(request))
        last = _last_confirmation(dataset)
        return Response(AccessReviewConfirmedSerializer({
            "dataset": dataset, "confirmedAt": last.at, "confirmedBy": last.actor_name, "note": last.reason,
        }).data)


# Stewards ------------------------------------------------------------------------------------------


def _stewards_response(user, dataset, status_code=status.HTTP_200_OK) -> Response:
    stewards = selectors.dataset_stewards(dataset=dataset)
    return Response(DatasetStewardsSerializer({
        "dataset": dataset, **stewards, "canChange": policies.can_change_stewards(user, dataset),
    }).data, status=status_code)


class DatasetStewardListApi(APIView):
    @extend_schema(
        responses=DatasetStewardsSerializer,
        description=(
            "The dataset's stewards: users and groups holding its `steward_dataset` object permission. "
            "With the owners they approve access requests, run the access review and edit the dataset."
        ),
    )
    def get(self, request, pk):
        dataset = catalog_selectors.dataset_get(user=request.user, pk=pk)
        return _stewards_response(request.user, dataset)

    @extend_schema(
        request=StewardAddSerializer,
        responses={201: DatasetStewardsSerializer, 202: OpenApiResponse(description="Proposed: `pendingProposal`.")},
        description=(
            "Add a steward: `user` (a username) or `group` (a group name). An owner adds one at once (201); a "
            "registrar or admin who does not own the dataset proposes it (202 with `pendingProposal`)."
        ),
    )
    def post(self, request, pk):
        dataset = catalog_selectors.dataset_get(user=request.user, pk=pk)
        if not policies.can_change_stewards(request.user, dataset):  # before the body: an outsider learns nothing
            raise PermissionDenied("Only the dataset's owners, registrars or an admin change its stewards.")
        data = _parsed(StewardAddSerializer, request).validated_data
        user, group = grants.steward_target_find(username=data["user"], group_name=data["group"])
        proposal = grants.dataset_steward_add(principal=request.user, dataset=dataset, user=user, group=group,
                                              remote_addr=client_address(request))
        if proposal is not None:  # not an owner: the new steward waits for the owners' (or security's) approval
            return Response({"pendingProposal": ProposalRefSerializer(proposal).data}, status=status.HTTP_202_ACCEPTED)
        return _stewards_response(request.user, dataset, status.HTTP_201_CREATED)


class DatasetStewardApi(APIView):
    """One steward: ``kind`` ("user" or "group") comes from the route."""

    @extend_schema(
        responses={204: None},
        description="Remove a steward (a user by username, or a group by name). Owners, registrars and admins.",
    )
    def delete(self, request, pk, kind, name):
        dataset = catalog_selectors.dataset_get(user=request.user, pk=pk)
        if not policies.can_change_stewards(request.user, dataset):
            raise PermissionDenied("Only the dataset's owners, registrars or an admin change its stewards.")
        user, group = selectors.dataset_steward_find(dataset=dataset, kind=kind, name=name)
        if user is None and group is None:
            raise Http404(f"{name} is not a steward of this dataset.")
        grants.dataset_steward_remove(principal=request.user, dataset=dataset, user=user, group=group,
                                      remote_addr=client_address(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Proposals -------------------------------------------------------------------------------------


class ProposalFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ProposalStatus.choices)
    dataset = IdFilter(field_name="dataset_id", help_text="Dataset id.")
    store = django_filters.CharFilter(method="filter_store", help_text="Store name (its own proposals and its datasets').")
    mine = django_filters.BooleanFilter(method="filter_mine", help_text="Only proposals waiting for my review.")

    class Meta:
        model = MetadataProposal
        fields = ["status", "dataset", "store", "mine"]

    def filter_store(self, queryset, name, value):
        return queryset.filter(Q(store__name=value) | Q(dataset__store__name=value))

    def filter_mine(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(pk__in=selectors.proposal_queue(user=self.request.user).values("pk"))


class ProposalListApi(generics.ListAPIView):
    """Changes to decision inputs (classification, owners, stewards, matrix tags, store placement)
    that wait for, or had, someone else's approval; newest first."""

    serializer_class = ProposalSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = ProposalFilterSet

    def get_queryset(self):
        return selectors.proposal_visible(user=self.request.user)

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        page = getattr(self.paginator, "page", None)
        if page is not None:
            proposals.proposals_viewed(principal=request.user, proposals=page, remote_addr=client_address(request),
                                       via="api:proposals")
        return response


def _proposal_get(user, pk) -> MetadataProposal:
    proposal = selectors.proposal_visible(user=user).filter(pk=pk).first()
    if proposal is None:
        raise Http404("No such proposal.")
    return proposal


class ProposalDetailApi(generics.RetrieveAPIView):
    serializer_class = ProposalSerializer

    def get_object(self):
        proposal = _proposal_get(self.request.user, self.kwargs["pk"])
        proposals.proposals_viewed(principal=self.request.user, proposals=[proposal],
                                   remote_addr=client_address(self.request), via="api:proposal")
        return proposal


class ProposalApproveApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]  # a proposal changes who gets access
    approve = True

    @extend_schema(
        request=ReasonSerializer,
        responses=ProposalSerializer,
        description=(
            "Approve: applied once enough reviewers agreed (a security engineer for Sensitive and Restricted data "
            "and for stores; two for Restricted data in prod), if the metadata is still as proposed (else `stale`). "
            "Nobody reviews their own proposal (403)."
        ),
    )
    def post(self, request, pk):
        proposal = _proposal_get(request.user, pk)
        reason = _parsed(ReasonSerializer, request).validated_data["reason"]
        proposals.proposal_review(principal=request.user, proposal=proposal, approve=self.approve, reason=reason,
                                  remote_addr=client_address(request))
        return Response(ProposalSerializer(_proposal_get(request.user, pk)).data)


class ProposalRejectApi(ProposalApproveApi):
    approve = False

    @extend_schema(request=ReasonSerializer, responses=ProposalSerializer,
                   description="Reject with a `reason` (required); one rejection rejects the proposal.")
    def post(self, request, pk):
        return super().post(request, pk)


class ProposalCancelApi(APIView):
    @extend_schema(request=None, responses=ProposalSerializer, description="The proposer withdraws a pending proposal.")
    def post(self, request, pk):
        proposal = _proposal_get(request.user, pk)
        proposals.proposal_cancel(principal=request.user, proposal=proposal, remote_addr=client_address(request))
        return Response(ProposalSerializer(_proposal_get(request.user, pk)).data)


class DatasetEnforcementPlanApi(APIView):
    @extend_schema(
        responses=EnforcementPlanSerializer,
        description=(
            "What enforcing the dataset does in its store, as statements to preview before they run: the protected "
            "view or masking policies, the grants table the store reads at query time and the standing privileges. "
            "Statements carrying a key are redacted. Security engineers, admins and the dataset's owners (403 for "
            "others who see the dataset; 404 for those who do not)."
        ),
    )
    def get(self, request, pk):
        from access.warehouses import enforcement_plan_get

        dataset = catalog_selectors.dataset_get(user=request.user, pk=pk)
        return Response(EnforcementPlanSerializer(enforcement_plan_get(user=request.user, dataset=dataset)).data)
