from django.urls import path

from lineage import apis

urlpatterns = [
    # The path OpenLineage clients post to by default (as Marquez), with or without the slash.
    path("lineage", apis.OpenLineageApi.as_view(), name="openlineage"),
    path("lineage/", apis.OpenLineageSlashApi.as_view()),
    path("lineage/violations/", apis.ViolationListApi.as_view(), name="lineage-violation-list"),
    path("lineage/jobs/", apis.JobListApi.as_view(), name="lineage-job-list"),
    path("lineage/jobs/<int:pk>/", apis.JobDetailApi.as_view(), name="lineage-job-detail"),
    path("lineage/runs/<uuid:run_id>/", apis.RunDetailApi.as_view(), name="lineage-run-detail"),
    path("datasets/<int:pk>/lineage/", apis.DatasetLineageApi.as_view(), name="dataset-lineage"),
    path(
        "datasets/<int:pk>/columns/<int:column_id>/lineage/", apis.ColumnLineageApi.as_view(), name="column-lineage"
    ),
]
