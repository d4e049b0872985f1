"""The catalog's own error pages: 403, 404 and 500 (``handler403`` and friends in the root
URLconf) and 405 (a middleware: Django has no ``handler405``, and ``require_http_methods``
answers with an empty body). API paths get JSON bodies, as the API's exception handler gives.

The handlers only run with ``DEBUG`` off; ``make run`` turns it off (scripts/run-local.sh) so
the demo shows these pages, never Django's debug pages that list every URL pattern.
"""

from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader

API_PREFIX = "/api/"


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def permission_denied(request, exception=None):
    message = str(exception or "")
    if _is_api(request):
        return JsonResponse({"detail": message or "You do not have permission to perform this action."}, status=403)
    return render(request, "403.html", {"exception": message}, status=403)


def page_not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    # The exception's text can name the URL pattern or model: the page never shows it.
    return render(request, "404.html", status=404)


def server_error(request):
    """Rendered without the request's context: whatever failed (the database, a context
    processor) must not fail the error page too. The traceback goes to the log only."""
    if _is_api(request):
        return JsonResponse({"detail": "Server error: the catalog could not answer. It is logged."}, status=500)
    return HttpResponseServerError(loader.get_template("500.html").render())


class MethodNotAllowedPage:
    """A 405 with no body (``require_http_methods``) becomes the catalog's page (or JSON on API
    paths), keeping the ``Allow`` header. Answers that already have a body (DRF's) pass."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code != 405 or response.content:
            return response
        allowed = response.get("Allow", "")
        if _is_api(request):
            page = JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405)
        else:
            page = render(request, "405.html", {
                "method": request.method, "allowed": [method.strip() for method in allowed.split(",") if method.strip()],
            }, status=405)
        if allowed:
            page["Allow"] = allowed
        return page
