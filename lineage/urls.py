from django.urls import path

from lineage import views

urlpatterns = [
    path(
        "datasets/<int:pk>/columns/<int:column_id>/impact/", views.column_impact, name="column-impact"
    ),
    path("lineage/violations/", views.violation_list, name="violation-list"),
    path("lineage/jobs/", views.job_list, name="job-list"),
    path("lineage/jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("lineage/runs/<uuid:run_id>/", views.run_detail, name="run-detail"),
]
