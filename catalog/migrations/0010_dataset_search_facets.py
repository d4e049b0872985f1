"""Facet values in a narrow table, and a names-only vector in each search document (PostgreSQL).

- ``catalog_datasetfacets``: one narrow row per dataset (about 150 bytes, against 1-2 kB for a
  search document) with what the facet counts read: its store's name, environment and residency,
  its status, sensitivity and ``classified``, its owners' usernames, its tags and its columns'
  protections (text arrays). Every facet family comes from one scan of the matched rows, without
  joins; browsing without a search scans this table alone.
- ``catalog_datasetsearch.name_document``: the qualified name's words alone (weight A), with its own
  GIN index: the name tier of a search (``customer`` is in ~5% of names but ~80% of documents) is
  found and ranked without reading whole documents.

The same statement-level triggers keep them, in the transaction of each write: a change of a
dataset's text (name, description, tags), of its columns or of its owners rebuilds its document and
facet row as before; a change of its store, status or sensitivity only rewrites its facet row (no
``to_tsvector``); a store's rename or a change of its environment or residency rewrites the facet
rows of its datasets; a delete or truncate of datasets removes them. Existing datasets are filled in
two statements that rebuild no document vector.
"""

import django.contrib.postgres.fields
from django.db import migrations, models

CONFIG = "english"

# What a dataset's facet values are, from ``d`` (catalog_dataset) and ``s`` (its catalog_datastore).
FACET_VALUES = """
    s.name, s.environment, s.residency, d.status, d.sensitivity, d.classified,
    ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(d.tags) = 'array' THEN d.tags ELSE '[]'::jsonb END))
"""
OWNERS = """coalesce((SELECT array_agg(DISTINCT u.username) FROM catalog_dataset_owners dso
    JOIN access_user u ON u.id = dso.user_id WHERE dso.dataset_id = d.id), '{}')"""
PROTECTIONS = """coalesce((SELECT array_agg(DISTINCT col.protection) FROM catalog_column col
    WHERE col.dataset_id = d.id), '{}')"""

