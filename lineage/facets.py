"""What pipelines send beyond inputs and outputs: the OpenLineage facets the catalog uses.

- ``ownership`` (dataset and job facets; dbt's ``meta.owner``): owners for datasets that have none;
  a change of existing owners is a reviewed proposal (``access.proposals``), as for registrations.
- ``sql`` (job facet): kept on the job (the latest, by event time) and read with sqlglot to give
  column edges the event left untyped their kind (aggregation, masking, copy, transformation).
- ``parent`` (run facet): runs nested under the run they are part of (a dbt model run in its dbt run).
- ``jobType`` (job facet): processing type, integration and job type, kept on the job.

The functions come in three groups, so that any ingestion path (the request today, a batched fold
tomorrow) calls the same ones: *parse* (pure: a facet's JSON to a small value, problems recorded
with their path), *derive* (pure: SQL to column edge kinds, owner names to what to look up), and
*apply* (writes, inside the caller's transaction).
"""

import uuid
from dataclasses import dataclass, replace

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.lineage import lineage as sqlglot_lineage

from lineage.models import EdgeKind, Job, Run
from lineage.sql import SQLLineageError, _select_of

MAX_FACET_TEXT = 64
MAX_SQL = 200_000  # characters of a job's SQL kept (a dbt model's compiled SQL is far below)
MAX_NOTES = 50


@dataclass(frozen=True)
class JobType:
    processing_type: str = ""
    integration: str = ""
    job_type: str = ""


@dataclass(frozen=True)
class JobSQL:
    query: str
    dialect: str = ""


@dataclass(frozen=True)
class ParentRun:
    run_id: uuid.UUID
    namespace: str = ""
    name: str = ""


# Parse --------------------------------------------------------------------------------------------


def _facet(errors, facets, key, path) -> dict | None:
    value = facets.get(key) if isinstance(facets, dict) else None
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.add(f"{path}.{key}", "Must be an object.")
        return None
    return value


def _text(errors, facet, key, path, *, max_length=MAX_FACET_TEXT) -> str:
    value = facet.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.add(f"{path}.{key}", "Must be a string.")
        return ""
    if len(value) > max_length:
        errors.add(f"{path}.{key}", f"Must be at most {max_length} characters.")
        return ""
    return value.strip()


def ownership_parse(errors, facets, path) -> list[str] | None:
    """Owner names of an ``ownership`` facet (``facets`` of a dataset or of the job), or None
    when there is none. ``path`` is where ``facets`` sits, e.g. ``outputs[0].facets``."""
    facet = _facet(errors, facets, "ownership", path)
    if facet is None:
        return None
    owners = facet.get("owners") or []
    if not isinstance(owners, list):
        errors.add(f"{path}.ownership.owners", "Must be an array of owners.")
        return None
    names = []
    for index, owner in enumerate(owners):
        owner_path = f"{path}.ownership.owners[{index}]"
        if not isinstance(owner, dict):
            errors.add(owner_path, "Must be an object with a name.")
            continue
        name = _text(errors, owner, "name", owner_path, max_length=254)
        if not name and "name" not in owner:
            errors.add(f"{owner_path}.name", "This field is required.")
        if name and name not in names:
            names.append(name)
    return names


def job_type_parse(errors, job_facets) -> JobType | None:
    """The ``jobType`` job facet (``processingType``, ``integration``, ``jobType``)."""
    facet = _facet(errors, job_facets, "jobType", "job.facets")
    if facet is None:
        return None
    path = "job.facets.jobType"
    return JobType(
        processing_type=_text(errors, facet, "processingType", path).upper(),
        integration=_text(errors, facet, "integration", path).upper(),
        job_type=_text(errors, facet, "jobType", path).upper(),
    )


def job_sql_parse(errors, job_facets) -> JobSQL | None:
    """The ``sql`` job facet: ``query`` and, in newer producers, ``dialect``."""
    facet = _facet(errors, job_facets, "sql", "job.facets")
    if facet is None:
        return None
    query = _text(errors, facet, "query", "job.facets.sql", max_length=MAX_SQL)
    if not query:
        if "query" not in facet:
            errors.add("job.facets.sql.query", "This field is required.")
        return None
    return JobSQL(query=query, dialect=_text(errors, facet, "dialect", "job.facets.sql").lower())


