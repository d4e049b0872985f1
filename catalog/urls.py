from django.urls import path

from catalog import views

urlpatterns = [
    path("", views.dataset_list, name="dataset-list"),
    path("datasets/new/", views.dataset_create, name="dataset-create"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/edit/", views.dataset_edit, name="dataset-edit"),
    path("datasets/<int:pk>/diff/", views.dataset_diff, name="dataset-diff"),
    path("datasets/<int:pk>/versions/<int:number>/", views.dataset_version_detail, name="dataset-version-detail"),
    path("stores/", views.store_list, name="store-list"),
    path("stores/new/", views.store_create, name="store-create"),
    path("stores/<int:pk>/", views.store_detail, name="store-detail"),
    path("stores/<int:pk>/edit/", views.store_edit, name="store-edit"),
    path("stores/<int:pk>/connection/", views.connection_edit, name="connection-edit"),
    path("stores/<int:pk>/connection/delete/", views.connection_remove, name="connection-delete"),
    path("stores/<int:pk>/connection/test/", views.connection_check, name="connection-test"),
    path("stores/<int:pk>/sync/", views.store_sync_now, name="store-sync"),
    path("syncs/<int:pk>/", views.sync_run_detail, name="sync-run-detail"),
    path("syncs/<int:pk>/progress/", views.sync_run_progress, name="sync-run-progress"),
    path("suggestions/", views.suggestion_list, name="suggestion-list"),
    path("suggestions/count/", views.suggestion_count, name="suggestion-count"),
    path("suggestions/<int:pk>/accept/", views.suggestion_accept, name="suggestion-accept"),
    path("suggestions/<int:pk>/reject/", views.suggestion_reject, name="suggestion-reject"),
]
