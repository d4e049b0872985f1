"""Browser pages of access (role matrix, requests, approvals, grants, break-glass, audit)."""

urlpatterns = []