def parent_run_parse(errors, run_facets) -> ParentRun | None:
    """The ``parent`` run facet: the parent's ``run.runId`` and its job's namespace and name."""
    facet = _facet(errors, run_facets, "parent", "run.facets")
    if facet is None:
        return None
    run = facet.get("run")
    raw_id = run.get("runId") if isinstance(run, dict) else None
    if raw_id is None:
        errors.add("run.facets.parent.run.runId", "This field is required.")
        return None
    try:
        run_id = uuid.UUID(str(raw_id))
    except ValueError:
        errors.add("run.facets.parent.run.runId", f"'{raw_id}' is not a UUID.")
        return None
    job = facet.get("job") if isinstance(facet.get("job"), dict) else {}
    return ParentRun(
        run_id=run_id,
        namespace=_text(errors, job, "namespace", "run.facets.parent.job", max_length=255),
        name=_text(errors, job, "name", "run.facets.parent.job", max_length=600),
    )


# Derive -------------------------------------------------------------------------------------------

# Functions whose result hides the value they are given: hashes, digests, masks, encryption.
MASKING_FUNCTIONS = frozenset({
    "md5", "md5_digest", "md5digest", "sha", "sha1", "sha2", "sha256", "sha512", "standard_hash", "standardhash",
    "hash", "hashbytes", "hash_md5", "hmac", "digest", "farm_fingerprint", "crc32", "xxhash64", "murmur3",
    "regexp_replace", "regexpreplace", "translate", "mask", "mask_hash", "mask_first_n", "mask_last_n",
    "mask_show_first_n", "mask_show_last_n", "encrypt", "aes_encrypt", "pgp_sym_encrypt", "tokenize",
})
_KIND_RANK = {EdgeKind.COPY: 0, EdgeKind.TRANSFORMATION: 1, EdgeKind.AGGREGATION: 2}


def _function_name(function: exp.Func) -> str:
    name = function.name if isinstance(function, exp.Anonymous) else function.sql_name()
    return (name or type(function).__name__).lower()


def _step(expression: exp.Expression) -> tuple[str, bool]:
    """The kind and masking of one select expression on the way from an output to a table column."""
    inner = expression.this if isinstance(expression, exp.Alias) else expression
    masking = any(_function_name(function) in MASKING_FUNCTIONS for function in inner.find_all(exp.Func))
    if isinstance(inner, exp.Column):
        return EdgeKind.COPY, False
    if inner.find(exp.AggFunc) is not None:
        return EdgeKind.AGGREGATION, masking
    return EdgeKind.TRANSFORMATION, masking


def sql_column_kinds(query: str, dialect: str = "") -> dict[str, dict[str, tuple[str, bool]]]:
    """For each output column of a SELECT (lower-cased), its table columns with the kind of edge
    and whether the way there masks: ``{"n_reviews": {"public.reviews.id": ("aggregation", False),
    "reviews.id": (...)}}``, keyed both by ``schema.table.column`` and by ``table.column``.

    The kind is the strongest met on the way through CTEs and subqueries: an aggregate anywhere makes
    it an aggregation, any other expression a transformation, only plain column references (renamed
    or not) a copy; a hash, digest, mask or regexp replacement makes it masking. Empty when the
    SQL cannot be read (the event's edges then keep the kind it gave them).
    """
    try:
        Dialect.get_or_raise(dialect or None)
    except ValueError:
        dialect = ""  # a dialect sqlglot does not know: read it as generic SQL
    try:
        nodes = sqlglot_lineage(None, _select_of(query, dialect), None, dialect=dialect or None)
    except (SQLLineageError, SqlglotError, ValueError, KeyError, RecursionError):
        return {}
    if not isinstance(nodes, dict):
        nodes = {nodes.name: nodes}
    result: dict[str, dict[str, tuple[str, bool]]] = {}
    for output, root in nodes.items():
        sources: dict[str, tuple[str, bool]] = {}
        stack = [(root, EdgeKind.COPY, False)]
        while stack:
            node, kind, masking = stack.pop()
            if isinstance(node.expression, exp.Table):
                if node.downstream:
                    continue
                table = node.expression
                column = node.name.rpartition(".")[2].strip("\"`[]").lower()
                for key in (f"{table.db}.{table.name}.{column}".lower(), f"{table.name}.{column}".lower()):
                    before_kind, before_masking = sources.get(key, (kind, masking))
                    sources[key] = (max(kind, before_kind, key=_KIND_RANK.get), masking or before_masking)
                continue
            step_kind, step_masking = _step(node.expression)
            kind = max(kind, step_kind, key=_KIND_RANK.get)
            stack.extend((child, kind, masking or step_masking) for child in node.downstream)
        result[str(output).lower()] = sources
    return result


