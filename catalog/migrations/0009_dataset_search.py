"""The search document of every dataset (PostgreSQL full-text and trigram search).

On PostgreSQL, ``catalog_datasetsearch`` holds one row per dataset: a weighted tsvector (A: the
qualified name, B: column names, C: descriptions, column descriptions, tags and owners), the
qualified name for trigram (typo-tolerant) matching, and the protections of its columns for the
protection facet. Statement-level triggers with transition tables keep it true in the same
transaction as every write, whichever path makes it (registration, sync, classification, owner and
tag changes, OpenLineage folding, bulk SQL): one refresh per statement, batched over the rows the
statement touched. On other databases (SQLite for the embedded demo) nothing is created: the search
falls back to case-insensitive substring matching (``catalog.search``).
"""

import django.contrib.postgres.search
from django.db import migrations, models

CONFIG = "english"

CREATE = f"""
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE catalog_datasetsearch (
    -- No foreign key: Django's flush truncates only the tables it manages, and a key would refuse
    -- it. Deletes and truncates of datasets are followed by the triggers below.
    dataset_id bigint PRIMARY KEY,
    name text NOT NULL,
    document tsvector NOT NULL,
    protections text[] NOT NULL DEFAULT '{{}}'
);
CREATE INDEX catalog_datasetsearch_document ON catalog_datasetsearch USING gin (document);
CREATE INDEX catalog_datasetsearch_name_trgm ON catalog_datasetsearch USING gin (name gin_trgm_ops);

-- Words of an identifier: dots, underscores, slashes, dashes and camelCase split it.
CREATE FUNCTION catalog_search_words(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(regexp_replace(coalesce(value, ''), '([a-z0-9])([A-Z])', '\\1 \\2', 'g'), '[._/$-]+', ' ', 'g')
$$;

CREATE FUNCTION catalog_search_refresh(ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO catalog_datasetsearch (dataset_id, name, document, protections)
    SELECT d.id, d.qualified_name,
        setweight(to_tsvector('{CONFIG}', catalog_search_words(d.qualified_name)), 'A')
        || setweight(to_tsvector('{CONFIG}', catalog_search_words(coalesce(c.names, ''))), 'B')
        || setweight(to_tsvector('{CONFIG}',
               d.description || ' ' || coalesce(c.descriptions, '') || ' '
               || catalog_search_words(coalesce((SELECT string_agg(t, ' ') FROM jsonb_array_elements_text(
                      CASE WHEN jsonb_typeof(d.tags) = 'array' THEN d.tags ELSE '[]'::jsonb END) AS t), ''))
               || ' ' || coalesce(o.names, '')), 'C'),
        coalesce(c.protections, '{{}}')
    FROM catalog_dataset d
    LEFT JOIN LATERAL (
        SELECT string_agg(col.name, ' ') AS names, string_agg(col.description, ' ') AS descriptions,
               array_agg(DISTINCT col.protection) AS protections
        FROM catalog_column col WHERE col.dataset_id = d.id
    ) c ON true
    LEFT JOIN LATERAL (
        SELECT string_agg(u.username || ' ' || u.first_name || ' ' || u.last_name, ' ') AS names
        FROM catalog_dataset_owners dso JOIN access_user u ON u.id = dso.user_id WHERE dso.dataset_id = d.id
    ) o ON true
    WHERE d.id IN (SELECT unnest(ids))  -- a hash join: = ANY(ids) scans the array per row
    ON CONFLICT (dataset_id) DO UPDATE
    SET name = excluded.name, document = excluded.document, protections = excluded.protections
$$;

CREATE FUNCTION catalog_search_dataset_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM catalog_search_refresh(ARRAY(SELECT id FROM new_rows));
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_search_dataset_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM catalog_search_refresh(ARRAY(
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.qualified_name IS DISTINCT FROM o.qualified_name
           OR n.description IS DISTINCT FROM o.description
           OR n.tags::text IS DISTINCT FROM o.tags::text));
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_search_column_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM catalog_search_refresh(ARRAY(SELECT DISTINCT dataset_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM catalog_search_refresh(ARRAY(SELECT DISTINCT dataset_id FROM old_rows));
    ELSE
        PERFORM catalog_search_refresh(ARRAY(
            SELECT DISTINCT n.dataset_id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.name IS DISTINCT FROM o.name OR n.description IS DISTINCT FROM o.description
               OR n.protection IS DISTINCT FROM o.protection OR n.dataset_id IS DISTINCT FROM o.dataset_id
            UNION SELECT o.dataset_id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.dataset_id IS DISTINCT FROM o.dataset_id));
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_search_dataset_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM catalog_datasetsearch WHERE dataset_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_search_dataset_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE catalog_datasetsearch;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_search_owner_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM catalog_search_refresh(ARRAY(SELECT DISTINCT dataset_id FROM new_rows));
    ELSE
        PERFORM catalog_search_refresh(ARRAY(SELECT DISTINCT dataset_id FROM old_rows));
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_search_user_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM catalog_search_refresh(ARRAY(
        SELECT DISTINCT dso.dataset_id FROM new_rows n JOIN old_rows o ON o.id = n.id
        JOIN catalog_dataset_owners dso ON dso.user_id = n.id
        WHERE n.username IS DISTINCT FROM o.username OR n.first_name IS DISTINCT FROM o.first_name
           OR n.last_name IS DISTINCT FROM o.last_name));
    RETURN NULL;
END $$;

CREATE TRIGGER catalog_search_dataset_insert AFTER INSERT ON catalog_dataset
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_dataset_inserted();
CREATE TRIGGER catalog_search_dataset_update AFTER UPDATE ON catalog_dataset
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_dataset_updated();
CREATE TRIGGER catalog_search_dataset_delete AFTER DELETE ON catalog_dataset
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_dataset_deleted();
CREATE TRIGGER catalog_search_dataset_truncate AFTER TRUNCATE ON catalog_dataset
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_dataset_truncated();
CREATE TRIGGER catalog_search_column_insert AFTER INSERT ON catalog_column
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_column_changed();
CREATE TRIGGER catalog_search_column_update AFTER UPDATE ON catalog_column
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_column_changed();
CREATE TRIGGER catalog_search_column_delete AFTER DELETE ON catalog_column
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_column_changed();
CREATE TRIGGER catalog_search_owner_insert AFTER INSERT ON catalog_dataset_owners
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_owner_changed();
CREATE TRIGGER catalog_search_owner_delete AFTER DELETE ON catalog_dataset_owners
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_owner_changed();
CREATE TRIGGER catalog_search_user_update AFTER UPDATE ON access_user
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_user_renamed();

SELECT catalog_search_refresh(ARRAY(SELECT id FROM catalog_dataset));
"""

