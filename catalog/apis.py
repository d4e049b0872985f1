"""REST API views: parse, call a service or selector, serialize. No rules live here."""

import django_filters
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access import policies
from access.audit import client_address
from catalog import selectors, services
from catalog.api_support import (
    VERSION_NUMBER_RANGE,
    CursorPagination,
    errors_named_as_in,
    int_parameter,
    query_ints,
)
from catalog.connections import CONNECTION_FIELDS, connection_delete, connection_save, connection_test
from catalog.filtersets import DatasetFilterSet, IdFilter
from catalog.models import (
    ColumnSuggestion,
    Connection,
    DatasetVersion,
    DataStore,
    SuggestionStatus,
    SyncRun,
    SyncRunEvent,
    SyncTrigger,
)
from catalog.serializers import (
    ConnectionSerializer,
    ConnectionTestResultSerializer,
    DatasetDetailSerializer,
    DatasetDiffSerializer,
    DatasetRegistrationSerializer,
    DatasetSummarySerializer,
    DatasetVersionDetailSerializer,
    DatasetVersionSerializer,
    StoreSerializer,
    SuggestionSerializer,
    SyncRunEventSerializer,
    SyncRunSerializer,
)
from catalog.sync import sync_run_request
from identity.stepup import STEP_UP_OPENAPI, StepUpFresh


class NameCursorPagination(CursorPagination):
    ordering = "qualified_name"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class DatasetSearchPagination(NameCursorPagination):
    """Datasets by name, or with ``q`` by relevance (``search_score``, then name); the page carries
    the facet counts the view computed (``facets``)."""

    def get_ordering(self, request, queryset, view):
        if "search_score" in queryset.query.annotations:
            return ("-search_score", "qualified_name")
        return (self.ordering,)

    def _position_fits(self, position: str) -> bool:
        if self.ordering[0] == "-search_score":
            try:
                float(position)
            except ValueError:
                return False
            return True
        return super()._position_fits(position)

    def paginate_queryset(self, queryset, request, view=None):
        # Ranking in two steps: a page of the name tiers (few rows, found and ranked on the names
        # alone) is the top of the whole ranking; only when they hold less than a page (and one
        # more row, to know there is a next page) is every match ranked. Backward pages rank all.
        name_tiers = view.search_name_tiers() if hasattr(view, "search_name_tiers") else None
        if name_tiers is not None:
            cursor = self.decode_cursor(request)
            if cursor is None or not cursor.reverse:
                page = super().paginate_queryset(name_tiers, request, view)
                if page is None or self.has_next:
                    return page
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["facets"] = getattr(self, "facets", None)
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["facets"] = FACETS_SCHEMA
        schema["required"] = [*schema.get("required", []), "facets"]
        return schema


_FACET_VALUES_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["value", "label", "count"],
        "properties": {
            "value": {"type": "string", "description": "What to pass in the query parameter of the same name."},
            "label": {"type": "string"},
            "count": {"type": "integer", "minimum": 0, "description": "Datasets you may see with this value."},
        },
    },
}
FACETS_SCHEMA = {
    "type": "object",
    "description": (
        "Facet counts over the datasets you may see that match the search: for each family, counted with every "
        "other filter applied but not the family's own (so the other values you could pick are counted). "
        "Sensitivity and protection list every value; the others their most frequent values (up to 20)."
    ),
    "required": ["sensitivity", "protection", "store", "environment", "residency", "owner", "tag", "status"],
    "properties": {family: _FACET_VALUES_SCHEMA for family in
                   ["sensitivity", "protection", "store", "environment", "residency", "owner", "tag", "status"]},
}


