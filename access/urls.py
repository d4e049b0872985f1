"""Browser pages of access (role matrix, requests, approvals, grants, break-glass, audit)."""

from django.urls import path

from access import service_account_views, views

urlpatterns = [
    path("roles/", views.role_matrix, name="role-matrix"),
    path("roles/<int:pk>/edit/", views.role_cell_edit, name="role-cell-edit"),
    path("request/<int:dataset_pk>/", views.request_create, name="request-create"),
    path("request/<int:dataset_pk>/rules/", views.request_rules, name="request-rules"),
    path("mine/", views.my_access, name="my-access"),
    path("approvals/", views.approval_queue, name="approval-queue"),
    path("approvals/count/", views.approval_count, name="approval-count"),
    path("requests/<int:pk>/", views.request_detail, name="request-detail"),
    path("requests/<int:pk>/review/", views.request_review, name="request-review"),
    path("requests/<int:pk>/cancel/", views.request_cancel, name="request-cancel"),
    path("grants/", views.grant_list, name="grant-list"),
    path("grants/export.csv", views.grant_export, name="grant-export-csv"),
    path("grants/<int:pk>/", views.grant_detail, name="grant-detail"),
    path("grants/<int:pk>/revoke/", views.grant_revoke, name="grant-revoke"),
    path("grants/<int:pk>/extend/", views.grant_extend, name="grant-extend"),
    path("grants/<int:pk>/retry/", views.grant_enforcement_retry, name="grant-retry"),
    path("grants/<int:pk>/break-glass-review/", views.break_glass_review, name="break-glass-review"),
    path("break-glass/<int:dataset_pk>/", views.break_glass, name="break-glass"),
    path("proposals/", views.proposal_list, name="proposal-list"),
    path("proposals/<int:pk>/", views.proposal_detail, name="proposal-detail"),
    path("proposals/<int:pk>/review/", views.proposal_review, name="proposal-review"),
    path("proposals/<int:pk>/cancel/", views.proposal_cancel, name="proposal-cancel"),
    path("audit/", views.audit_list, name="audit-list"),
    path("audit/export.csv", views.audit_export, {"fmt": "csv"}, name="audit-export-csv"),
    path("audit/export.json", views.audit_export, {"fmt": "json"}, name="audit-export-json"),
    path("audit/verify/", views.audit_chain_verify, name="audit-verify"),
    path("service-accounts/", service_account_views.service_account_list, name="service-account-list"),
    path("service-accounts/<int:pk>/", service_account_views.service_account_detail, name="service-account-detail"),
    path("service-accounts/<int:pk>/tokens/", service_account_views.service_token_create, name="service-token-create"),
    path("service-accounts/<int:pk>/tokens/<int:token_pk>/revoke/", service_account_views.service_token_revoke,
         name="service-token-revoke"),
    path("enforcement/<int:dataset_pk>/", views.enforcement_plan, name="enforcement-plan"),
    path("reviews/", views.access_review_index, name="access-review-index"),
    path("reviews/<int:dataset_pk>/", views.access_review, name="access-review"),
    path("reviews/<int:dataset_pk>/stewards/add/", views.steward_add, name="steward-add"),
    path("reviews/<int:dataset_pk>/stewards/remove/", views.steward_remove, name="steward-remove"),
]
