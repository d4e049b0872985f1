"""Dataset search: full-text and typo-tolerant on PostgreSQL, ranked, with facet counts.

On PostgreSQL every dataset has a search document (``catalog_datasetsearch``, migration 0009, kept by
triggers in the same transaction as each write): a tsvector weighted A for the qualified name, B for
column names, C for descriptions, column descriptions, tags and owners, with a GIN index; and the
qualified name with a trigram GIN index for names typed with a typo (``custmer`` finds
``customers``). Results are ranked in tiers: every word in the name, then a name that looks like the
search, then every word in the name or column names, then the rest; ``ts_rank`` orders within a tier.

On other databases (SQLite for the embedded demo) the search falls back to case-insensitive
substring matching of the name, description and column names, with the same parameters and shape.

Facet counts are counted over what the reader may see (``dataset_visible``), in one query.
"""

import re

from django.contrib.postgres.lookups import TrigramWordSimilar
from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramWordSimilarity
from django.db import connection
from django.db.models import (
    Case,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast

from catalog.models import Column, DatasetSearch, DatasetStatus
from catalog.vocabulary import UNCLASSIFIED_LABEL, Protection, Sensitivity

CONFIG = "english"  # as the migration builds the documents
FUZZY_MIN_LENGTH = 4  # shorter words only match exactly: a typo in "id" is another word
MAX_WORDS = 8  # words of a search that count; the rest are ignored (a pasted paragraph is no search)
FACET_LIMIT = 20  # values shown per facet, most frequent first (sensitivity and protection: all)

DatasetSearch._meta.get_field("name").register_lookup(TrigramWordSimilar)

_WORD = re.compile(r"[^\W_]+")
# What separates words in names and searches; a search with other symbols (``<b>``, ``50%``, ``a&b``)
# is matched literally, as a substring.
_LITERAL = re.compile(r"[^\w\s.\-/$:]")


def _literal(query: str) -> bool:
    return bool(_LITERAL.search(query))


def search_words(query: str) -> list[str]:
    """The words of a search, as the documents split names: ``customer_email`` is two words."""
    words = []
    for word in _WORD.findall(query or ""):
        word = word.lower()
        if word not in words:
            words.append(word)
    return words[:MAX_WORDS]


def highlight_terms(query: str) -> list[str]:
    """What pages mark in what matched: the words of a full-text search, else the search itself."""
    query = (query or "").strip()
    words = search_words(query)
    if full_text_enabled() and words and not _literal(query):
        return words
    return [query] if query else []


def full_text_enabled() -> bool:
    return connection.vendor == "postgresql"


def _tsquery(words: list[str], *, weights: str = "", joiner: str = " & ") -> SearchQuery:
    # Words are letters and digits only (``search_words``): nothing in them is tsquery syntax.
    return SearchQuery(joiner.join(f"{word}:*{weights}" for word in words), search_type="raw", config=CONFIG)


def dataset_search_filter(queryset: QuerySet, query: str, *, names_only: bool = False) -> QuerySet:
    """``queryset`` narrowed to datasets matching ``query``, annotated with ``search_score`` (higher
    first: ``-search_score, qualified_name`` is the order of results).

    ``names_only``: only the name tiers (every word in the name, or a name like the search), with
    the same scores: the top of the full results whenever it holds a page of them
    (``dataset_search_name_tiers``). A common word is in most documents but few names.
    """
    query = (query or "").strip()
    words = search_words(query)
    if not query:
        return queryset
    if not full_text_enabled() or not words or _literal(query):
        # SQLite, or a search with symbols in it (``<b>``, ``%``): substring matching.
        column_match = Column.objects.filter(dataset=OuterRef("pk"), name__icontains=query)
        return queryset.filter(
            Q(qualified_name__icontains=query) | Q(description__icontains=query) | Exists(column_match)
        ).annotate(search_score=Case(
            When(qualified_name__icontains=query, then=Value(3.0)),
            When(Exists(column_match), then=Value(1.0)),
            default=Value(0.0), output_field=FloatField(),
        ))
    everything = _tsquery(words)
    document = F("search_document__document")
    rank = SearchRank(document, everything, normalization=32)  # rank / (rank + 1): below 1
    # The name tier is found and ranked on the names-only vector (its own GIN index; small to read),
    # the same words as the weight-A part of the document.
    in_name = Q(search_document__name_document=everything)
    name_rank = SearchRank(F("search_document__name_document"), everything, normalization=32)
    in_columns = Q(search_document__document=_tsquery(words, weights="AB"))
    # A typo in a name: every word (of FUZZY_MIN_LENGTH letters or more) like a word of the name
    # (pg_trgm word similarity, threshold in settings; the trigram index answers it).
    like_name = Q()
    if all(len(word) >= FUZZY_MIN_LENGTH for word in words):
        for word in words:
            like_name &= Q(search_document__name__trigram_word_similar=word)
    phrase = " ".join(words)
    similarity = Cast(TrigramWordSimilarity(Value(phrase), "search_document__name"), FloatField())
    score = Case(
        When(in_name, then=Value(3.0) + name_rank),
        *([When(like_name, then=Value(2.0) + similarity * Value(0.99))] if like_name else []),
        When(in_columns, then=Value(1.0) + rank),
        default=rank,
        output_field=FloatField(),
    )
    if names_only:
        matched = in_name | like_name if like_name else in_name
    else:
        matched = Q(search_document__document=everything)
        if like_name:
            matched |= like_name
    return queryset.filter(matched).annotate(search_score=score)


def dataset_search_name_tiers(queryset: QuerySet, query: str) -> QuerySet | None:
    """The results of ``query`` in its name tiers only (``dataset_search_filter(names_only=True)``),
    or None where the search has no tiers (SQLite, a literal search). ``queryset``: the datasets
    with every other filter applied."""
    query = (query or "").strip()
    if not query or not full_text_enabled() or not search_words(query) or _literal(query):
        return None
    return dataset_search_filter(queryset, query, names_only=True)


def dataset_search_matches(*, datasets, query: str) -> dict[int, dict]:
    """Why each of ``datasets`` (a page of them) matched ``query``: ``{"name": bool, "description":
    bool, "columns": [names]}`` by dataset id, in one query for the whole page."""
    query = (query or "").strip()
    datasets = list(datasets)
    if not query or not datasets:
        return {}
    words = search_words(query)
    if not full_text_enabled() or not words or _literal(query):
        needle = query.lower()
        matches = {
            dataset.pk: {"name": needle in dataset.qualified_name.lower(),
                         "description": needle in (dataset.description or "").lower(), "columns": []}
            for dataset in datasets
        }
        columns = Column.objects.filter(dataset_id__in=list(matches), name__icontains=query).order_by("dataset_id", "position")
        for dataset_id, name in columns.values_list("dataset_id", "name"):
            matches[dataset_id]["columns"].append(name)
        return matches
    ids = [dataset.pk for dataset in datasets]
    any_word = " | ".join(f"{word}:*" for word in words)
    phrase = " ".join(words)
    # Any word counts here: the dataset as a whole matched every word, each part says which it holds.
    sql = f"""
        SELECT d.id, (to_tsvector('{CONFIG}', catalog_search_words(d.qualified_name)) @@ q.query
                      OR %s <%% d.qualified_name), to_tsvector('{CONFIG}', d.description) @@ q.query, NULL, 0
        FROM catalog_dataset d, to_tsquery('{CONFIG}', %s) AS q(query) WHERE d.id = ANY(%s)
        UNION ALL
        SELECT c.dataset_id, NULL, NULL, c.name, c.position
        FROM catalog_column c, to_tsquery('{CONFIG}', %s) AS q(query)
        WHERE c.dataset_id = ANY(%s) AND to_tsvector('{CONFIG}', catalog_search_words(c.name)) @@ q.query
        ORDER BY 1, 5
    """
    matches = {pk: {"name": False, "description": False, "columns": []} for pk in ids}
    with connection.cursor() as cursor:
        cursor.execute(sql, [phrase, any_word, ids, any_word, ids])
        for dataset_id, name_hit, description_hit, column, _ in cursor.fetchall():
            if column is None:
                matches[dataset_id]["name"], matches[dataset_id]["description"] = bool(name_hit), bool(description_hit)
            else:
                matches[dataset_id]["columns"].append(column)
    return matches


# Facet families: the query parameter each one fills, in the order pages show them.
FACETS = ["sensitivity", "protection", "store", "environment", "residency", "owner", "tag", "status"]
_SENSITIVITY_ORDER = [label for _, label in reversed(Sensitivity.choices)] + [UNCLASSIFIED_LABEL]


def _facet_sql(source: str, family: str) -> str:
    """One family's ``(family, value, count)`` rows over the CTE ``source`` (SQLite: the fallback)."""
    sensitivity_label = "CASE WHEN m.classified THEN CASE m.sensitivity " + " ".join(
        f"WHEN {value} THEN '{label}'" for value, label in Sensitivity.choices
    ) + f" END ELSE '{UNCLASSIFIED_LABEL}' END"
    if family == "sensitivity":
        value, joins = sensitivity_label, ""
    elif family == "store":
        value, joins = "s.name", "JOIN catalog_datastore s ON s.id = m.store_id"
    elif family == "environment":
        value, joins = "s.environment", "JOIN catalog_datastore s ON s.id = m.store_id"
    elif family == "residency":
        value, joins = "s.residency", "JOIN catalog_datastore s ON s.id = m.store_id AND s.residency <> ''"
    elif family == "status":
        value, joins = "m.status", ""
    elif family == "owner":
        value, joins = "u.username", "JOIN catalog_dataset_owners o ON o.dataset_id = m.id JOIN access_user u ON u.id = o.user_id"
    elif family == "tag":
        value, joins = "t.value", "JOIN json_each(CASE WHEN json_type(m.tags) = 'array' THEN m.tags ELSE '[]' END) AS t"
    elif family == "protection":
        value, joins = "p.protection", "JOIN (SELECT DISTINCT dataset_id, protection FROM catalog_column) p ON p.dataset_id = m.id"
    else:
        raise ValueError(family)
    limit = "" if family in ("sensitivity", "protection", "status", "environment") else f" LIMIT {FACET_LIMIT}"
    return (f"SELECT * FROM (SELECT '{family}' AS family, {value} AS value, COUNT(*) AS n FROM {source} m {joins} "
            f"GROUP BY {value} ORDER BY n DESC, value{limit}) AS f_{family}")


def dataset_facets(*, querysets: dict[str, QuerySet]) -> dict[str, list[dict]]:
    """Facet counts, one query for all families: ``{"sensitivity": [{"value": "Restricted",
    "count": 3}, ...], "store": [...], ...}``, most frequent first (sensitivity in tier order).

    ``querysets`` maps each family to the datasets its counts are over: the results with every other
    filter applied but not the family's own (so a reader sees what else they may pick); families
    without an active filter share the results themselves (key ``"*"``). Each queryset must be
    visibility-filtered already: a hidden dataset is counted in no facet.
    """
    if connection.vendor == "postgresql":
        rows = _facet_rows_postgresql(querysets)
    else:
        rows = _facet_rows_other(querysets)
    counts = {}
    for family, value, count in rows:
        counts.setdefault(family, {})[value] = count
    facets = {family: [] for family in FACETS}
    status_labels = dict(DatasetStatus.choices)
    for family in FACETS:
        found = counts.get(family, {})
        if family == "sensitivity":
            facets[family] = [{"value": label, "label": label, "count": found.get(label, 0)} for label in _SENSITIVITY_ORDER]
        elif family == "protection":
            facets[family] = [{"value": label, "label": label, "count": found.get(value, 0)} for value, label in Protection.choices]
        else:
            labels = status_labels if family == "status" else {}
            ordered = sorted(found.items(), key=lambda item: (-item[1], item[0]))
            if family not in _UNLIMITED:
                ordered = ordered[:FACET_LIMIT]
            facets[family] = [{"value": value, "label": labels.get(value, value), "count": count} for value, count in ordered]
    return facets


_UNLIMITED = ("sensitivity", "protection", "status", "environment")
_SCALAR_FAMILIES = ("sensitivity", "store", "environment", "residency", "status")  # one value per dataset
_ARRAY_FAMILIES = {"tag": "tags", "owner": "owners", "protection": "protections"}  # several
_NARROW = ["tier", "store", "environment", "residency", "status", "tags", "owners", "protections"]
_TIER_LABELS = {str(value): label for value, label in Sensitivity.choices} | {"-1": UNCLASSIFIED_LABEL}


def _facet_rows_postgresql(querysets: dict[str, QuerySet]) -> list[tuple[str, str, int]]:
    """``(family, value, count)`` rows, in one statement, from each dataset's narrow facet row
    (``catalog_datasetfacets``, migration 0010): the one-value families of a set of datasets are
    counted in one pass (``GROUPING SETS``), each array family (tags, owners, protections) in one
    more; nothing is joined. A set with filters (a search, a facet filter, the reader's visibility)
    is read once into a materialised CTE; without any (browsing everything one may see), the counts
    come from ``catalog_datasetfacetcounts``, kept by the triggers, and nothing is scanned."""
    families_by_source: dict[str, list[str]] = {}
    for family in FACETS:
        families_by_source.setdefault(family if family in querysets else "*", []).append(family)
    ctes, parts, cte_params, part_params = [], [], [], []
    for index, (key, families) in enumerate(families_by_source.items()):
        queryset = querysets[key]
        if queryset.query.is_empty():
            continue
        if queryset.query.where:
            name = f"m{index}"
            source_sql, source_params = queryset.order_by().values_list(
                Case(When(search_facets__classified=True, then=F("search_facets__sensitivity")), default=Value(-1)),
                *(f"search_facets__{field}" for field in _NARROW[1:]),
            ).query.sql_with_params()
            ctes.append(f"{name}({', '.join(_NARROW)}) AS MATERIALIZED ({source_sql})")
            cte_params.extend(source_params)
        else:
            # Everything: the counts kept by the triggers, summed (the table holds a row per value
            # and the deltas since the last compaction).
            parts.append("SELECT family, value, SUM(n)::bigint FROM catalog_datasetfacetcounts WHERE family = ANY(%s) "
                         "GROUP BY family, value HAVING SUM(n) > 0")
            part_params.append(families)
            continue
        scalars = [family for family in families if family in _SCALAR_FAMILIES]
        if scalars:
            columns = ["tier::text" if family == "sensitivity" else family for family in scalars]
            family_case = " ".join(f"WHEN GROUPING({column}) = 0 THEN '{family}'" for family, column in zip(scalars, columns))
            value_case = " ".join(f"WHEN GROUPING({column}) = 0 THEN {column}" for column in columns)
            sets = ", ".join(f"({column})" for column in columns)
            parts.append(f"SELECT CASE {family_case} END, CASE {value_case} END, COUNT(*) FROM {name} AS m "
                         f"GROUP BY GROUPING SETS ({sets})")
        for family in families:
            if family in _ARRAY_FAMILIES:
                # unnest in the select list (a ProjectSet): faster than a lateral join per row.
                parts.append(f"SELECT '{family}', value, COUNT(*) FROM (SELECT unnest({_ARRAY_FAMILIES[family]}) AS value "
                             f"FROM {name} AS m) AS u GROUP BY value")
    if not parts:
        return []
    sql = (f"WITH {', '.join(ctes)} " if ctes else "") + " UNION ALL ".join(parts)
    with connection.cursor() as cursor:
        cursor.execute(sql, cte_params + part_params)
        rows = cursor.fetchall()
    found = []
    for family, value, count in rows:
        if value is None or (family == "residency" and value == ""):
            continue  # a dataset without a facet row yet; a store without a residency
        if family == "sensitivity":
            value = _TIER_LABELS.get(value, value)
        found.append((family, value, count))
    return found


def _facet_rows_other(querysets: dict[str, QuerySet]) -> list[tuple[str, str, int]]:
    """``(family, value, count)`` rows on databases without the search documents (SQLite), with
    joins per family: the embedded demo holds few datasets."""
    sources, params, ctes = {}, [], []
    for key, queryset in querysets.items():
        sql, sql_params = (
            queryset.order_by().values("id", "sensitivity", "classified", "status", "store_id", "tags").query.sql_with_params()
        )
        name = f"m{len(ctes)}"
        ctes.append(f"{name} AS ({sql})")
        params.extend(sql_params)
        sources[key] = name
    parts = [_facet_sql(sources.get(family, sources["*"]), family) for family in FACETS]
    sql = f"WITH {', '.join(ctes)} " + " UNION ALL ".join(parts)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def facet_querysets(*, filterset_class, data, queryset: QuerySet) -> dict[str, QuerySet]:
    """What ``dataset_facets`` counts over for a request's ``data``: the results (``"*"``), and for
    each family with an active filter the results without that filter."""
    querysets = {"*": filterset_class(data, queryset=queryset).qs}
    for family in FACETS:
        if data.get(family):
            rest = data.copy()
            rest.pop(family, None)
            querysets[family] = filterset_class(rest, queryset=queryset).qs
    return querysets



def facet_counts_compact() -> int:
    """Fold the deltas of the browsing facet counts (``catalog_datasetfacetcounts``) into one row
    per value, in one statement (readers see the same sums before and after); the number of rows
    it removed. Nothing to do on other databases."""
    if not full_text_enabled():
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT catalog_search_counts_compact()")
        return cursor.fetchone()[0]
