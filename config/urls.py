from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from identity.oidc_views import SignInView, SignOutView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", SignOutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include(("catalog.api_urls", "api"), namespace="api")),
    path("api/v1/", include(("access.api_urls", "access-api"), namespace="access-api")),
    path("api/v1/", include(("monitoring.api_urls", "monitoring-api"), namespace="monitoring-api")),
    path("", include(("catalog.urls", "catalog"), namespace="catalog")),
    path("", include(("lineage.urls", "lineage"), namespace="lineage")),
    path("access/", include(("access.urls", "access"), namespace="access")),
    path("monitoring/", include(("monitoring.urls", "monitoring"), namespace="monitoring")),
    path("", include(("identity.urls", "identity"), namespace="identity")),
]

# The catalog's own error pages (with DEBUG off, as in make run and production); 405 is
# config.errors.MethodNotAllowedPage in MIDDLEWARE.
handler403 = "config.errors.permission_denied"
handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"
