"""Single sign-on benchmark: the time of the sign-in callback (/oidc/callback/) against the real
test provider (panva's oidc-provider under Node, tests/identity/provider).

    .venv/bin/python bench/identity_signin.py [-n 200] [--markdown]

What it does (it only talks to 127.0.0.1 and drops nothing but its own database):

1. Recreates its own PostgreSQL database (default ``catalog_bench_identity``; the name must contain
   ``bench``), migrates it, creates the default roles and maps two directory groups to roles.
2. Starts the test provider, whose ``catalog`` client redirects to the in-process catalog.
3. For each of N new people: signs in at the provider with a fresh HTTP session (the provider's
   pages through ``requests``), then times the catalog's callback (Django's test client: code
   exchange over HTTP, ID token verification against the cached JWKS, user and directory account
   created, groups and roles set, audit). Then signs the same person in again (the provider
   remembers them) and times that callback too (user found by (iss, sub), groups and roles
   re-applied, nothing changed).

Timings are recorded in docs/benchmarks.md, never asserted in tests.
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_identity"
CALLBACK = "http://testserver/oidc/callback/"


def recreate_database(url: str) -> str:
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    if "bench" not in config["NAME"]:
        raise SystemExit(f"refusing to drop {config['NAME']!r}: the benchmark database name must contain 'bench'")
    with psycopg.connect(host=config["HOST"], port=config.get("PORT") or 5432, user=config.get("USER") or None,
                         password=config.get("PASSWORD") or None, dbname="postgres", autocommit=True,
                         connect_timeout=10) as admin:
        name = sql.Identifier(config["NAME"])
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
        return admin.execute("SHOW server_version").fetchone()[0]


def provider_code_redirect(http, authorize_url: str, username: str, password: str) -> str:
    """Walk the provider's pages (sign in when asked) until it redirects to the catalog's callback."""
    url = authorize_url
    for _ in range(10):
        response = http.get(url, allow_redirects=False, timeout=10)
        if response.status_code == 200 and "/interaction/" in response.url:
            action = urljoin(response.url, f"{urlsplit(response.url).path}/login")
            response = http.post(action, data={"login": username, "password": password}, allow_redirects=False,
                                 timeout=10)
        location = response.headers.get("location", "")
        if not location:
            raise RuntimeError(f"the provider stopped at {response.status_code} {response.url}")
        location = urljoin(response.url, location)
        if location.startswith(CALLBACK):
            return location
        url = location
    raise RuntimeError("the provider never redirected to the callback")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="people who sign in (each twice)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    server_version = recreate_database(args.database_url)
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    import django

    django.setup()
    import requests
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    from access.services import role_ensure_defaults
    from tests.identity.oidc_fixtures import CATALOG_CLIENT_SECRET, PASSWORD, _provider_start

    setup_test_environment()
    call_command("migrate", verbosity=0)
    role_ensure_defaults()
    provider = _provider_start(redirect_uris=[CALLBACK], post_logout_uris=["http://testserver/login/"])
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_CLIENT_ID = "catalog"
    settings.OIDC_CLIENT_SECRET = CATALOG_CLIENT_SECRET
    settings.OIDC_GROUP_ROLES = ["security-engineers=security_engineer", "data-engineers=data_engineer"]
    load_before = os.getloadavg()[0]
    timings = {"first sign-in": [], "returning sign-in": []}
    try:
        groups = [["security-engineers", "staff"], ["data-engineers"], ["staff"]]
        for i in range(args.n):
            username = f"person-{i}"
            provider.user_set(username, groups=groups[i % 3])
            http = requests.Session()
            client = Client()
            for phase in timings:
                start = client.get("/oidc/login/")
                callback = provider_code_redirect(http, start["Location"], username, PASSWORD)
                began = time.perf_counter()
                response = client.get(callback.removeprefix("http://testserver"))
                timings[phase].append((time.perf_counter() - began) * 1000)
                if response.status_code != 302:
                    raise RuntimeError(f"callback answered {response.status_code}")
    finally:
        provider.process.terminate()
        provider.process.wait(timeout=10)
    load_after = os.getloadavg()[0]

    rows = [(phase, len(values), statistics.mean(values), percentile(values, 0.5), percentile(values, 0.95),
             max(values)) for phase, values in timings.items()]
    print(f"{'phase':<18} {'n':>5} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for phase, n, mean, p50, p95, top in rows:
        print(f"{phase:<18} {n:>5} {mean:>8.1f} {p50:>8.1f} {p95:>8.1f} {top:>8.1f}")
    if args.markdown:
        print()
        print(f"Run on {time.strftime('%Y-%m-%d')}. {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"Django {django.get_version()}, PostgreSQL {server_version} on 127.0.0.1, "
              f"the catalog in-process (Django's test client), the provider oidc-provider on Node "
              f"{os.popen('node --version').read().strip()}. Machine load average {load_before:.2f} before, "
              f"{load_after:.2f} after (1 min).")
        print()
        print("| phase | sign-ins | mean ms | p50 ms | p95 ms | max ms |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for phase, n, mean, p50, p95, top in rows:
            print(f"| {phase} | {n} | {mean:.1f} | {p50:.1f} | {p95:.1f} | {top:.1f} |")


if __name__ == "__main__":
    main()
