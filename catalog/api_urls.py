from django.urls import include, path

from catalog import apis

urlpatterns = [
    path("datasets/", apis.DatasetListRegisterApi.as_view(), name="dataset-list"),
    path("datasets/<int:pk>/", apis.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<int:pk>/versions/", apis.DatasetVersionListApi.as_view(), name="dataset-version-list"),
    path(
        "datasets/<int:pk>/versions/<int:number>/",
        apis.DatasetVersionDetailApi.as_view(),
        name="dataset-version-detail",
    ),
    path("datasets/<int:pk>/diff/", apis.DatasetDiffApi.as_view(), name="dataset-diff"),
    path("stores/", apis.StoreListCreateApi.as_view(), name="store-list"),
    path("stores/<int:pk>/", apis.StoreDetailApi.as_view(), name="store-detail"),
    path("", include("lineage.api_urls")),
]
