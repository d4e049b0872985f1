"""Graph page benchmark: a dataset page whose lineage graph draws 5,000 nodes, in headless Chromium.

    .venv/bin/python bench/graph_page.py [--nodes 5000] [--runs 5] [--dagre] [--screenshot PATH]

What it does (it stops by itself and only talks to 127.0.0.1 / localhost):

1. Drops and recreates its own PostgreSQL database (default ``catalog_bench_graph_page``),
   migrates it, creates the roles and stores as ``bench/lineage.py`` does, and a data engineer
   who signs in with a password.
2. Builds, with ``bench/lineage.py``'s set-based SQL, a tree-like DAG of ``--nodes`` datasets in
   five layers downstream of one root (1, then about 9, 60, 400 datasets, the rest in the last
   layer; each dataset built from one of the layer before, a third of them also joining a second),
   so the root's downstream walk at depth 5 reaches every one of them.
3. Serves the catalog with gunicorn and the production settings, signs in with Chromium and opens
   the root's page with ``?direction=downstream&depth=5`` ``--runs`` times, timing navigation to
   the graph's ``data-state="ready"`` (the API answered, the elements are added, laid out and
   drawn), the API request itself, the layout step, the longest main-thread task while loading
   (a frozen page is a long task), and finding a node by name with the graph's search box
   (Enter to its details panel opened). ``--dagre`` also times the dagre layout the page used
   before on the same 5,000 nodes, once.

Timings are recorded here and in docs/benchmarks.md only, never asserted in tests.
"""

import argparse
import datetime as dt
import os
import platform
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.lineage import GraphPlan, catalog_prepare, git_commit, graph_build, ms, p  # noqa: E402
from bench.register import (  # noqa: E402
    BenchmarkError,
    Server,
    database_recreate,
    gunicorn_command,
    markdown_table,
    memory_gib,
    parse_database_url,
    plain_table,
    port_is_free,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_graph_page"
DEFAULT_PORT = 8035
HOSTNAME = "localhost"  # Chromium keeps the production settings' Secure cookies on localhost over plain HTTP
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run"]
PASSWORD = "bench-graph-page-password"
FIRST_LAYERS = (1, 9, 60, 400)
JOIN_SHARE = 1 / 3
SEED = 20261207
GOALS = {"ready": 3000.0, "longest task": 1000.0, "find": 300.0}
# Collects the main thread's long tasks (over 50 ms) from the first moment of each page.
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => { for (const entry of list.getEntries()) window.__longTasks.push(entry.duration); })
  .observe({ type: "longtask", buffered: true });
