"""The catalog's own 403, 404, 405 and 500 pages (JSON on API paths), and make run showing them."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import path, reverse

from config import urls as root_urls

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def failing_view(request):
    raise RuntimeError("boom: secret-ish detail that must stay in the log")


# The root URLconf plus two views that fail, to reach the 500 handler on a page and an API path.
urlpatterns = [
    path("boom/", failing_view),
    path("api/v1/boom/", failing_view),
    *root_urls.urlpatterns,
]
handler403, handler404, handler500 = root_urls.handler403, root_urls.handler404, root_urls.handler500


@pytest.fixture
def reader_web(reader):
    client = Client()
    client.force_login(reader)
    return client


def test_an_unknown_page_is_the_catalogs_404_without_url_patterns(reader_web):
    response = reader_web.get("/no/such/page/")

    assert response.status_code == 404
    assert "There is nothing at this address" in response.text
    assert 'class="topbar"' in response.text  # the catalog's layout, with its navigation
    assert "URLconf" not in response.text and "api/v1/" not in response.text


def test_an_unknown_api_path_is_a_json_404(reader_web):
    response = reader_web.get("/api/v1/no-such-thing/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_get_on_a_post_only_page_is_the_catalogs_405_with_its_allow_header(reader_web):
    response = reader_web.get(reverse("logout"))

    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"
    assert "This address does not answer GET" in response.text
    assert "what a button on a page sends" in response.text


def test_a_get_on_a_post_only_catalog_view_is_the_405_page(reader_web):
    response = reader_web.get(reverse("catalog:suggestion-accept", args=[1]))

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "This address does not answer GET" in response.text


def test_api_405s_keep_their_json_body(reader_client):
    response = reader_client.delete("/api/v1/datasets/")

    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "DELETE" not allowed.'}


def test_a_refused_page_is_the_catalogs_403_with_the_reason(reader_web):
    response = reader_web.get(reverse("catalog:dataset-create"))

    assert response.status_code == 403
    assert "You may not do this" in response.text
    assert "Registering datasets needs a registrar role" in response.text


@pytest.mark.urls("tests.test_error_pages")
def test_a_failing_page_is_the_catalogs_500_without_the_traceback(reader):
    client = Client(raise_request_exception=False)
    client.force_login(reader)
    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        response = client.get("/boom/")
    finally:
        logger.removeHandler(handler)

    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "boom" not in response.text and "Traceback" not in response.text
    assert any(record.exc_info and "boom" in str(record.exc_info[1]) for record in logged)  # in the log


@pytest.mark.urls("tests.test_error_pages")
def test_a_failing_api_path_is_a_json_500(reader):
    client = Client(raise_request_exception=False)
    client.force_login(reader)

    response = client.get("/api/v1/boom/")

    assert response.status_code == 500
    assert response.json()["detail"].startswith("Server error")
    assert "boom" not in response.text


def test_make_run_turns_debug_off_and_still_serves_static_files(tmp_path):
    """scripts/run-local.sh runs the local settings with DEBUG=false: the 404 is the catalog's page
    and WhiteNoise serves the stylesheet without collectstatic."""
    assert "export DEBUG=${DEBUG:-false}" in (ROOT / "scripts" / "run-local.sh").read_text()
    script = (
        "import django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "from django.test import Client\n"
        "client = Client(HTTP_HOST='localhost')\n"
        "print(settings.DEBUG)\n"
        "print(client.get('/static/css/catalog.css').status_code)\n"
        "missing = client.get('/no/such/page/')\n"
        "print(missing.status_code, 'There is nothing at this address' in missing.text, 'URLconf' in missing.text)\n"
    )
    environ = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "DATABASE_URL", "REDIS_URL"}}
    environ.update(DJANGO_SETTINGS_MODULE="config.settings.local", DEBUG="false", CATALOG_VAR_DIR=str(tmp_path),
                   STATIC_ROOT=str(tmp_path / "static-root"))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True,
                            timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["False", "200", "404 True False"]


def test_a_form_without_its_csrf_token_gets_the_catalogs_expired_form_page(reader):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reader)

    response = client.post(reverse("logout"))

    assert response.status_code == 403
    assert "This form has expired" in response.text and "Nothing was saved" in response.text
