"""The restaurant-review platform from the security guidance, as demo data."""

from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db import transaction

from access.models import Role
from access.services import role_ensure_defaults, service_token_create, user_role_assign
from catalog.models import Dataset, DataStore
from catalog.services import dataset_register, store_save
from lineage.models import EdgeKind, EdgeLevel
from lineage.sensitivity import sensitivity_refresh
from monitoring.demo import monitoring_demo_load
from lineage.services import (
    EdgeSpec,
    column_nodes_ensure,
    dataset_nodes_ensure,
    job_ensure,
    lineage_edges_upsert,
)

DEMO_PASSWORD = "catalog-demo"

# One user per company role; the README's persona list says the same (tests/catalog/test_demo.py).
DEMO_USERS = [
    # username, first name, role slug, what to try as them
    ("dana", "Dana", "data_scientist", "asks for access: her request for appdb.public.users waits for Dave"),
    ("sam", "Sam", "security_engineer",
     "works the alert inbox (the demo's warehouse log raised a few), reviews classifications and Restricted "
     "access, reads the audit trail"),
    ("sofia", "Sofia", "software_engineer", "works on dev data; break-glass access to prod when on call"),
    ("mia", "Mia", "data_analyst", "finds datasets, reads their columns and lineage; owns the marketing datasets"),
    ("pete", "Pete", "product_manager", "sees aggregated datasets only"),
    ("erin", "Erin", "executive", "sees aggregated datasets only"),
    ("dave", "Dave", "data_engineer", "registers and edits datasets, accepts suggestions, approves Dana's request"),
    ("priya", "Priya", "platform_engineer",
     "manages stores and connections: tests the support-replica connection and syncs it"),
    ("omar", "Omar", "ops_engineer", "reads dev and staging; break-glass access to prod when on call"),
]
DEMO_ADMIN = ("admin", "administrator", "everything, and the Django admin at /admin/")

STORES = [
    dict(name="appdb", kind="transactional", platform="postgresql", environment="prod", residency="CA",
         line_of_business="reviews", description="The review site's transactional SQL database."),
    dict(name="photos", kind="object", platform="s3", environment="prod", residency="CA",
         line_of_business="reviews", description="Object store for review photos and identity documents."),
    dict(name="analytics", kind="analytical", platform="bigquery", environment="prod", residency="CA",
         line_of_business="reviews", description="The analytical warehouse."),
    dict(name="models", kind="ml_model", platform="mlflow", environment="prod", residency="CA",
         line_of_business="reviews", description="ML models and their output schemas."),
]


def col(name, type_, sensitivity, protection="None", mode="NULLABLE", source="", description=""):
    column = {"name": name, "type": type_, "sensitivity": sensitivity, "protection": protection, "mode": mode,
              "description": description}
    if source:
        column["originatingSource"] = source
    return column


# The marketing dataset, registered with the guidance's own JSON. The published example lists
# ReviewSentiment twice; the catalog refuses that, so the demo sends it once.
MARKETING_REVIEW_SENTIMENT = {
    "name": "marketing.review_sentiment",
    "store": "analytics",
    "registrationTime": "1623167711",
    "registeredBy": "ServiceAccount1",
    "description": "For the marketing team to use for review analytics",
    "version": "1",
    "columns": [
        {"name": "ReviewID", "description": "Which Review this was based off", "mode": "REQUIRED",
         "type": "STRING", "originatingSource": "transactional:Reviews", "sensitivity": "Regular",
         "protection": "None"},
        {"name": "ReviewSentiment", "description": "Sentiment of the review", "mode": "REQUIRED",
         "type": "FLOAT", "originatingSource": "mlmodel:Sentiment", "sensitivity": "Regular",
         "protection": "None"},
        {"name": "RestaurantID", "description": "Which restaurant the review is about", "mode": "REQUIRED",
         "type": "STRING", "originatingSource": "transactional:Restaurants", "sensitivity": "Public",
         "protection": "None"},
    ],
    "owners": ["mia"],
}

REVIEWS_V1 = [
    col("review_id", "UUID", "Regular", mode="REQUIRED", description="Primary key"),
    col("user_id", "UUID", "Regular", mode="REQUIRED", source="transactional:Users"),
    col("restaurant_id", "UUID", "Public", mode="REQUIRED", source="transactional:Restaurants"),
    col("body", "TEXT", "Regular", description="The review text"),
    col("stars", "SMALLINT", "Public"),
]
REVIEWS_V2 = [
    col("review_id", "UUID", "Regular", mode="REQUIRED", description="Primary key"),
    col("user_id", "UUID", "Regular", mode="REQUIRED", source="transactional:Users"),
    col("restaurant_id", "UUID", "Public", mode="REQUIRED", source="transactional:Restaurants"),
    col("body", "TEXT", "Regular", description="The review text"),
    col("rating", "NUMERIC(2,1)", "Public", mode="REQUIRED", description="Half-star ratings replace stars"),
    col("created_at", "TIMESTAMPTZ", "Public", mode="REQUIRED"),
]

