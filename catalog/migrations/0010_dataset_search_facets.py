"""Facet values and a names-only vector in each dataset's search document (PostgreSQL).

``catalog_datasetsearch`` (migration 0009) gains what the facet counts and the ranking read, so that
a search reads one narrow row per dataset and joins nothing:

- ``store``, ``environment``, ``residency`` (of the dataset's store), ``status``, ``sensitivity`` and
  ``classified``, ``owners`` (usernames) and ``tags`` as text arrays (``protections`` is there
  already): every facet family comes from one scan of the matched rows, without joins;
- ``name_document``: the qualified name's words alone (weight A), with its own GIN index: the name
  tier of a search (``customer`` in ~5% of names but ~80% of documents) is found and ranked without
  reading the whole document.

The same statement-level triggers keep them: a change of a dataset's text (name, description, tags)
or of its columns or owners rebuilds its document as before; a change of its store, status or
sensitivity only rewrites its facet values (no ``to_tsvector``); a store's rename or a change of its
environment or residency rewrites the facet values of its datasets. Existing documents are filled
in one statement that rebuilds no document vector.
"""

from django.db import migrations

CONFIG = "english"

# What a dataset's facet values are, from ``d`` (catalog_dataset) and ``s`` (its catalog_datastore).
FACET_VALUES = """
    s.name, s.environment, s.residency, d.status, d.sensitivity, d.classified,
    ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(d.tags) = 'array' THEN d.tags ELSE '[]'::jsonb END))
"""

CREATE = f"""
ALTER TABLE catalog_datasetsearch
    ADD COLUMN name_document tsvector NOT NULL DEFAULT ''::tsvector,
    ADD COLUMN store text NOT NULL DEFAULT '',
    ADD COLUMN environment text NOT NULL DEFAULT '',
    ADD COLUMN residency text NOT NULL DEFAULT '',
    ADD COLUMN status text NOT NULL DEFAULT '',
    ADD COLUMN sensitivity smallint NOT NULL DEFAULT 0,
    ADD COLUMN classified boolean NOT NULL DEFAULT true,
    ADD COLUMN owners text[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN tags text[] NOT NULL DEFAULT '{{}}';

CREATE OR REPLACE FUNCTION catalog_search_refresh(ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO catalog_datasetsearch (dataset_id, name, document, protections, name_document,
        store, environment, residency, status, sensitivity, classified, tags, owners)
    SELECT d.id, d.qualified_name,
        setweight(to_tsvector('{CONFIG}', catalog_search_words(d.qualified_name)), 'A')
        || setweight(to_tsvector('{CONFIG}', catalog_search_words(coalesce(c.names, ''))), 'B')
        || setweight(to_tsvector('{CONFIG}',
               d.description || ' ' || coalesce(c.descriptions, '') || ' '
               || catalog_search_words(coalesce((SELECT string_agg(t, ' ') FROM jsonb_array_elements_text(
                      CASE WHEN jsonb_typeof(d.tags) = 'array' THEN d.tags ELSE '[]'::jsonb END) AS t), ''))
               || ' ' || coalesce(o.names, '')), 'C'),
        coalesce(c.protections, '{{}}'),
        setweight(to_tsvector('{CONFIG}', catalog_search_words(d.qualified_name)), 'A'),
        {FACET_VALUES},
        coalesce(o.usernames, '{{}}')
    FROM catalog_dataset d
    JOIN catalog_datastore s ON s.id = d.store_id
    LEFT JOIN LATERAL (
        SELECT string_agg(col.name, ' ') AS names, string_agg(col.description, ' ') AS descriptions,
               array_agg(DISTINCT col.protection) AS protections
        FROM catalog_column col WHERE col.dataset_id = d.id
    ) c ON true
    LEFT JOIN LATERAL (
        SELECT string_agg(u.username || ' ' || u.first_name || ' ' || u.last_name, ' ') AS names,
               array_agg(DISTINCT u.username) AS usernames
        FROM catalog_dataset_owners dso JOIN access_user u ON u.id = dso.user_id WHERE dso.dataset_id = d.id
    ) o ON true
    WHERE d.id IN (SELECT unnest(ids))  -- a hash join: = ANY(ids) scans the array per row
    ON CONFLICT (dataset_id) DO UPDATE
    SET name = excluded.name, document = excluded.document, protections = excluded.protections,
        name_document = excluded.name_document, store = excluded.store, environment = excluded.environment,
        residency = excluded.residency, status = excluded.status, sensitivity = excluded.sensitivity,
        classified = excluded.classified, tags = excluded.tags, owners = excluded.owners
$$;

-- Facet values only (store, status, sensitivity): no document to rebuild.
CREATE FUNCTION catalog_search_facets_refresh(ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE catalog_datasetsearch ds
    SET (store, environment, residency, status, sensitivity, classified, tags) = ({FACET_VALUES})
    FROM catalog_dataset d JOIN catalog_datastore s ON s.id = d.store_id
    WHERE d.id IN (SELECT unnest(ids)) AND ds.dataset_id = d.id
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

CREATE FUNCTION catalog_search_store_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_datasetsearch ds
    SET store = n.name, environment = n.environment, residency = n.residency
    FROM new_rows n JOIN old_rows o ON o.id = n.id, catalog_dataset d
    WHERE (n.name IS DISTINCT FROM o.name OR n.environment IS DISTINCT FROM o.environment
           OR n.residency IS DISTINCT FROM o.residency)
      AND d.store_id = n.id AND ds.dataset_id = d.id;
    RETURN NULL;
END $$;

CREATE TRIGGER catalog_search_store_update AFTER UPDATE ON catalog_datastore
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_search_store_updated();

-- Existing documents: facet values and the names-only vector, without rebuilding any document.
UPDATE catalog_datasetsearch ds
SET (store, environment, residency, status, sensitivity, classified, tags) = ({FACET_VALUES}),
    name_document = setweight(to_tsvector('{CONFIG}', catalog_search_words(d.qualified_name)), 'A'),
    owners = coalesce((SELECT array_agg(DISTINCT u.username) FROM catalog_dataset_owners dso
                       JOIN access_user u ON u.id = dso.user_id WHERE dso.dataset_id = d.id), '{{}}')
FROM catalog_dataset d JOIN catalog_datastore s ON s.id = d.store_id
WHERE ds.dataset_id = d.id;

CREATE INDEX catalog_datasetsearch_name_document ON catalog_datasetsearch USING gin (name_document);
ANALYZE catalog_datasetsearch;
"""

# Back to 0009's function bodies (copied: a migration must not change when 0009's module does).
DROP = f"""
DROP TRIGGER IF EXISTS catalog_search_store_update ON catalog_datastore;
DROP FUNCTION IF EXISTS catalog_search_store_updated();
DROP FUNCTION IF EXISTS catalog_search_facets_refresh(bigint[]);
DROP INDEX IF EXISTS catalog_datasetsearch_name_document;
ALTER TABLE catalog_datasetsearch
    DROP COLUMN name_document, DROP COLUMN store, DROP COLUMN environment, DROP COLUMN residency,
    DROP COLUMN status, DROP COLUMN sensitivity, DROP COLUMN classified, DROP COLUMN owners, DROP COLUMN tags;

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
    ]
