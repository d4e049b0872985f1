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
    path("stores/<int:pk>/connection/", apis.StoreConnectionApi.as_view(), name="store-connection"),
    path("stores/<int:pk>/connection/test/", apis.StoreConnectionTestApi.as_view(), name="store-connection-test"),
    path("stores/<int:pk>/syncs/", apis.StoreSyncListStartApi.as_view(), name="store-sync-list"),
    path("syncs/<int:pk>/", apis.SyncRunDetailApi.as_view(), name="sync-run-detail"),
    path("syncs/<int:pk>/events/", apis.SyncRunEventListApi.as_view(), name="sync-run-event-list"),
    path("suggestions/", apis.SuggestionListApi.as_view(), name="suggestion-list"),
    path("suggestions/<int:pk>/accept/", apis.SuggestionAcceptApi.as_view(), name="suggestion-accept"),
    path("suggestions/<int:pk>/reject/", apis.SuggestionRejectApi.as_view(), name="suggestion-reject"),
    path("", include("lineage.api_urls")),
]
