from django.urls import path

from catalog import views

urlpatterns = [
    path("", views.dataset_list, name="dataset-list"),
]
