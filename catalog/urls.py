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
    path("stores/<int:pk>/edit/", views.store_edit, name="store-edit"),
]