def column_lineage_with_sql_kinds(column_lineage: dict, kinds: dict) -> dict:
    """The column lineage of an output (``{field: [FieldInput]}``) where each input the event gave
    no transformation type (``typed`` false) takes its kind and masking from the job's SQL
    (``sql_column_kinds``); inputs the SQL does not name keep what they had."""
    if not kinds:
        return column_lineage
    result = {}
    for field_name, inputs in column_lineage.items():
        sources = kinds.get(field_name.lower(), {})
        updated = []
        for item in inputs:
            found = None
            if not item.typed:
                parts = item.name.lower().split(".")
                column = item.field.lower()
                candidates = [".".join([*parts[-2:], column]), ".".join([parts[-1], column])]
                found = next((sources[key] for key in candidates if key in sources), None)
            if found is None:
                updated.append(item)
            else:
                kind, masking = found
                updated.append(replace(item, kind=kind, direct=True, masking=item.masking or masking))
        result[field_name] = updated
    return result


def owner_lookup_value(name: str) -> str | None:
    """What an owner name is looked up by: ``user:alice@example.com`` and ``alice@example.com`` by
    e-mail or username, ``alice`` by username. A name of another kind (``team:data``,
    ``group:x``, ``application:y``) is no person: None."""
    kind, sep, value = name.partition(":")
    if sep:
        if kind.strip().lower() not in ("user", "person", "urn:li:corpuser"):
            return None
        name = value
    return name.strip() or None


# Apply (inside the caller's transaction) ---------------------------------------------------------


def job_facets_apply(*, job: Job, job_type: JobType | None, sql: JobSQL | None, event_time) -> None:
    """Keep the job type and the latest SQL (by event time) on the job."""
    fields = []
    if job_type is not None:
        for attribute in ("processing_type", "integration", "job_type"):
            value = getattr(job_type, attribute)
            if value and getattr(job, attribute) != value:
                setattr(job, attribute, value)
                fields.append(attribute)
    if sql is not None and (job.sql_event_time is None or event_time >= job.sql_event_time):
        if job.sql != sql.query or job.sql_dialect != sql.dialect or job.sql_tables is None:
            # Parsed once here, not at every view of the job (job_sql_visible reads what it names).
            names = sql_table_names(sql.query, sql.dialect)
            job.sql_tables = [list(name) for name in names] if names is not None else False
            fields.append("sql_tables")
        job.sql, job.sql_dialect, job.sql_event_time = sql.query, sql.dialect, event_time
        fields += ["sql", "sql_dialect", "sql_event_time"]
    if fields:
        job.save(update_fields=[*fields, "updated_at"])


def _same_sender(run: Run) -> Q:
    return Q(sent_by_id=run.sent_by_id) if run.sent_by_id is not None else Q(sent_by__isnull=True)


def run_parent_link(*, run: Run, parent: ParentRun | None, adopt: bool = True) -> None:
    """Nest ``run`` under its parent run if it names one (linked now if the parent is known, else
    when it arrives), and adopt the runs already received that name ``run`` as their parent
    (``adopt=False``: the caller does it for many runs at once, ``runs_adopt_children``).

    Only runs one account sent are nested: a run id is no secret, and another pipeline's run
    naming yours as its parent (or yours arriving after it) keeps the id it named, unlinked."""
    if parent is not None and parent.run_id != run.run_id and run.parent_run_id != parent.run_id:
        run.parent_run_id = parent.run_id
        run.parent = Run.objects.filter(_same_sender(run), run_id=parent.run_id).first()
        run.save(update_fields=["parent_run_id", "parent"])
    if adopt:
        runs_adopt_children([run])


def runs_adopt_children(runs) -> None:
    """Nest under each of these runs the runs received before it that name it as their parent,
    sent by the same account: one query for a batch of runs (two when some are adopted)."""
    by_uuid = {run.run_id: run for run in runs}
    if not by_uuid:
        return
    adopted = []
    for child in Run.objects.filter(parent_run_id__in=list(by_uuid), parent__isnull=True):
        parent = by_uuid[child.parent_run_id]
        if child.pk != parent.pk and child.sent_by_id == parent.sent_by_id:
            child.parent = parent
            adopted.append(child)
    if adopted:
        Run.objects.bulk_update(adopted, ["parent"])


def run_notes_add(*, run: Run | None, notes: list[str]) -> None:
    """Say on the run what the catalog could not use of its events (each note once)."""
    if run is None or not notes:
        return
    added = [note for note in dict.fromkeys(notes) if note not in run.notes]
    if added:
        run.notes = [*run.notes, *added][-MAX_NOTES:]
        run.save(update_fields=["notes"])


