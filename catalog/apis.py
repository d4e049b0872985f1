"""REST API views: parse, call a service or selector, serialize. No rules live here."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import selectors, services
from catalog.models import DatasetVersion
from catalog.filtersets import DatasetFilterSet
from catalog.serializers import (
    DatasetDetailSerializer,
    DatasetDiffSerializer,
    DatasetRegistrationSerializer,
    DatasetSummarySerializer,
    DatasetVersionDetailSerializer,
    DatasetVersionSerializer,
    StoreSerializer,
)


class NameCursorPagination(CursorPagination):
    ordering = "qualified_name"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class VersionCursorPagination(CursorPagination):
    ordering = "-number"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class DatasetListRegisterApi(generics.ListAPIView):
    """List and search datasets, or register one (or a new version of it)."""

    serializer_class = DatasetSummarySerializer
    filterset_class = DatasetFilterSet
    pagination_class = NameCursorPagination

    def get_queryset(self):
        return selectors.dataset_list(user=self.request.user)

    @extend_schema(
        request=DatasetRegistrationSerializer,
        responses={201: DatasetDetailSerializer, 200: DatasetDetailSerializer},
        description="201 for a new dataset or a changed schema (a new version); 200 when the schema is unchanged.",
    )
    def post(self, request):
        dataset, created = services.dataset_register(principal=request.user, payload=request.data)
        dataset = selectors.dataset_get(user=request.user, pk=dataset.pk)
        return Response(
            DatasetDetailSerializer(dataset).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class DatasetDetailApi(generics.RetrieveAPIView):
    serializer_class = DatasetDetailSerializer

    def get_object(self):
        return selectors.dataset_get(user=self.request.user, pk=self.kwargs["pk"])


class DatasetVersionListApi(generics.ListAPIView):
    serializer_class = DatasetVersionSerializer
    pagination_class = VersionCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no URL kwargs
            return DatasetVersion.objects.none()
        dataset = selectors.dataset_get(user=self.request.user, pk=self.kwargs["pk"])
        return selectors.dataset_version_list(dataset=dataset)


class DatasetVersionDetailApi(generics.RetrieveAPIView):
    serializer_class = DatasetVersionDetailSerializer

    def get_object(self):
        dataset = selectors.dataset_get(user=self.request.user, pk=self.kwargs["pk"])
        return selectors.dataset_version_get(dataset=dataset, number=self.kwargs["number"])


class DatasetDiffApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("from", int, required=True, description="Version number to compare from."),
            OpenApiParameter("to", int, required=True, description="Version number to compare to."),
        ],
        responses=DatasetDiffSerializer,
    )
    def get(self, request, pk):
        errors = {}
        numbers = {}
        for key in ("from", "to"):
            raw = request.query_params.get(key, "")
            if not raw.isdigit():
                errors[key] = ["Required: a version number."]
            else:
                numbers[key] = int(raw)
        if errors:
            raise exceptions.ValidationError(errors)
        dataset = selectors.dataset_get(user=request.user, pk=pk)
        old, new = selectors.dataset_version_pair(dataset=dataset, from_number=numbers["from"], to_number=numbers["to"])
        return Response(DatasetDiffSerializer(selectors.dataset_version_diff(old=old, new=new)).data)


class StoreListCreateApi(generics.ListCreateAPIView):
    serializer_class = StoreSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.store_list(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        store = services.store_save(principal=request.user, **serializer.validated_data)
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
        store = services.store_save(principal=request.user, store=store, **serializer.validated_data)
        return Response(StoreSerializer(store).data)