DROP = """
DROP TRIGGER IF EXISTS catalog_search_user_update ON access_user;
DROP TRIGGER IF EXISTS catalog_search_owner_delete ON catalog_dataset_owners;
DROP TRIGGER IF EXISTS catalog_search_owner_insert ON catalog_dataset_owners;
DROP TRIGGER IF EXISTS catalog_search_column_delete ON catalog_column;
DROP TRIGGER IF EXISTS catalog_search_column_update ON catalog_column;
DROP TRIGGER IF EXISTS catalog_search_column_insert ON catalog_column;
DROP TRIGGER IF EXISTS catalog_search_dataset_truncate ON catalog_dataset;
DROP TRIGGER IF EXISTS catalog_search_dataset_delete ON catalog_dataset;
DROP TRIGGER IF EXISTS catalog_search_dataset_update ON catalog_dataset;
DROP TRIGGER IF EXISTS catalog_search_dataset_insert ON catalog_dataset;
DROP FUNCTION IF EXISTS catalog_search_user_renamed();
DROP FUNCTION IF EXISTS catalog_search_owner_changed();
DROP FUNCTION IF EXISTS catalog_search_column_changed();
DROP FUNCTION IF EXISTS catalog_search_dataset_truncated();
DROP FUNCTION IF EXISTS catalog_search_dataset_deleted();
DROP FUNCTION IF EXISTS catalog_search_dataset_updated();
DROP FUNCTION IF EXISTS catalog_search_dataset_inserted();
DROP FUNCTION IF EXISTS catalog_search_refresh(bigint[]);
DROP FUNCTION IF EXISTS catalog_search_words(text);
DROP TABLE IF EXISTS catalog_datasetsearch;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0008_connection_sealed_options"),
        ("access", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
        # The table exists on PostgreSQL only; the model is unmanaged (read through catalog.search).
        migrations.CreateModel(
            name="DatasetSearch",
            fields=[
                ("dataset", models.OneToOneField(
                    on_delete=models.DO_NOTHING, primary_key=True, related_name="search_document",
                    serialize=False, to="catalog.dataset", db_constraint=False,
                )),
                ("name", models.TextField()),
                ("document", django.contrib.postgres.search.SearchVectorField()),
            ],
            options={"managed": False, "db_table": "catalog_datasetsearch"},
        ),
    ]