def owners_resolve(names) -> tuple[dict[str, object], list[str]]:
    """Active people (never service accounts) for owner names, by e-mail or username, in one query:
    ``({name: user}, [names nobody has])``. An e-mail two people share names nobody."""
    values = {name: owner_lookup_value(name) for name in names}
    wanted = {value.lower() for value in values.values() if value}
    people = []
    if wanted:
        query = Q()
        for value in wanted:
            query |= Q(username__iexact=value) | Q(email__iexact=value)
        people = list(get_user_model().objects.filter(query, is_active=True, is_service_account=False))
    found, unknown = {}, []
    for name, value in values.items():
        lowered = (value or "").lower()
        by_name = [person for person in people if person.username.lower() == lowered]
        by_mail = [person for person in people if (person.email or "").lower() == lowered]
        matches = by_name or by_mail
        if value and len(matches) == 1:
            found[name] = matches[0]
        else:
            unknown.append(name)
    return found, unknown


def dataset_owners_apply(*, principal, owners_by_dataset: list, run: Run | None = None,
                         new_dataset_ids=frozenset()) -> None:
    """Owners from ``ownership`` facets, for ``[(dataset, [owner names])]``.

    A dataset the same event brought into the catalog (``new_dataset_ids``) gets them at once
    (audited as ``dataset.owners_changed``). Owners for any other dataset, with owners or without,
    become a proposal reviewed as a registration's would (``access.proposals``): owners approve
    access and read what others may not, so naming a dataset in an event must not make anyone its
    owner. Names no person has are left out with a note on the run.
    """
    from access import proposals  # access builds on lineage's datasets, not the other way round
    from access.audit import audit_record

    names = {name for _, dataset_names in owners_by_dataset for name in dataset_names}
    found, unknown = owners_resolve(sorted(names))
    notes = [f"Owner '{name}' (ownership facet) is no user of the catalog; ignored." for name in unknown]
    for dataset, dataset_names in owners_by_dataset:
        users = list({found[name].pk: found[name] for name in dataset_names if name in found}.values())
        if not users:
            continue
        current = list(dataset.owners.all())
        if not current and dataset.pk in new_dataset_ids:
            dataset.owners.set(users)
            audit_record(actor=principal, action="dataset.owners_changed", obj=dataset, dataset=dataset, details={
                "from": [], "to": sorted(user.username for user in users), "via": "openlineage",
                "run": str(run.run_id) if run is not None else None,
            })
            continue
        try:
            change = proposals.owners_change(principal=principal, dataset=dataset, owners=users)
        except PermissionDenied:
            notes.append(f"Owners of {dataset.qualified_name} were not proposed: the sender may not name its owners.")
            continue
        if change is not None:
            proposals.proposal_create(
                principal=principal, dataset=dataset, changes={"owners": change},
                reason=f"Ownership facet of {'run ' + str(run.run_id) if run is not None else 'an OpenLineage event'}",
            )
            notes.append(f"{'Other owners' if current else 'Owners'} for {dataset.qualified_name} were proposed "
                         "for review.")
    run_notes_add(run=run, notes=notes)


def event_owners(*, event, inputs, outputs) -> list:
    """``[(dataset, [owner names])]`` from an event's ownership facets: each dataset's own, and
    the job's for the outputs that carry none (the job that writes a dataset answers for it)."""
    pairs = [(dataset, ref.owners) for ref, dataset in zip(event.inputs, inputs) if ref.owners]
    for ref, dataset in zip(event.outputs, outputs):
        names = ref.owners if ref.owners is not None else event.job_owners
        if names:
            pairs.append((dataset, names))
    return pairs


def event_column_kinds_apply(*, event, job: Job | None) -> None:
    """Give the untyped column edges of an event's outputs their kind from the SQL: the event's
    ``sql`` facet, else the job's latest SQL. Parses the SQL only when some input is untyped."""
    untyped = any(not item.typed for ref in event.outputs for items in ref.column_lineage.values() for item in items)
    if not untyped:
        return
    sql = event.job_sql or (JobSQL(job.sql, job.sql_dialect) if job is not None and job.sql else None)
    if sql is None:
        return
    kinds = sql_column_kinds(sql.query, sql.dialect)
    for ref in event.outputs:
        ref.column_lineage = column_lineage_with_sql_kinds(ref.column_lineage, kinds)


def sql_table_names(query: str, dialect: str = "") -> list[tuple[str, str]] | None:
    """``[(schema, table)]`` the SQL reads or names (CTEs left out), lower-cased; None when it
    cannot be parsed."""
    try:
        Dialect.get_or_raise(dialect or None)
    except ValueError:
        dialect = ""
    try:
        statement = _select_of(query, dialect)
    except (SQLLineageError, SqlglotError, RecursionError, ValueError):
        return None  # RecursionError: SQL nested deeper than the parser goes ("((((...))))")
    ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    names = []
    for table in statement.find_all(exp.Table):
        key = ((table.db or "").lower(), table.name.lower())
        is_cte = not table.db and key[1] in ctes  # "reviews" may be a CTE and "public"."reviews" a table
        if table.name and not is_cte and key not in names:
            names.append(key)
    return names
