"""REST endpoints of access, under /api/v1/."""

urlpatterns = []