# store, name, description, owners, [column lists: one per version, oldest first]
DATASETS = [
    ("appdb", "public.users", "Accounts of the review site.", ["dave"], [[
        col("user_id", "UUID", "Regular", mode="REQUIRED", description="Primary key"),
        col("username", "TEXT", "Regular", mode="REQUIRED"),
        col("email", "TEXT", "Sensitive", mode="REQUIRED", description="Where account mail goes"),
        col("password_hash", "TEXT", "Restricted", "Hashed", mode="REQUIRED",
            description="bcrypt hash of the password"),
        col("created_at", "TIMESTAMPTZ", "Public", mode="REQUIRED"),
    ]]),
    ("photos", "identity_verification_documents", "Scans of documents users upload to verify identity.",
     ["dave", "sam"], [[
        col("document_id", "STRING", "Regular", mode="REQUIRED"),
        col("user_id", "STRING", "Regular", mode="REQUIRED", source="transactional:Users"),
        col("document_hash", "STRING", "Restricted", "Hashed", mode="REQUIRED",
            description="SHA-256 of the document image"),
        col("object_key", "STRING", "Restricted", "Encrypted", description="Where the scan is stored"),
     ]]),
    ("analytics", "users.user_demographics", "User demographics for analytics; PII is masked.", ["dave"], [[
        col("user_id", "STRING", "Regular", mode="REQUIRED", source="transactional:Users"),
        col("full_name", "STRING", "Sensitive", "Masked", source="transactional:Users"),
        col("email", "STRING", "Sensitive", "Masked", source="transactional:Users"),
        col("age_band", "STRING", "Regular"),
        col("city", "STRING", "Regular"),
    ]]),
    ("appdb", "public.reviews", "Reviews written by users.", ["dave"], [REVIEWS_V1, REVIEWS_V2]),
    ("photos", "review_photos", "Photos attached to reviews.", ["dave"], [[
        col("photo_id", "STRING", "Regular", mode="REQUIRED"),
        col("review_id", "STRING", "Regular", mode="REQUIRED", source="transactional:Reviews"),
        col("object_key", "STRING", "Regular", mode="REQUIRED"),
        col("exif", "JSON", "Sensitive", "Masked", description="Location tags are masked on upload"),
    ]]),
    ("appdb", "public.restaurants", "Restaurants listed on the site.", ["dave"], [[
        col("restaurant_id", "UUID", "Public", mode="REQUIRED"),
        col("name", "TEXT", "Public", mode="REQUIRED"),
        col("address", "TEXT", "Public"),
        col("owner_email", "TEXT", "Sensitive"),
    ]]),
    # Every protection a reader meets in a PostgreSQL store: its Enforcement tab shows the protected
    # view governed.payment_methods that masks them (docs/enforcement.md).
    ("appdb", "public.payment_methods", "Cards and billing contacts users pay with.", ["dave"], [[
        col("payment_method_id", "UUID", "Regular", mode="REQUIRED", description="Primary key"),
        col("user_id", "UUID", "Regular", mode="REQUIRED", source="transactional:Users"),
        col("billing_email", "TEXT", "Sensitive", "Masked", description="Readers see ***@ and the domain"),
        col("billing_phone", "TEXT", "Sensitive", "Hashed", description="Keyed hash: equal phones, equal hashes"),
        col("card_number", "TEXT", "Sensitive", "Tokenized", description="Stable token: joins still work"),
        col("card_holder_born", "DATE", "Sensitive", "Masked", description="Readers see the year"),
        col("monthly_spend", "NUMERIC(10,2)", "Sensitive", "Masked", description="Readers see the last digits"),
        col("card_cvv", "TEXT", "Restricted", "Encrypted", description="Never shown without a grant"),
    ]]),
    ("appdb", "public.menus", "Menu items per restaurant.", ["dave"], [[
        col("menu_item_id", "UUID", "Public", mode="REQUIRED"),
        col("restaurant_id", "UUID", "Public", mode="REQUIRED", source="transactional:Restaurants"),
        col("dish", "TEXT", "Public", mode="REQUIRED"),
        col("price", "NUMERIC(8,2)", "Public"),
    ]]),
    ("models", "Sentiment", "The Sentiment model: scores review text.", ["dana"], [[
        col("ReviewID", "STRING", "Regular", mode="REQUIRED", source="transactional:Reviews"),
        col("Score", "FLOAT", "Regular", mode="REQUIRED", description="-1 (negative) to 1 (positive)"),
     ]]),
    ("analytics", "ml.review_sentiment_scores", "Output of the Sentiment model for every review.", ["dana"], [[
        col("ReviewID", "STRING", "Regular", mode="REQUIRED", source="transactional:Reviews"),
        col("Score", "FLOAT", "Regular", mode="REQUIRED", source="mlmodel:Sentiment"),
        col("ScoredAt", "TIMESTAMP", "Public", mode="REQUIRED"),
     ]]),
    # Downstream analytics, linked below by a pipeline's column lineage (not originating sources).
    ("analytics", "marketing.campaign_audience", "Who marketing campaigns go to; e-mail addresses are masked.",
     ["mia"], [[
        col("user_id", "STRING", "Regular", mode="REQUIRED"),
        col("email_masked", "STRING", "Regular", description="j***@example.com"),
        col("age_band", "STRING", "Regular"),
        col("city", "STRING", "Regular"),
     ]]),
    ("analytics", "reporting.review_digest", "Daily digest of new reviews for the community team.", ["pete"], [[
        col("review_id", "STRING", "Regular", mode="REQUIRED"),
        col("body", "STRING", "Regular"),
        col("rating", "NUMERIC", "Public"),
        col("reviewer_email", "STRING", "Regular", description="So the team can reply to the reviewer"),
     ]]),
    ("analytics", "reporting.moderation_queue", "Reviews waiting for a moderator.", ["sofia"], [[
        col("review_id", "STRING", "Regular", mode="REQUIRED"),
        col("reviewer_email", "STRING", "Regular"),
     ]]),
    ("analytics", "reporting.restaurant_sentiment_daily", "Average rating and sentiment per restaurant and day.",
     ["mia", "pete"], [[
        col("restaurant_id", "STRING", "Public", mode="REQUIRED"),
        col("day", "DATE", "Public", mode="REQUIRED"),
        col("avg_rating", "FLOAT", "Public"),
        col("avg_sentiment", "FLOAT", "Regular"),
     ]]),
]

