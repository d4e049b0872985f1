"""SCIM benchmark: one PATCH that adds 1,000 members to a directory group that gives a company
role, and one that removes them, as an identity provider sends when a large team is assigned.

    .venv/bin/python bench/scim_patch.py [-n/--members 1000] [--repeats 3] [--markdown]

What it does (it only talks to 127.0.0.1 and drops nothing but its own database):

1. Recreates its own PostgreSQL database (default ``catalog_bench_scim``), migrates it, creates
   the default roles and a mapping of the group ``Engineering`` to the software engineer role.
2. Provisions N users as SCIM would (user, directory account), in bulk, and a SCIM token.
3. Times, through Django's test client with production settings (DEBUG off) and the token,
   ``PATCH /scim/v2/Groups/{id}`` adding the N members in one operation (each member's roles are
   re-evaluated and the change audited), then removing them all with one ``members`` remove
   (each loses the role; what it allowed is trimmed), and ``GET`` of the group with its N members;
   with the SQL query count of each. Repeated ``--repeats`` times on the same group.

Timings are recorded in docs/benchmarks.md, never asserted in tests.
"""

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.register import (  # noqa: E402
    BenchmarkError,
    database_recreate,
    markdown_table,
    memory_gib,
    parse_database_url,
    plain_table,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_scim"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def progress(message: str) -> None:
    print(f"[bench/scim_patch] {message}", file=sys.stderr, flush=True)


def prepare(members: int) -> tuple[int, list[int], str]:
    from django.core.management import call_command

    from access.models import Role, User
    from access.services import role_ensure_defaults
    from identity.models import DirectoryAccount, DirectoryGroup, GroupRoleMapping, ScimProvisioning
    from identity.scim_tokens import scim_token_create

    call_command("migrate", interactive=False, verbosity=0)
    role_ensure_defaults()
    GroupRoleMapping.objects.create(group_name="Engineering", role=Role.objects.get(slug="software_engineer"))
    users = User.objects.bulk_create([User(username=f"person{i:05d}", email=f"person{i:05d}@corp.example",
                                           password="!") for i in range(members)])
    accounts = DirectoryAccount.objects.bulk_create([
        DirectoryAccount(user=user, source=DirectoryAccount.Source.SCIM, external_id=f"00u{user.pk}") for user in users])
    ScimProvisioning.objects.bulk_create([ScimProvisioning(account=account) for account in accounts])
    group = DirectoryGroup.objects.create(display_name="Engineering")
    _, key = scim_token_create(name="bench")
    return group.pk, [user.pk for user in users], key


def timed(client, method: str, path: str, body=None) -> tuple[float, int, int]:
    from django.db import connection

    queries = []

    def count(execute, sql, params, many, context):
        queries.append(1)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        started = time.perf_counter()
        if body is None:
            response = getattr(client, method)(path)
        else:
            response = getattr(client, method)(path, json.dumps(body), content_type="application/scim+json")
        seconds = time.perf_counter() - started
    if response.status_code >= 400:
        raise BenchmarkError(f"{method.upper()} {path} answered {response.status_code}: {response.content[:300]!r}")
    return seconds, len(queries), response.status_code


def measure(group_id: int, user_ids: list[int], key: str, repeats: int) -> dict:
    from django.test import Client

    from access.models import Role

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    path = f"/scim/v2/Groups/{group_id}"
    add = {"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": str(pk)} for pk in user_ids]}]}
    remove = {"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members"}]}
    role_group = Role.objects.get(slug="software_engineer").group
    results = {"add": [], "get": [], "remove": []}
    for round_ in range(repeats):
        results["add"].append(timed(client, "patch", path, add))
        if role_group.user_set.count() != len(user_ids):
            raise BenchmarkError("The members did not get the group's role.")
        results["get"].append(timed(client, "get", path))
        results["remove"].append(timed(client, "patch", path, remove))
        if role_group.user_set.exists():
            raise BenchmarkError("The members kept the group's role.")
        progress(f"  round {round_ + 1}: add {results['add'][-1][0]:.2f}s, remove {results['remove'][-1][0]:.2f}s")
    return results


def report(run: dict, markdown: bool) -> str:
    table = markdown_table if markdown else plain_table
    labels = {"add": f"PATCH add {run['members']:,} members (one operation)",
              "get": f"GET the group with its {run['members']:,} members",
              "remove": f"PATCH remove all {run['members']:,} members"}
    rows = []
    for kind, label in labels.items():
        samples = run["results"][kind]
        seconds = [s for s, _, _ in samples]
        rows.append([label, len(samples), samples[-1][2], f"{statistics.mean(seconds):.2f}", f"{min(seconds):.2f}",
                     f"{max(seconds):.2f}", samples[-1][1]])
    lines = [
        f"Run on {run['date']} at commit {run['commit']}. {os.cpu_count()} cores, {memory_gib()} RAM, "
        f"Python {platform.python_version()}, PostgreSQL on 127.0.0.1; settings config.settings.production, DEBUG off, "
        f"in-process (Django's test client, no HTTP server). Load average {run['load'][0]:.2f} before, "
        f"{run['load'][1]:.2f} after (1 min).",
        "",
        table(["request", "runs", "status", "mean s", "min s", "max s", "queries"], rows),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--members", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_SCIM_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    config = parse_database_url(args.database_url)
    with tempfile.TemporaryDirectory(prefix="catalog-bench-scim-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        Path(environment["STATIC_ROOT"]).mkdir()
        os.environ.update(environment)
        os.environ.pop("REDIS_URL", None)
        progress(f"recreating database {config['NAME']}")
        database_recreate(config)

        import django

        django.setup()
        from django.conf import settings

        settings.ALLOWED_HOSTS = ["*"]
        progress(f"migrating; {args.members:,} provisioned users")
        group_id, user_ids, key = prepare(args.members)
        load_before = os.getloadavg()[0]
        results = measure(group_id, user_ids, key, args.repeats)
        load_after = os.getloadavg()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BASE_DIR).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=BASE_DIR).stdout.strip()
    run = {"date": dt.date.today().isoformat(), "commit": commit + ("+" if dirty else ""), "members": args.members,
           "results": results, "load": (load_before, load_after)}
    print(report(run, args.markdown))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"bench/scim_patch.py: {error}", file=sys.stderr)
        sys.exit(2)