class VersionCursorPagination(CursorPagination):
    ordering = "-number"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class DatasetListRegisterApi(generics.ListAPIView):
    """List and search datasets, or register one (or a new version of it)."""

    serializer_class = DatasetSummarySerializer
    filterset_class = DatasetFilterSet
    pagination_class = DatasetSearchPagination

    def get_queryset(self):
        return selectors.dataset_list(user=self.request.user)

    def search_name_tiers(self):
        """The search's results in its name tiers only (``catalog.search``), or None without one."""
        return selectors.dataset_search_name_tiers(user=self.request.user, data=self.request.query_params)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        # Facet counts over what the reader may see: one query, whatever the number of families.
        self.paginator.facets = selectors.dataset_search_facets(user=self.request.user, data=self.request.query_params)
        # What ``q`` matched, for the page's rows only: one query, whatever the page size.
        query = self.request.query_params.get("q", "")
        self.search_matches = selectors.dataset_search_matches(datasets=page if page is not None else queryset, query=query)
        return page

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "search_matches": getattr(self, "search_matches", None)}

    @extend_schema(
        request=DatasetRegistrationSerializer,
        responses={201: DatasetDetailSerializer, 200: DatasetDetailSerializer},
        description=(
            "201 for a new dataset or a changed schema (a new version); 200 when the schema is unchanged. A change "
            "that would open access (a lower sensitivity, a removed or changed protection, other owners, the tag "
            "`aggregated`) is not applied: the rest lands and `pendingProposal` names the proposal that waits for "
            "someone else's approval (null otherwise)."
        ),
    )
    def post(self, request):
        dataset, created = services.dataset_register(
            principal=request.user, payload=request.data, remote_addr=client_address(request)
        )
        proposal = dataset.pending_proposal
        dataset = selectors.dataset_get(user=request.user, pk=dataset.pk)
        return Response(
            {**DatasetDetailSerializer(dataset, context={"request": request}).data, "pendingProposal": _proposal_ref(proposal)},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


def _proposal_ref(proposal):
    """What a write proposed instead of applying (it opens access), or None."""
    from access.serializers import ProposalRefSerializer  # access builds on the catalog

    return ProposalRefSerializer(proposal).data if proposal is not None else None


class DatasetDetailApi(generics.RetrieveAPIView):
    serializer_class = DatasetDetailSerializer

    def get_object(self):
        from access.grants import restricted_metadata_viewed  # access builds on the catalog

        dataset = selectors.dataset_get(user=self.request.user, pk=self.kwargs["pk"])
        # Reading Restricted column metadata is audited, through the API as on the page.
        restricted_metadata_viewed(principal=self.request.user, dataset=dataset,
                                   remote_addr=client_address(self.request), via="api")
        return dataset


class DatasetVersionListApi(generics.ListAPIView):
    serializer_class = DatasetVersionSerializer
    pagination_class = VersionCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no URL kwargs
            return DatasetVersion.objects.none()
        from access.grants import restricted_metadata_viewed  # access builds on the catalog

        dataset = selectors.dataset_get(user=self.request.user, pk=self.kwargs["pk"])
        # Each version's diff names columns and their sensitivity changes: audited as the detail is.
        restricted_metadata_viewed(principal=self.request.user, dataset=dataset,
                                   remote_addr=client_address(self.request), via="api:versions")
        return selectors.dataset_version_list(dataset=dataset)


class DatasetVersionDetailApi(generics.RetrieveAPIView):
    serializer_class = DatasetVersionDetailSerializer

    def get_object(self):
        from access.grants import restricted_metadata_viewed  # access builds on the catalog

        dataset = selectors.dataset_get(user=self.request.user, pk=self.kwargs["pk"])
        version = selectors.dataset_version_get(dataset=dataset, number=self.kwargs["number"])
        restricted_metadata_viewed(principal=self.request.user, dataset=dataset,
                                   remote_addr=client_address(self.request), via="api:version", versions=[version])
        return version


class DatasetDiffApi(APIView):
    @extend_schema(
        parameters=[
            int_parameter("from", low=VERSION_NUMBER_RANGE[0], high=VERSION_NUMBER_RANGE[1], required=True,
                          description="Version number to compare from."),
            int_parameter("to", low=VERSION_NUMBER_RANGE[0], high=VERSION_NUMBER_RANGE[1], required=True,
                          description="Version number to compare to."),
        ],
        responses=DatasetDiffSerializer,
    )
    def get(self, request, pk):
        numbers = query_ints(request, {"from": VERSION_NUMBER_RANGE, "to": VERSION_NUMBER_RANGE})
        dataset = selectors.dataset_get(user=request.user, pk=pk)
        old, new = selectors.dataset_version_pair(dataset=dataset, from_number=numbers["from"], to_number=numbers["to"])
        from access.grants import restricted_metadata_viewed  # access builds on the catalog

        restricted_metadata_viewed(principal=request.user, dataset=dataset, remote_addr=client_address(request),
                                   via="api:diff", versions=[old, new])
        return Response(DatasetDiffSerializer(selectors.dataset_version_diff(old=old, new=new)).data)


class StoreListCreateApi(generics.ListCreateAPIView):
    serializer_class = StoreSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.store_list(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        store = services.store_save(principal=request.user, remote_addr=client_address(request), **serializer.validated_data)
        store.dataset_count = 0
        return Response(StoreSerializer(store).data, status=status.HTTP_201_CREATED)


class StoreDetailApi(generics.RetrieveUpdateAPIView):
    serializer_class = StoreSerializer

    def get_queryset(self):
        return selectors.store_list(user=self.request.user)

    def update(self, request, *args, **kwargs):
        store = self.get_object()
        serializer = self.get_serializer(store, data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        store = services.store_save(
            principal=request.user, store=store, remote_addr=client_address(request), **serializer.validated_data
        )
        proposal = store.pending_proposal
        store = self.get_object()
        return Response({**StoreSerializer(store).data, "pendingProposal": _proposal_ref(proposal)})


# Warehouse connections and sync runs ------------------------------------------------------


class NewestFirstCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class OldestFirstCursorPagination(NewestFirstCursorPagination):
    ordering = "id"


class ManagesStores(permissions.BasePermission):
    """Connections (and starting syncs) are for platform engineers and admins."""

    message = "Managing connections needs the platform engineer role or an admin."

    def has_permission(self, request, view):
        return policies.can_manage_stores(request.user)


def _store_get(*, user, pk) -> DataStore:
    store = selectors.store_list(user=user).filter(pk=pk).first()
    if store is None:
        raise Http404("No such store.")
    return store


def _connection_get(*, store: DataStore) -> Connection:
    connection = Connection.objects.select_related("store").filter(store=store).first()
    if connection is None:
        raise Http404("This store has no connection.")
    return connection


class StoreConnectionApi(APIView):
    """A store's warehouse connection. The password is write-only and never sent back."""

    permission_classes = [permissions.IsAuthenticated, ManagesStores, StepUpFresh]

    @extend_schema(responses={200: ConnectionSerializer, 404: OpenApiResponse(description="The store has no connection.")})
    def get(self, request, pk):
        store = _store_get(user=request.user, pk=pk)
        return Response(ConnectionSerializer(_connection_get(store=store)).data)

    @extend_schema(
        request=ConnectionSerializer,
        responses={201: ConnectionSerializer, 200: ConnectionSerializer, 403: STEP_UP_OPENAPI},
        description=(
            "Create (201) or replace (200) the connection: fields left out take their defaults, except "
            "`password`, which is kept when absent, removed when \"\" and replaced otherwise."
        ),
    )
    def put(self, request, pk):
        store = _store_get(user=request.user, pk=pk)
        created = not Connection.objects.filter(store=store).exists()
        connection = self._save(request, store, partial=False)
        return Response(ConnectionSerializer(connection).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        request=ConnectionSerializer,
        responses={200: ConnectionSerializer, 403: STEP_UP_OPENAPI},
        description="Change only the fields sent (`password` as for PUT).",
    )
    def patch(self, request, pk):
        store = _store_get(user=request.user, pk=pk)
        _connection_get(store=store)
        return Response(ConnectionSerializer(self._save(request, store, partial=True)).data)

    @extend_schema(responses={204: None, 403: STEP_UP_OPENAPI}, description="Remove the connection, its password and its schedule; datasets stay.")
    def delete(self, request, pk):
        store = _store_get(user=request.user, pk=pk)
        _connection_get(store=store)
        connection_delete(principal=request.user, store=store, remote_addr=client_address(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @staticmethod
    def _save(request, store: DataStore, *, partial: bool) -> Connection:
        serializer = ConnectionSerializer(data=request.data, partial=partial)
        refused = {} if serializer.is_valid() else dict(serializer.errors)
        # Fields whose JSON was wrong are named now; the others still go through the service's
        # checks (a cron schedule, ranges, the options' allow-list), so one 400 names them all.
        fields = serializer.passed_data() if refused else dict(serializer.validated_data)
        if fields is None:  # not even an object
            raise exceptions.ValidationError(refused)
        password = fields.pop("password", None)
        if not partial:  # a replacement: what was left out goes back to its default
            left_out = set(CONNECTION_FIELDS) - {serializer.fields[name].source for name in refused if name in serializer.fields}
            fields = {name: Connection._meta.get_field(name).get_default() for name in left_out} | fields
        try:
            with errors_named_as_in(serializer):
                connection = connection_save(
                    principal=request.user, store=store, password=password, remote_addr=client_address(request),
                    check_only=bool(refused), **fields,
                )
        except exceptions.ValidationError as exc:
            raise exceptions.ValidationError({**exc.detail, **refused}) from None
        if refused:
            raise exceptions.ValidationError(refused)
        return connection


class StoreConnectionTestApi(APIView):
    permission_classes = [permissions.IsAuthenticated, ManagesStores]

    @extend_schema(
        request=None,
        responses=ConnectionTestResultSerializer,
        description="Connect now. A warehouse that refuses is still a 200, with `ok: false` and its reason.",
    )
    def post(self, request, pk):
        store = _store_get(user=request.user, pk=pk)
        ok, message = connection_test(principal=request.user, store=store, remote_addr=client_address(request))
        return Response(ConnectionTestResultSerializer({"ok": ok, "message": message}).data)


class StoreSyncListStartApi(generics.ListAPIView):
    """A store's sync runs, newest first; POST starts one."""

    serializer_class = SyncRunSerializer
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no URL kwargs
            return SyncRun.objects.none()
        store = _store_get(user=self.request.user, pk=self.kwargs["pk"])
        return selectors.sync_run_visible(user=self.request.user).filter(store=store)

    @extend_schema(
        request=None,
        responses={202: SyncRunSerializer, 200: SyncRunSerializer},
        description=(
            "202 with the new run (and its URL in `Location`) when one was queued; 200 with the run "
            "already queued or running, if there is one. 400 when the store has no connection."
        ),
    )
    def post(self, request, pk):
        store = _store_get(user=request.user, pk=pk)
        run, created = sync_run_request(principal=request.user, store=store, trigger=SyncTrigger.API)
        run = selectors.sync_run_visible(user=request.user).get(pk=run.pk)  # as it is now, if a worker already took it
        body = SyncRunSerializer(run, context=self.get_serializer_context()).data
        if created:
            return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": str(body["url"])})
        return Response(body)


class SyncRunDetailApi(generics.RetrieveAPIView):
    serializer_class = SyncRunSerializer

    def get_queryset(self):
        return selectors.sync_run_visible(user=self.request.user)


class SyncRunEventListApi(generics.ListAPIView):
    """What a run did to each object (unchanged objects are only counted); ``outcome=error`` for
    failures. Only events of datasets the caller may see are listed; events naming no catalog
    dataset (errors about a warehouse object) only to store managers."""

    serializer_class = SyncRunEventSerializer
    pagination_class = OldestFirstCursorPagination
    filterset_fields = ["outcome"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SyncRunEvent.objects.none()
        run = get_object_or_404(selectors.sync_run_visible(user=self.request.user), pk=self.kwargs["pk"])
        return selectors.sync_run_event_visible(user=self.request.user, run=run).select_related("dataset")


# Classification suggestions ---------------------------------------------------------------


class SuggestionFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SuggestionStatus.choices)
    store = django_filters.CharFilter(field_name="dataset__store__name", help_text="Store name.")
    dataset = IdFilter(field_name="dataset_id", help_text="Dataset id.")
    run = IdFilter(field_name="run_id", help_text="Sync run id.")

    class Meta:
        model = ColumnSuggestion
        fields = ["status", "store", "dataset", "run"]


class SuggestionListApi(generics.ListAPIView):
    """Classification suggestions from syncs, newest first."""

    serializer_class = SuggestionSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = SuggestionFilterSet

    def get_queryset(self):
        return selectors.suggestion_visible(user=self.request.user).select_related("dataset", "column", "decided_by")


class SuggestionAcceptApi(APIView):
    accept = True

    @extend_schema(
        request=None,
        responses=SuggestionSerializer,
        description=(
            "Accept: the column's sensitivity is raised to the suggested tier, which makes a new dataset version. "
            "Needs the right to edit the dataset (its owners, registrars); 400 if already decided."
        ),
    )
    def post(self, request, pk):
        suggestion = get_object_or_404(selectors.suggestion_visible(user=request.user).select_related("dataset", "column", "decided_by"), pk=pk)
        services.suggestion_decide(principal=request.user, suggestion=suggestion, accept=self.accept)
        return Response(SuggestionSerializer(selectors.suggestion_visible(user=request.user).select_related("dataset", "column", "decided_by").get(pk=pk)).data)


class SuggestionRejectApi(SuggestionAcceptApi):
    accept = False

    @extend_schema(
        request=None,
        responses=SuggestionSerializer,
        description="Reject: nothing changes on the column, and the label is not suggested for it again. 400 if already decided.",
    )
    def post(self, request, pk):
        return super().post(request, pk)