CREATE = f"""
ALTER TABLE catalog_datasetsearch ADD COLUMN name_document tsvector NOT NULL DEFAULT ''::tsvector;

-- Narrow (about 150 bytes a row, against 1-2 kB for a document): a facet count scans it whole.
CREATE TABLE catalog_datasetfacets (
    dataset_id bigint PRIMARY KEY,  -- no foreign key, as catalog_datasetsearch
    store text NOT NULL,
    environment text NOT NULL,
    residency text NOT NULL,
    status text NOT NULL,
    sensitivity smallint NOT NULL,
    classified boolean NOT NULL,
    owners text[] NOT NULL DEFAULT '{{}}',
    tags text[] NOT NULL DEFAULT '{{}}',
    protections text[] NOT NULL DEFAULT '{{}}'
);

CREATE OR REPLACE FUNCTION catalog_search_refresh(ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO catalog_datasetsearch (dataset_id, name, document, protections, name_document)
    SELECT d.id, d.qualified_name,
        setweight(to_tsvector('{CONFIG}', catalog_search_words(d.qualified_name)), 'A')
        || setweight(to_tsvector('{CONFIG}', catalog_search_words(coalesce(c.names, ''))), 'B')
        || setweight(to_tsvector('{CONFIG}',
               d.description || ' ' || coalesce(c.descriptions, '') || ' '
               || catalog_search_words(coalesce((SELECT string_agg(t, ' ') FROM jsonb_array_elements_text(
                      CASE WHEN jsonb_typeof(d.tags) = 'array' THEN d.tags ELSE '[]'::jsonb END) AS t), ''))
               || ' ' || coalesce(o.names, '')), 'C'),
        coalesce(c.protections, '{{}}'),
        setweight(to_tsvector('{CONFIG}', catalog_search_words(d.qualified_name)), 'A')
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
    SET name = excluded.name, document = excluded.document, protections = excluded.protections,
        name_document = excluded.name_document;
    INSERT INTO catalog_datasetfacets (dataset_id, store, environment, residency, status, sensitivity, classified,
        tags, owners, protections)
    SELECT d.id, {FACET_VALUES}, {OWNERS}, {PROTECTIONS}
    FROM catalog_dataset d JOIN catalog_datastore s ON s.id = d.store_id
    WHERE d.id IN (SELECT unnest(ids))
    ON CONFLICT (dataset_id) DO UPDATE
    SET store = excluded.store, environment = excluded.environment, residency = excluded.residency,
        status = excluded.status, sensitivity = excluded.sensitivity, classified = excluded.classified,
        tags = excluded.tags, owners = excluded.owners, protections = excluded.protections
$$;

-- Facet values only (store, status, sensitivity): no document to rebuild.
CREATE FUNCTION catalog_search_facets_refresh(ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE catalog_datasetfacets f
    SET (store, environment, residency, status, sensitivity, classified, tags) = ({FACET_VALUES})
    FROM catalog_dataset d JOIN catalog_datastore s ON s.id = d.store_id
    WHERE d.id IN (SELECT unnest(ids)) AND f.dataset_id = d.id
$$;

CREATE OR REPLACE FUNCTION catalog_search_dataset_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM catalog_search_refresh(ARRAY(
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.qualified_name IS DISTINCT FROM o.qualified_name
           OR n.description IS DISTINCT FROM o.description
           OR n.tags::text IS DISTINCT FROM o.tags::text));
    PERFORM catalog_search_facets_refresh(ARRAY(
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.qualified_name IS NOT DISTINCT FROM o.qualified_name
          AND n.description IS NOT DISTINCT FROM o.description
          AND n.tags::text IS NOT DISTINCT FROM o.tags::text
          AND (n.store_id IS DISTINCT FROM o.store_id OR n.status IS DISTINCT FROM o.status
               OR n.sensitivity IS DISTINCT FROM o.sensitivity OR n.classified IS DISTINCT FROM o.classified)));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION catalog_search_dataset_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM catalog_datasetsearch WHERE dataset_id IN (SELECT id FROM old_rows);
    DELETE FROM catalog_datasetfacets WHERE dataset_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION catalog_search_dataset_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE catalog_datasetsearch, catalog_datasetfacets, catalog_datasetfacetcounts;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_search_store_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_datasetfacets f
    SET store = n.name, environment = n.environment, residency = n.residency
    FROM new_rows n JOIN old_rows o ON o.id = n.id, catalog_dataset d
    WHERE (n.name IS DISTINCT FROM o.name OR n.environment IS DISTINCT FROM o.environment
           OR n.residency IS DISTINCT FROM o.residency)
      AND d.store_id = n.id AND f.dataset_id = d.id;
    RETURN NULL;
END $$;

CREATE TRIGGER catalog_search_store_update AFTER UPDATE ON catalog_datastore
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_store_updated();

-- Browsing counts (no search, no filter, a reader who sees everything): kept as signed deltas per
-- facet value by a trigger on the facet rows. Writers only append (no row two writers would both
-- update and wait on); readers sum; catalog_search_counts_compact() folds the deltas (periodic task
-- catalog.search_counts_compact). Exact at every snapshot: a delta commits with its write.
CREATE TABLE catalog_datasetfacetcounts (
    family text NOT NULL,
    value text NOT NULL,
    n bigint NOT NULL
);

-- plpgsql, not sql: PostgreSQL 15 inlines a sql function over a whole-row argument into a grouped
-- query over a table and fails to plan it ("variable not found in subplan target list").
CREATE FUNCTION catalog_search_facet_pairs(f catalog_datasetfacets) RETURNS TABLE (family text, value text)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN QUERY
    SELECT 'sensitivity', (CASE WHEN f.classified THEN f.sensitivity ELSE -1 END)::text
    UNION ALL SELECT 'store', f.store
    UNION ALL SELECT 'environment', f.environment
    UNION ALL SELECT 'residency', f.residency
    UNION ALL SELECT 'status', f.status
    UNION ALL SELECT 'tag', unnest(f.tags)
    UNION ALL SELECT 'owner', unnest(f.owners)
    UNION ALL SELECT 'protection', unnest(f.protections);
END $$;

CREATE FUNCTION catalog_search_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO catalog_datasetfacetcounts (family, value, n)
        SELECT p.family, p.value, count(*) FROM new_rows r, catalog_search_facet_pairs(r) p GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO catalog_datasetfacetcounts (family, value, n)
        SELECT p.family, p.value, -count(*) FROM old_rows r, catalog_search_facet_pairs(r) p GROUP BY 1, 2;
    ELSE
        INSERT INTO catalog_datasetfacetcounts (family, value, n)
        SELECT family, value, sum(n) FROM (
            SELECT p.family, p.value, 1 AS n FROM new_rows r, catalog_search_facet_pairs(r) p
            UNION ALL
            SELECT p.family, p.value, -1 FROM old_rows r, catalog_search_facet_pairs(r) p
        ) AS delta GROUP BY 1, 2 HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END $$;

-- Rows deleted here are summed back in the same statement: concurrent readers see the same sums
-- before and after; a delta committed meanwhile is not in this snapshot and stays as it is.
CREATE FUNCTION catalog_search_counts_compact() RETURNS bigint LANGUAGE sql AS $$
    WITH folded AS (DELETE FROM catalog_datasetfacetcounts RETURNING family, value, n),
    summed AS (INSERT INTO catalog_datasetfacetcounts (family, value, n)
               SELECT family, value, sum(n) FROM folded GROUP BY 1, 2 HAVING sum(n) <> 0 RETURNING 1)
    SELECT (SELECT count(*) FROM folded) - (SELECT count(*) FROM summed)
$$;

CREATE TRIGGER catalog_search_counts_insert AFTER INSERT ON catalog_datasetfacets
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_counts_changed();
CREATE TRIGGER catalog_search_counts_update AFTER UPDATE ON catalog_datasetfacets
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_counts_changed();
CREATE TRIGGER catalog_search_counts_delete AFTER DELETE ON catalog_datasetfacets
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_counts_changed();

-- Existing datasets: their facet values and names-only vectors, without rebuilding any document.
INSERT INTO catalog_datasetfacets (dataset_id, store, environment, residency, status, sensitivity, classified,
    tags, owners, protections)
SELECT d.id, {FACET_VALUES}, {OWNERS}, {PROTECTIONS}
FROM catalog_dataset d JOIN catalog_datastore s ON s.id = d.store_id;
UPDATE catalog_datasetsearch ds
SET name_document = setweight(to_tsvector('{CONFIG}', catalog_search_words(d.qualified_name)), 'A')
FROM catalog_dataset d WHERE ds.dataset_id = d.id;

CREATE INDEX catalog_datasetsearch_name_document ON catalog_datasetsearch USING gin (name_document);
ANALYZE catalog_datasetsearch;
ANALYZE catalog_datasetfacets;
"""