"""


def tree_plan(count: int, rng: random.Random) -> GraphPlan:
    """One root and ``count - 1`` datasets downstream of it in four more layers."""
    sizes = [size for size in FIRST_LAYERS if size < count]
    sizes.append(count - sum(sizes))
    if sizes[-1] < 1:
        raise BenchmarkError(f"--nodes {count} is too few")
    firsts = [sum(sizes[:layer]) for layer in range(len(sizes))]
    plan = GraphPlan(sizes=sizes, firsts=firsts, layer=[0], main=[None], join=[None])
    for layer in range(1, len(sizes)):
        parents = plan.layer_range(layer - 1)
        unfed = list(parents)
        rng.shuffle(unfed)
        for index in range(sizes[layer]):
            main = unfed[index] if index < len(unfed) else rng.randrange(parents.start, parents.stop)
            join = rng.randrange(parents.start, parents.stop) if rng.random() < JOIN_SHARE else None
            plan.layer.append(layer)
            plan.main.append(main)
            plan.join.append(None if join == main else join)
    return plan


def browser_user() -> str:
    from access.models import Role, User

    user = User(username="bench-graph-reader", email="reader@example.com")
    user.set_password(PASSWORD)
    user.save()
    Role.objects.get(slug="data_engineer").group.user_set.add(user)
    return user.username


def measure(browser, base: str, username: str, path: str, *, runs: int, screenshot: str | None, dagre: bool) -> dict:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(f"{base}/")
    context.add_init_script(LONG_TASKS)
    figures = {"ready": [], "api": [], "layout": [], "longest task": [], "find": [], "nodes": 0, "edges": 0}
    for run in range(runs + 1):  # the first run warms the server and the browser cache up, untimed
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base + path, wait_until="commit")
        page.wait_for_function("document.getElementById('lineage-graph')?.dataset.state === 'ready'", timeout=300_000)
        timings = page.evaluate("""() => {
            const graph = document.getElementById('lineage-graph');
            const api = performance.getEntriesByType('resource').filter((entry) => entry.name.includes('/lineage/?'));
            return {ready: performance.now(), api: api.length ? api[0].duration : null, layout: Number(graph.dataset.layoutMs),
                    layoutKind: graph.dataset.layout, nodes: Number(graph.dataset.nodeCount),
                    edges: Number(graph.dataset.edgeCount), longest: Math.max(0, ...window.__longTasks)};
        }""")
        target = page.evaluate("window.lineageGraph.nodes('[depth = 4]').last().data('fullLabel')")
        finder = page.get_by_label("Find a node in the graph")
        finder.fill(target)
        began = time.perf_counter()
        finder.press("Enter")
        page.locator("#lineage-panel h3").filter(has_text=target).wait_for(state="visible")
        found = (time.perf_counter() - began) * 1000
        if run:
            figures["ready"].append(timings["ready"])
            figures["api"].append(timings["api"] or 0.0)
            figures["layout"].append(timings["layout"])
            figures["longest task"].append(timings["longest"])
            figures["find"].append(found)
        figures.update(nodes=timings["nodes"], edges=timings["edges"], layout_kind=timings["layoutKind"])
        if run == runs and screenshot:
            page.screenshot(path=screenshot)
        if run == runs and dagre:
            figures["dagre"] = page.evaluate("""() => {
                const began = performance.now();
                window.lineageGraph.layout({name: 'dagre', rankDir: 'LR', nodeSep: 14, rankSep: 80, edgeSep: 8,
                                            animate: false, fit: true}).run();
                return performance.now() - began;
            }""")
        page.close()
    context.close()
    if errors:
        raise BenchmarkError(f"JavaScript errors on the page: {errors[:3]}")
    return figures


HEADERS = ["measure", "p50 ms", "max ms", "goal ms", "holds"]
LABELS = {
    "ready": "navigation to graph ready (API, elements, layout, first draw)",
    "api": "lineage API request (in the browser)",
    "layout": "layout step",
    "longest task": "longest main-thread task while loading",
    "find": "find a node by name: Enter to its panel",
}


def rows(figures: dict) -> list[list[str]]:
    result = []
    for key, label in LABELS.items():
        values = figures[key]
        goal = GOALS.get(key)
        result.append([label, f"{p(values, 50):.0f}", f"{max(values):.0f}", f"{goal:.0f}" if goal else "",
                       ("holds" if max(values) <= goal else "MISSED") if goal else ""])
    return result


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5000, help="datasets in the graph, all drawn (default 5000)")
    parser.add_argument("--runs", type=int, default=5, help="timed page loads (default 5)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help=f"PostgreSQL database to drop and recreate (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port for gunicorn (default {DEFAULT_PORT})")
    parser.add_argument("--screenshot", help="save a screenshot of the last page here")
    parser.add_argument("--dagre", action="store_true", help="also time the dagre layout on the same nodes, once")
    parser.add_argument("--markdown", action="store_true", help="also print the results as markdown")
    args = parser.parse_args()
    if not 500 <= args.nodes <= 5001:
        parser.error("--nodes must be between 500 and 5001 (the API draws at most 5000 a side)")
    return args


def main() -> int:
    args = arguments()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    config = parse_database_url(args.database_url)
    if not port_is_free(args.port):
        raise BenchmarkError(f"Port {args.port} is already in use.")
    load_before = os.getloadavg()[0]
    commit = git_commit()
    with tempfile.TemporaryDirectory(prefix="catalog-bench-graph-page-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        environment["ALLOWED_HOSTS"] = f"127.0.0.1,{HOSTNAME}"
        os.environ.update(environment)
        os.environ.pop("REDIS_URL", None)
        print(f"[bench] recreating database {config['NAME']}", file=sys.stderr, flush=True)
        postgres_version = database_recreate(config)

        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        _engineer, key, store_ids, owner_ids, _manager = catalog_prepare()
        username = browser_user()
        call_command("collectstatic", interactive=False, verbosity=0)
        connections.close_all()
        plan = tree_plan(args.nodes, random.Random(SEED))
        print(f"[bench] building {plan.count:,} datasets in layers {plan.sizes}", file=sys.stderr, flush=True)
        graph_build(config, plan, store_ids=store_ids, owner_ids=owner_ids)

        from playwright.sync_api import sync_playwright

        server = Server(gunicorn_command(args.port, "gthread"), environment, Path(var_dir) / "gunicorn.log")
        try:
            server.start()
            server.wait_until_ready(args.port, key)
            base = f"http://{HOSTNAME}:{args.port}"
            path = f"/datasets/1/?direction=downstream&depth={len(plan.sizes)}#lineage"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    figures = measure(browser, base, username, path, runs=args.runs, screenshot=args.screenshot,
                                      dagre=args.dagre)
                finally:
                    browser.close()
        except BaseException:
            print(server.log_tail(), file=sys.stderr)
            raise
        finally:
            server.stop()

    from importlib.metadata import version

    header = (
        f"Graph page benchmark, {dt.date.today().isoformat()}, commit {commit}: "
        + " ".join([".venv/bin/python", "bench/graph_page.py", *sys.argv[1:]])
    )
    machine = (f"{os.cpu_count()} cores, {memory_gib()} RAM, Python {platform.python_version()}, PostgreSQL "
               f"{postgres_version}, headless Chromium ({CHROMIUM}) through Playwright {version('playwright')}, "
               f"gunicorn with config.settings.production; load average {load_before:.2f} before, "
               f"{os.getloadavg()[0]:.2f} after (1 min)")
    graph = (f"{figures['nodes']:,} nodes and {figures['edges']:,} edges drawn (layers {plan.sizes}), "
             f"{figures['layout_kind']} layout; {args.runs} timed loads after one untimed")
    print(header, machine, graph, plain_table(HEADERS, rows(figures)), sep="\n")
    if "dagre" in figures:
        print(f"dagre (the layout before) on the same nodes, once: {ms(figures['dagre'] / 1000)} ms")
    if args.markdown:
        print("\n" + "\n\n".join([f"`{' '.join(['.venv/bin/python', 'bench/graph_page.py', *sys.argv[1:]])}`",
                                  machine + ".", graph + ":", markdown_table(HEADERS, rows(figures), text_columns=1)]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as exc:
        print(f"bench/graph_page.py: {exc}", file=sys.stderr)
        sys.exit(2)
