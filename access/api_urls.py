"""REST endpoints of access, under /api/v1/."""

from django.urls import path

from access import apis

urlpatterns = [
    path("access/matrix/", apis.MatrixListApi.as_view(), name="matrix-list"),
    path("access/matrix/<int:pk>/", apis.MatrixCellApi.as_view(), name="matrix-cell"),
    path("access/requests/", apis.RequestListCreateApi.as_view(), name="request-list"),
    path("access/requests/<int:pk>/", apis.RequestDetailApi.as_view(), name="request-detail"),
    path("access/requests/<int:pk>/approve/", apis.RequestReviewApi.as_view(), name="request-approve"),
    path("access/requests/<int:pk>/deny/", apis.RequestDenyApi.as_view(), name="request-deny"),
    path("access/requests/<int:pk>/cancel/", apis.RequestCancelApi.as_view(), name="request-cancel"),
    path("access/approvals/", apis.ApprovalQueueApi.as_view(), name="approval-queue"),
    path("access/grants/", apis.GrantListApi.as_view(), name="grant-list"),
    path("access/grants/export.csv", apis.GrantExportCsvApi.as_view(), name="grant-export-csv"),
    path("access/grants/<int:pk>/", apis.GrantDetailApi.as_view(), name="grant-detail"),
    path("access/grants/<int:pk>/revoke/", apis.GrantRevokeApi.as_view(), name="grant-revoke"),
    path("access/grants/<int:pk>/extend/", apis.GrantExtendApi.as_view(), name="grant-extend"),
    path("access/grants/<int:pk>/retry/", apis.GrantEnforcementRetryApi.as_view(), name="grant-retry"),
    path("access/grants/<int:pk>/review/", apis.GrantReviewApi.as_view(), name="grant-review"),
    path("access/break-glass/", apis.BreakGlassApi.as_view(), name="break-glass"),
    path("access/decide/", apis.DecideApi.as_view(), name="decide"),
    path("access/audit/", apis.AuditListApi.as_view(), name="audit-list"),
    path("access/audit/export.csv", apis.AuditExportCsvApi.as_view(), name="audit-export-csv"),
    path("access/audit/export.json", apis.AuditExportJsonApi.as_view(), name="audit-export-json"),
    path("access/audit/verify/", apis.AuditVerifyApi.as_view(), name="audit-verify"),
    path("access/reviews/<int:dataset_id>/", apis.DatasetAccessReviewApi.as_view(), name="access-review"),
    path("access/reviews/<int:dataset_id>/confirm/", apis.DatasetAccessReviewConfirmApi.as_view(), name="access-review-confirm"),
    path("access/proposals/", apis.ProposalListApi.as_view(), name="proposal-list"),
    path("access/proposals/<int:pk>/", apis.ProposalDetailApi.as_view(), name="proposal-detail"),
    path("access/proposals/<int:pk>/approve/", apis.ProposalApproveApi.as_view(), name="proposal-approve"),
    path("access/proposals/<int:pk>/reject/", apis.ProposalRejectApi.as_view(), name="proposal-reject"),
    path("access/proposals/<int:pk>/cancel/", apis.ProposalCancelApi.as_view(), name="proposal-cancel"),
    path("datasets/<int:pk>/stewards/", apis.DatasetStewardListApi.as_view(), name="dataset-steward-list"),
    path("datasets/<int:pk>/stewards/users/<str:name>/", apis.DatasetStewardApi.as_view(), {"kind": "user"},
         name="dataset-steward-user"),
    path("datasets/<int:pk>/stewards/groups/<str:name>/", apis.DatasetStewardApi.as_view(), {"kind": "group"},
         name="dataset-steward-group"),
]