# Back to 0009's function bodies (copied: a migration must not change when 0009's module does).
DROP = f"""
DROP TRIGGER IF EXISTS catalog_search_store_update ON catalog_datastore;
DROP FUNCTION IF EXISTS catalog_search_store_updated();
DROP FUNCTION IF EXISTS catalog_search_facets_refresh(bigint[]);
DROP INDEX IF EXISTS catalog_datasetsearch_name_document;
ALTER TABLE catalog_datasetsearch DROP COLUMN name_document;
DROP TABLE IF EXISTS catalog_datasetfacetcounts;
DROP TABLE IF EXISTS catalog_datasetfacets CASCADE;  -- with the trigger functions' row type uses
DROP FUNCTION IF EXISTS catalog_search_counts_compact();
DROP FUNCTION IF EXISTS catalog_search_counts_changed();

CREATE OR REPLACE FUNCTION catalog_search_dataset_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM catalog_datasetsearch WHERE dataset_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION catalog_search_dataset_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE catalog_datasetsearch;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION catalog_search_refresh(ids bigint[]) RETURNS void
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
    WHERE d.id IN (SELECT unnest(ids))
    ON CONFLICT (dataset_id) DO UPDATE
    SET name = excluded.name, document = excluded.document, protections = excluded.protections
$$;

CREATE OR REPLACE FUNCTION catalog_search_dataset_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM catalog_search_refresh(ARRAY(
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.qualified_name IS DISTINCT FROM o.qualified_name
           OR n.description IS DISTINCT FROM o.description
           OR n.tags::text IS DISTINCT FROM o.tags::text));
    RETURN NULL;
END $$;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0009_dataset_search"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
        # The table exists on PostgreSQL only; the model is unmanaged (read through catalog.search).
        migrations.CreateModel(
            name="DatasetFacets",
            fields=[
                ("dataset", models.OneToOneField(
                    on_delete=models.DO_NOTHING, primary_key=True, related_name="search_facets",
                    serialize=False, to="catalog.dataset", db_constraint=False,
                )),
                ("store", models.TextField()),
                ("environment", models.TextField()),
                ("residency", models.TextField()),
                ("status", models.TextField()),
                ("sensitivity", models.PositiveSmallIntegerField()),
                ("classified", models.BooleanField()),
                ("owners", django.contrib.postgres.fields.ArrayField(base_field=models.TextField(), size=None)),
                ("tags", django.contrib.postgres.fields.ArrayField(base_field=models.TextField(), size=None)),
                ("protections", django.contrib.postgres.fields.ArrayField(base_field=models.TextField(), size=None)),
            ],
            options={"managed": False, "db_table": "catalog_datasetfacets"},
        ),
    ]
