from django.urls import path

from lineage import views

urlpatterns = [
    path(
        "datasets/<int:pk>/columns/<int:column_id>/impact/", views.column_impact, name="column-impact"
    ),
    path("lineage/violations/", views.violation_list, name="violation-list"),
]