# Column lineage a pipeline reports (as OpenLineage's column lineage facet would):
# (source dataset, column) -> (target dataset, column), kind, masking.
# users.email reaches the digest unmasked although the digest declares it Regular: a
# violation that flows on to the moderation queue. The campaign audience gets it masked.
PIPELINE_LINEAGE = [
    ("appdb.public.users", "email", "analytics.marketing.campaign_audience", "email_masked", "transformation", True),
    ("analytics.users.user_demographics", "user_id", "analytics.marketing.campaign_audience", "user_id", "copy", False),
    ("analytics.users.user_demographics", "age_band", "analytics.marketing.campaign_audience", "age_band", "copy", False),
    ("analytics.users.user_demographics", "city", "analytics.marketing.campaign_audience", "city", "copy", False),
    ("appdb.public.reviews", "review_id", "analytics.reporting.review_digest", "review_id", "copy", False),
    ("appdb.public.reviews", "body", "analytics.reporting.review_digest", "body", "copy", False),
    ("appdb.public.reviews", "rating", "analytics.reporting.review_digest", "rating", "copy", False),
    ("appdb.public.users", "email", "analytics.reporting.review_digest", "reviewer_email", "transformation", False),
    ("analytics.reporting.review_digest", "review_id", "analytics.reporting.moderation_queue", "review_id", "copy", False),
    ("analytics.reporting.review_digest", "reviewer_email", "analytics.reporting.moderation_queue", "reviewer_email",
     "copy", False),
    ("appdb.public.reviews", "restaurant_id", "analytics.reporting.restaurant_sentiment_daily", "restaurant_id",
     "copy", False),
    ("appdb.public.reviews", "rating", "analytics.reporting.restaurant_sentiment_daily", "avg_rating",
     "aggregation", False),
    ("analytics.marketing.review_sentiment", "ReviewSentiment", "analytics.reporting.restaurant_sentiment_daily",
     "avg_sentiment", "aggregation", False),
]


