"""The embedded demo (SQLite, ``make run``) searches by substring with the same parameters, `matched`
and `facets` as PostgreSQL: checked in a separate process on a fresh SQLite database."""

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("load_demo", verbosity=0)
from django.db import connection
from django.test import Client
from access.models import User
assert connection.vendor == "sqlite", connection.vendor
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(User.objects.get(username="mia"))
out = {}
body = client.get("/api/v1/datasets/", {"q": "email"}).json()
out["names"] = [row["qualifiedName"] for row in body["results"]]
out["matched"] = {row["qualifiedName"]: row["matched"] for row in body["results"]}
out["facets"] = body["facets"]
out["tagged"] = [row["qualifiedName"] for row in client.get("/api/v1/datasets/", {"tag": "aggregated"}).json()["results"]]
out["masked"] = [row["qualifiedName"] for row in client.get("/api/v1/datasets/", {"q": "email", "protection": "Masked"}).json()["results"]]
page = client.get("/", {"q": "email", "sensitivity": "Sensitive"})
out["page"] = page.status_code
out["page_has_facets"] = 'data-facet="tag"' in page.content.decode()
print("RESULT " + json.dumps(out))
"""


def test_the_sqlite_demo_searches_and_counts_facets(tmp_path):
    environment = {key: value for key, value in os.environ.items()
                   if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    environment.update(DJANGO_SETTINGS_MODULE="config.settings.local", CATALOG_VAR_DIR=str(tmp_path), DEBUG="false")
    finished = subprocess.run([sys.executable, "-c", SCRIPT], cwd=BASE_DIR, env=environment, capture_output=True,
                              text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads(next(line for line in finished.stdout.splitlines() if line.startswith("RESULT "))[7:])

    assert "analytics.users.user_demographics" in result["names"]
    assert result["matched"]["analytics.users.user_demographics"]["columns"] == ["email"]
    facets = result["facets"]
    assert set(facets) == {"sensitivity", "protection", "store", "environment", "residency", "owner", "tag", "status"}
    assert sum(entry["count"] for entry in facets["status"]) == len(result["names"])
    assert {entry["value"] for entry in facets["protection"]} == {"None", "Masked", "Tokenized", "Hashed", "Encrypted"}
    assert next(entry["count"] for entry in facets["protection"] if entry["value"] == "Masked") >= 1
    assert result["tagged"]  # the demo tags some datasets "aggregated"
    assert "analytics.users.user_demographics" in result["masked"]
    assert result["page"] == 200 and result["page_has_facets"]