@transaction.atomic
def demo_load() -> None:
    """Load the demo. Idempotent: running it again changes nothing."""
    role_ensure_defaults()
    User = get_user_model()
    admin, created = User.objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
    )
    if created:
        admin.set_password(DEMO_PASSWORD)
        admin.save()
    roles = {role.slug: role for role in Role.objects.all()}
    for username, first_name, role_slug, _ in DEMO_USERS:
        user, created = User.objects.get_or_create(
            username=username, defaults={"first_name": first_name, "email": f"{username}@example.com"}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        user_role_assign(user=user, role=roles[role_slug])

    pipeline, created = User.objects.get_or_create(username="marketing-pipeline", defaults={"is_service_account": True})
    if created:
        pipeline.set_unusable_password()
        pipeline.save()
        service_token_create(user=pipeline)
    user_role_assign(user=pipeline, role=roles["data_engineer"])

    for fields in STORES:
        store = DataStore.objects.filter(name=fields["name"]).first()
        if store is None:
            store_save(principal=admin, **fields)

    for store, name, description, owners, history in DATASETS:
        qualified = Dataset.build_qualified_name(store, *(name.rpartition(".")[::2]))
        exists = Dataset.objects.filter(qualified_name=qualified).exists()
        for columns in history if not exists else history[-1:]:
            dataset_register(
                principal=admin,
                payload={"name": name, "store": store, "description": description, "owners": owners,
                         "registeredBy": "demo-loader", "columns": columns},
            )
    dataset_register(principal=pipeline, payload=MARKETING_REVIEW_SENTIMENT)
    _pipeline_lineage_load()
    _access_load()
    monitoring_demo_load()


def demo_counts() -> dict:
    """What the catalog holds, counted after everything is loaded (the warehouse sync adds a store
    and its datasets, lineage may add discovered ones)."""
    return {"datasets": Dataset.objects.count(), "stores": DataStore.objects.count()}


def demo_logins() -> list[tuple[str, str, str]]:
    """``(username, role, what to try)`` of every demo login, the admin first."""
    from access.roles import COMPANY_ROLES

    role_names = {slug: name.lower() for slug, name, *_ in COMPANY_ROLES}
    return [DEMO_ADMIN] + [(username, role_names[slug], hint) for username, _, slug, hint in DEMO_USERS]


AGGREGATED_DATASETS = ["analytics.reporting.restaurant_sentiment_daily", "analytics.reporting.review_digest"]


def _access_load() -> None:
    """Aggregated datasets for executives and product managers, and one pending request (Dana
    asks Dave for the users table) so the approval queue is not empty."""
    from access.grants import access_request_create
    from access.models import AccessRequest

    for dataset in Dataset.objects.filter(qualified_name__in=AGGREGATED_DATASETS):
        if "aggregated" not in dataset.tags:
            dataset.tags = [*dataset.tags, "aggregated"]
            dataset.save(update_fields=["tags"])
    User = get_user_model()
    dana = User.objects.get(username="dana")
    users = Dataset.objects.get(qualified_name="appdb.public.users")
    if not AccessRequest.objects.filter(requester=dana, dataset=users).exists():
        access_request_create(
            principal=dana, dataset=users, level="read", columns=["email"], duration=4, ticket="DS-1042",
            justification="Checking the e-mail bounce model against real addresses for one afternoon.",
        )


def _pipeline_lineage_load() -> None:
    """Column and dataset edges of ``PIPELINE_LINEAGE``, as the reporting job reported them."""
    datasets = {
        dataset.qualified_name: dataset
        for dataset in Dataset.objects.filter(
            qualified_name__in={name for row in PIPELINE_LINEAGE for name in (row[0], row[2])}
        )
    }
    dataset_nodes = dataset_nodes_ensure(datasets.values())
    wanted = defaultdict(set)
    for source, source_column, target, target_column, _kind, _masking in PIPELINE_LINEAGE:
        wanted[source].add(source_column)
        wanted[target].add(target_column)
    column_nodes = {name: column_nodes_ensure(datasets[name], columns) for name, columns in wanted.items()}
    job = job_ensure(namespace="airflow", name="reporting.daily", description="Builds the reporting and marketing tables.")
    specs = []
    dataset_edges = {}
    for source, source_column, target, target_column, kind, masking in PIPELINE_LINEAGE:
        specs.append(
            EdgeSpec(
                column_nodes[source][source_column.lower()].pk, column_nodes[target][target_column.lower()].pk,
                EdgeLevel.COLUMN, kind, masking=masking, job_id=job.pk,
                description="Masked: first letter and domain kept" if masking else "",
            )
        )
        # One dataset edge per pair: masking only when every column it carries is masked.
        key = (dataset_nodes[datasets[source].pk].pk, dataset_nodes[datasets[target].pk].pk)
        previous = dataset_edges.get(key)
        dataset_edges[key] = (
            kind if previous is None or previous[0] == kind else EdgeKind.TRANSFORMATION,
            masking if previous is None else previous[1] and masking,
        )
    for (source_id, target_id), (kind, masking) in dataset_edges.items():
        specs.append(EdgeSpec(source_id, target_id, EdgeLevel.DATASET, kind, masking=masking, job_id=job.pk))
    sensitivity_refresh(node_ids=lineage_edges_upsert(specs))


DEMO_WAREHOUSE_STORE = "support-replica"
DEMO_WAREHOUSE_SQL = """
CREATE TABLE agents (id INTEGER PRIMARY KEY, full_name TEXT NOT NULL, team TEXT, last_login_ip TEXT);
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY, agent_id INTEGER REFERENCES agents(id), contact TEXT, phone TEXT,
    opened_at TIMESTAMP NOT NULL, subject TEXT, body TEXT
);
CREATE TABLE refunds (id INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL, card_number TEXT, amount NUMERIC(10, 2));
CREATE VIEW open_tickets_by_agent AS
    SELECT a.full_name AS agent, count(t.id) AS open_tickets FROM tickets t JOIN agents a ON a.id = t.agent_id
    GROUP BY a.full_name;
INSERT INTO agents VALUES (1, 'Ada Moreau', 'billing', '10.0.4.17'), (2, 'Bo Lindqvist', 'restaurants', '10.0.4.23'),
    (3, 'Chen Wei', 'billing', '10.0.7.2'), (4, 'Dara Okafor', 'accounts', '10.0.7.9'), (5, 'Eli Brandt', 'accounts', '10.0.9.1');
INSERT INTO tickets VALUES
    (1, 1, 'jo.reviewer@example.com', '+1 415 555 0101', '2026-11-02 09:14', 'Refund', 'Charged twice'),
    (2, 2, 'kim@example.org', '+44 20 7946 0958', '2026-11-03 11:40', 'Review removed', 'Why?'),
    (3, 1, 'lee.h@example.net', '+1 212 555 0199', '2026-11-04 15:02', 'Login', 'Locked out'),
    (4, 3, 'max@example.com', '+49 30 901820', '2026-11-05 08:30', 'Refund', 'Order cancelled'),
    (5, 4, 'noor@example.com', '+1 604 555 0143', '2026-11-06 17:55', 'Account', 'Change email');
INSERT INTO refunds VALUES (1, 1, '4111111111111111', 24.50), (2, 4, '5500005555555559', 12.00),
    (3, 1, '378282246310005', 8.75), (4, 3, '6011111111111117', 30.00), (5, 5, '4012888888881881', 5.25);
"""


def demo_warehouse_load(var_dir) -> None:
    """A small SQLite support-desk database in ``var/warehouses`` (the local settings' file store
    directory), connected to a store and synced once, so the demo shows a sync run, view lineage
    and classification suggestions.

    Runs after :func:`demo_load`, outside its transaction (a sync commits batch by batch).
    Idempotent: the file is made once, and the store is synced only if it never was.
    """
    import sqlite3
    from pathlib import Path

    from access.policies import SYSTEM
    from catalog.connections import connection_save
    from catalog.models import SyncRun
    from catalog.sync import sync_run_execute, sync_run_request

    # Never directly in var/: a connection may not open the catalog's own files, which live there.
    path = Path(var_dir) / "warehouses" / "demo-support-desk.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with sqlite3.connect(path) as db:
            db.executescript(DEMO_WAREHOUSE_SQL)
    store = DataStore.objects.filter(name=DEMO_WAREHOUSE_STORE).first()
    if store is None:
        store = store_save(
            principal=SYSTEM, name=DEMO_WAREHOUSE_STORE, kind="transactional", platform="sqlite", environment="prod",
            residency="US", line_of_business="support",
            description="Read replica of the support desk database (a SQLite file in var/warehouses/), "
                        "harvested by the sync worker.",
        )
    if not hasattr(store, "connection"):
        connection_save(principal=SYSTEM, store=store, database=str(path), sampling_enabled=True, sample_size=20,
                        schedule="0 3 * * *")
    elif store.connection.database == str(Path(var_dir) / "demo-support-desk.sqlite3"):
        # A demo loaded before file stores had their own directory: point it at the new file.
        connection_save(principal=SYSTEM, store=store, database=str(path))
    if not SyncRun.objects.filter(store=store).exists():
        run, _ = sync_run_request(principal=SYSTEM, store=store, enqueue=False)
        sync_run_execute(run.pk)
