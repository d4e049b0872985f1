"""OpenLineage events: parsed and checked here; ``openlineage_apply`` writes one as jobs, runs,
datasets and nodes and gives its edges (``lineage.ingestion`` accepts events and folds them in batches).

``POST /api/v1/lineage`` takes run events (and the newer job and dataset events) exactly
as the openlineage-python client's HTTP transport sends them. Each problem is reported
with the path of the field (``outputs[0].facets.columnLineage.fields.email.inputFields[1].field``).
The same event sent twice is recognised by its digest and changes nothing.
"""

import datetime as dt
import functools
import hashlib
import json
import re
import unicodedata
import uuid
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q

from access import policies
from catalog.models import Column, Dataset, DataStore
from catalog.registration import registration_parse
from catalog.services import dataset_discover, dataset_register, store_discover
from catalog.validation import FieldErrors, string_field
from catalog.vocabulary import unclassified_tier
from lineage import facets as lineage_facets  # the facets pipelines send (not a local "facets" dict)
from lineage.models import TERMINAL_RUN_STATES, EdgeKind, EdgeLevel, Job, Node, NodeKind, Run, RunState
from lineage.services import EdgeSpec, column_nodes_ensure, dataset_nodes_ensure, job_ensure

EVENT_TYPES = {state.value for state in RunState}
MAX_NAME = 500


@dataclass(frozen=True)
class FieldInput:
    namespace: str
    name: str
    field: str
    kind: str
    direct: bool
    masking: bool
    description: str
    # False when the event gave no transformation type: the job's SQL may tell the kind (lineage.facets).
    typed: bool = True


@dataclass
class DatasetRef:
    namespace: str
    name: str
    path: str
    # (name, type, description) from the schema facet, or None when the event has none.
    schema: list[tuple[str, str, str]] | None = None
    description: str | None = None
    column_lineage: dict[str, list[FieldInput]] = field(default_factory=dict)
    owners: list[str] | None = None  # names in the ownership facet (lineage.facets)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass
class ParsedEvent:
    event_type: str
    event_time: dt.datetime
    producer: str
    run_id: uuid.UUID | None = None
    job: tuple[str, str] | None = None
    job_description: str | None = None
    error_message: str = ""
    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)
    # Facets lineage.facets reads (ownership, jobType, sql, parent).
    job_owners: list[str] | None = None
    job_type: lineage_facets.JobType | None = None
    job_sql: lineage_facets.JobSQL | None = None
    parent: lineage_facets.ParentRun | None = None


def _object(errors, container, key, path) -> dict:
    value = container.get(key) if isinstance(container, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add(path, "Must be an object.")
        return {}
    return value


def _event_time(errors, payload) -> dt.datetime:
    raw = string_field(errors, payload, "eventTime", "eventTime", required=True, max_length=MAX_NAME)
    if not raw:
        return dt.datetime.now(dt.timezone.utc)
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        errors.add("eventTime", f"'{raw}' is not an ISO 8601 date and time, e.g. 2026-11-22T10:15:00Z.")
        return dt.datetime.now(dt.timezone.utc)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _field_input(errors, raw, path, field_spec) -> FieldInput | None:
    if not isinstance(raw, dict):
        errors.add(path, "Must be an object with namespace, name and field.")
        return None
    namespace = string_field(errors, raw, "namespace", f"{path}.namespace", required=True, max_length=MAX_NAME)
    name = string_field(errors, raw, "name", f"{path}.name", required=True, max_length=MAX_NAME)
    column = string_field(errors, raw, "field", f"{path}.field", required=True, max_length=MAX_NAME)
    transformations = raw.get("transformations") or []
    if not isinstance(transformations, list) or not all(isinstance(t, dict) for t in transformations):
        errors.add(f"{path}.transformations", "Must be an array of transformation objects.")
        transformations = []
    legacy_type = str(field_spec.get("transformationType") or "").upper()
    masking = legacy_type == "MASKED" or any(bool(t.get("masking")) for t in transformations)
    descriptions = [str(t.get("description") or "") for t in transformations if t.get("description")]
    description = str(field_spec.get("transformationDescription") or "") or "; ".join(descriptions)
    direct = [t for t in transformations if str(t.get("type") or "").upper() == "DIRECT"]
    if transformations and not direct:
        kind, is_direct = EdgeKind.INDIRECT, False
    else:
        subtypes = {str(t.get("subtype") or "").upper() for t in direct}
        if "AGGREGATION" in subtypes:
            kind = EdgeKind.AGGREGATION
        elif (subtypes == {"IDENTITY"}) or (not transformations and legacy_type == "IDENTITY"):
            kind = EdgeKind.COPY
        else:
            kind = EdgeKind.TRANSFORMATION
        is_direct = True
    if not (namespace and name and column):
        return None
    typed = bool(transformations) or bool(legacy_type)
    return FieldInput(namespace, name, column, kind, is_direct, masking, description[:500], typed)


def _dataset_ref(errors, raw, path, *, is_output: bool) -> DatasetRef | None:
    if not isinstance(raw, dict):
        errors.add(path, "Must be an object with namespace and name.")
        return None
    namespace = string_field(errors, raw, "namespace", f"{path}.namespace", required=True, max_length=MAX_NAME)
    name = string_field(errors, raw, "name", f"{path}.name", required=True, max_length=MAX_NAME)
    facets = _object(errors, raw, "facets", f"{path}.facets")
    ref = DatasetRef(namespace=namespace, name=name, path=path)
    schema = _object(errors, facets, "schema", f"{path}.facets.schema")
    if schema:
        fields = schema.get("fields")
        if not isinstance(fields, list):
            errors.add(f"{path}.facets.schema.fields", "Must be an array of fields.")
        else:
            ref.schema = []
            for index, spec in enumerate(fields):
                field_path = f"{path}.facets.schema.fields[{index}]"
                field_name = string_field(errors, spec, "name", f"{field_path}.name", required=True, max_length=MAX_NAME)
                field_type = string_field(errors, spec, "type", f"{field_path}.type") or "UNKNOWN"
                description = string_field(errors, spec, "description", f"{field_path}.description")
                if field_name:
                    ref.schema.append((field_name, field_type, description))
    documentation = _object(errors, facets, "documentation", f"{path}.facets.documentation")
    if documentation.get("description"):
        ref.description = str(documentation["description"])
    ref.owners = lineage_facets.ownership_parse(errors, facets, f"{path}.facets")  # [facets]
    lineage = _object(errors, facets, "columnLineage", f"{path}.facets.columnLineage")
    if lineage and not is_output:
        return ref  # column lineage describes how an output was made; on an input it says nothing
    fields = _object(errors, lineage, "fields", f"{path}.facets.columnLineage.fields") if lineage else {}
    if lineage and "fields" not in lineage:
        errors.add(f"{path}.facets.columnLineage.fields", "This field is required.")
    for field_name, spec in fields.items():
        field_path = f"{path}.facets.columnLineage.fields.{field_name}"
        if not isinstance(spec, dict):
            errors.add(field_path, "Must be an object with inputFields.")
            continue
        inputs = spec.get("inputFields")
        if not isinstance(inputs, list):
            errors.add(f"{field_path}.inputFields", "Must be an array.")
            continue
        parsed = [_field_input(errors, raw_input, f"{field_path}.inputFields[{i}]", spec) for i, raw_input in enumerate(inputs)]
        ref.column_lineage[field_name] = [item for item in parsed if item is not None]
    return ref


def _invisible(text: str) -> bool:
    """Control or format characters (bidi overrides, zero-width spaces): a job name holding them
    reads on a page as another name."""
    return any(unicodedata.category(char) in ("Cc", "Cf") for char in text)


def openlineage_parse(payload) -> ParsedEvent:
    """Check an OpenLineage event and return what the catalog needs of it.

    Raises ``ValidationError`` with every problem keyed by the path of the field.
    """
    errors = FieldErrors()
    if not isinstance(payload, dict):
        raise ValidationError({"non_field_errors": ["The body must be a JSON object (an OpenLineage event)."]})
    event_time = _event_time(errors, payload)
    event_type = (string_field(errors, payload, "eventType", "eventType") or "").upper()
    if event_type and event_type not in EVENT_TYPES:
        errors.add("eventType", f"Unknown event type '{payload['eventType']}'. Use one of: {', '.join(sorted(EVENT_TYPES))}.")
    event = ParsedEvent(event_type=event_type, event_time=event_time, producer=string_field(errors, payload, "producer", "producer"))

    is_dataset_event = "dataset" in payload and "job" not in payload
    if is_dataset_event:
        ref = _dataset_ref(errors, payload.get("dataset"), "dataset", is_output=True)
        if ref:
            event.outputs.append(ref)
    else:
        job = payload.get("job")
        if not isinstance(job, dict):
            errors.add("job", "This field is required: an object with namespace and name.")
        else:
            event.job = (
                string_field(errors, job, "namespace", "job.namespace", required=True, max_length=MAX_NAME),
                string_field(errors, job, "name", "job.name", required=True, max_length=MAX_NAME),
            )
            for key, value in zip(("namespace", "name"), event.job):
                if _invisible(value):
                    errors.add(f"job.{key}", "Contains control or invisible characters (e.g. a right-to-left "
                                             "override or a zero-width space): job names are shown on pages as sent.")
            job_facets = _object(errors, job, "facets", "job.facets")
            documentation = _object(errors, job_facets, "documentation", "job.facets.documentation")
            if documentation.get("description"):
                event.job_description = str(documentation["description"])
            # [facets] ownership, jobType and sql of the job (lineage.facets)
            event.job_owners = lineage_facets.ownership_parse(errors, job_facets, "job.facets")
            event.job_type = lineage_facets.job_type_parse(errors, job_facets)
            event.job_sql = lineage_facets.job_sql_parse(errors, job_facets)
        if "run" in payload:
            run = payload.get("run")
            raw_id = run.get("runId") if isinstance(run, dict) else None
            try:
                event.run_id = uuid.UUID(str(raw_id)) if raw_id else None
            except ValueError:
                errors.add("run.runId", f"'{raw_id}' is not a UUID.")
            if raw_id is None:
                errors.add("run.runId", "This field is required.")
            run_facets = _object(errors, run if isinstance(run, dict) else {}, "facets", "run.facets")
            error_facet = run_facets.get("errorMessage")
            if isinstance(error_facet, dict) and error_facet.get("message"):
                event.error_message = str(error_facet["message"])[:2000]
            event.parent = lineage_facets.parent_run_parse(errors, run_facets)  # [facets]
            if not event.event_type:
                event.event_type = RunState.OTHER
        for key, is_output in (("inputs", False), ("outputs", True)):
            raw = payload.get(key) or []
            if not isinstance(raw, list):
                errors.add(key, "Must be an array of datasets.")
                continue
            for index, item in enumerate(raw):
                ref = _dataset_ref(errors, item, f"{key}[{index}]", is_output=is_output)
                if ref:
                    (event.outputs if is_output else event.inputs).append(ref)
    errors.raise_if_any()
    return event


def event_digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


SCHEME_STORES = {
    "postgres": ("transactional", "postgresql"), "postgresql": ("transactional", "postgresql"),
    "mysql": ("transactional", "mysql"), "mariadb": ("transactional", "mysql"), "sqlite": ("transactional", "sqlite"),
    "snowflake": ("analytical", "snowflake"), "bigquery": ("analytical", "bigquery"),
    "redshift": ("analytical", "redshift"), "duckdb": ("analytical", "duckdb"),
    "s3": ("object", "s3"), "s3a": ("object", "s3"), "gs": ("object", "other"), "gcs": ("object", "other"),
    "abfss": ("object", "other"), "hdfs": ("object", "other"), "file": ("object", "other"),
    "kafka": ("stream", "kafka"),
}


def _store_for(namespace: str, cache: dict) -> DataStore:
    if namespace in cache:
        return cache[namespace]
    store = DataStore.objects.filter(lineage_namespace=namespace).first() or DataStore.objects.filter(name=namespace).first()
    if store is None:
        scheme = namespace.split("://", 1)[0].lower() if "://" in namespace else ""
        kind, platform = SCHEME_STORES.get(scheme, ("analytical", "other"))
        store = store_discover(namespace=namespace, kind=kind, platform=platform)
    cache[namespace] = store
    return store


def _registration_name(name: str) -> str:
    """An OpenLineage dataset name as a catalog name: ``public.orders`` stays, ``/data/x`` -> ``data/x``."""
    cleaned = re.sub(r"[^A-Za-z0-9_$\-/.]+", "_", name.strip().strip("/"))
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip(".")
    return cleaned or "_"


def _schema_errors(ref: DatasetRef, exc: ValidationError) -> dict:
    """Registration errors (``columns[2].name``) under the event's own path (``outputs[0].facets.schema.fields[2].name``)."""
    renamed = {}
    for path, messages in getattr(exc, "message_dict", {"": exc.messages}).items():
        if path.startswith("columns"):
            path = f"{ref.path}.facets.schema.fields{path[len('columns'):]}"
        else:
            path = f"{ref.path}.{path}" if path else ref.path
        renamed[path] = messages
    return renamed


def _schema_changed(dataset: Dataset, payload: dict) -> bool:
    """Whether a discovered dataset's schema facet differs from its current version."""
    version = dataset.current_version
    if version is None:
        return True
    try:
        registration = registration_parse(payload)
    except ValidationError:
        return True  # let the registration report it
    return registration.fingerprint != version.fingerprint or (
        registration.description is not None and registration.description != dataset.description
    )


def _registration_payload(ref: DatasetRef, store_name: str) -> dict:
    """The registration JSON a schema facet stands for (how a discovered dataset follows its facet)."""
    payload = {
        "name": _registration_name(ref.name),
        "store": store_name,
        "registeredBy": "OpenLineage",
        "columns": [
            {"name": col, "type": col_type[:128], "description": desc, "sensitivity": "Regular", "protection": "None"}
            for col, col_type, desc in ref.schema or []
        ],
    }
    if ref.description is not None:
        payload["description"] = ref.description
    return payload


def openlineage_schema_check(event: ParsedEvent) -> None:
    """Check, without the database, that every schema facet is one the catalog could register
    (names, types, duplicate columns), so a bad facet is a 400 when the event is posted rather
    than a failure found later by the fold. Raises ``ValidationError`` under the event's paths."""
    errors = {}
    for ref in [*event.inputs, *event.outputs]:
        if not ref.schema:
            continue
        problems = _schema_problems(tuple(ref.schema), ref.description)
        if problems:
            errors.update(_schema_errors(ref, ValidationError(problems)))
    if errors:
        raise ValidationError(errors)


@functools.lru_cache(maxsize=2048)
def _schema_problems(schema: tuple, description: str | None) -> dict | None:
    """The registration's errors for a schema facet (pipelines send the same schemas again and
    again: remembered per process). The dataset's name is checked by the parser already."""
    ref = DatasetRef(namespace="", name="dataset", path="", schema=list(schema), description=description)
    try:
        registration_parse(_registration_payload(ref, "store"))
    except ValidationError as exc:
        return getattr(exc, "message_dict", None) or {"": exc.messages}
    return None


@dataclass
class FoldState:
    """What one batch of the fold has looked up or written already, so the events of a batch
    share their stores, datasets, nodes and jobs instead of asking for them again.

    ``reset`` forgets everything: after an event's savepoint is rolled back, what it created is gone.
    """

    stores: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)  # (namespace, name) -> Dataset
    schemas_seen: set = field(default_factory=set)  # (namespace, name, schema, description) already followed
    dataset_nodes: dict = field(default_factory=dict)  # dataset id -> Node
    column_nodes: dict = field(default_factory=dict)  # dataset id -> {lower name: Node}
    jobs: dict = field(default_factory=dict)  # (namespace, name, description) -> Job
    touched: set = field(default_factory=set)  # node ids whose sensitivity the batch must refresh
    # Rows read for the whole batch up front (``fold_prefetch``); a key present with None means
    # "known not to exist", so the event creates it without asking first.
    dataset_rows: dict = field(default_factory=dict)  # qualified name -> Dataset | None
    job_rows: dict = field(default_factory=dict)  # (namespace, name) -> Job | None
    runs: dict = field(default_factory=dict)  # run uuid -> Run (locked) | None

    def reset(self) -> None:
        for cache in (self.stores, self.datasets, self.schemas_seen, self.dataset_nodes, self.column_nodes, self.jobs,
                      self.dataset_rows, self.job_rows, self.runs):
            cache.clear()

    def forget_dataset(self, dataset_id: int) -> None:
        self.column_nodes.pop(dataset_id, None)


def _dataset_for(principal, ref: DatasetRef, fold: FoldState, touched: set, new_ids: set) -> Dataset:
    """The catalog dataset an OpenLineage dataset names, discovered (and flagged) if unknown; the
    ids of datasets this call made are added to ``new_ids``.

    Discovered datasets follow the schema facet; registered ones keep their registered schema.
    """
    schema_key = (ref.namespace, ref.name, tuple(ref.schema or ()), ref.description)
    if ref.key in fold.datasets and (ref.schema is None or schema_key in fold.schemas_seen):
        return fold.datasets[ref.key]
    store = _store_for(ref.namespace, fold.stores)
    name = _registration_name(ref.name)
    qualified_name = f"{store.name}.{name}"
    if qualified_name in fold.dataset_rows:
        dataset = fold.dataset_rows[qualified_name]
    else:
        dataset = Dataset.objects.filter(qualified_name=qualified_name).select_related("current_version").first()
    if (dataset is None or dataset.needs_review) and ref.schema:
        payload = _registration_payload(ref, store.name)
        if dataset is not None and not _schema_changed(dataset, payload):
            fold.datasets[ref.key] = dataset
            fold.schemas_seen.add(schema_key)
            return dataset  # the same schema again: nothing to write
        # The facet names columns, not their sensitivity (the "Regular" above is a placeholder): a
        # dataset nobody has classified stays unclassified, decided as the default tier, never lower.
        unclassified = dataset is None or not dataset.classified
        was_new = dataset is None
        try:
            dataset, _ = dataset_register(principal=principal, payload=payload)
        except ValidationError as exc:
            raise ValidationError(_schema_errors(ref, exc)) from exc
        if was_new:
            new_ids.add(dataset.pk)
        fold.dataset_rows.pop(qualified_name, None)  # read again if named again (the registration changed it)
        fold.forget_dataset(dataset.pk)  # the registration relinked its column nodes
        updates = {} if dataset.needs_review else {"needs_review": True}
        if unclassified and dataset.classified:
            updates.update(classified=False, sensitivity=unclassified_tier())
        if updates:
            Dataset.objects.filter(pk=dataset.pk).update(**updates)
            for attribute, value in updates.items():
                setattr(dataset, attribute, value)
        if was_new:
            # The registration made its nodes, one per column and linked to it: read them once,
            # for the batch's caches and (being counted as declared) to count them again.
            nodes = list(Node.objects.filter(dataset=dataset, kind__in=[NodeKind.DATASET, NodeKind.COLUMN]))
            fold.dataset_nodes.update((node.dataset_id, node) for node in nodes if node.kind == NodeKind.DATASET)
            fold.column_nodes[dataset.pk] = {node.name.lower(): node for node in nodes if node.kind == NodeKind.COLUMN}
            if "classified" in updates:
                touched.update(node.pk for node in nodes if node.kind == NodeKind.COLUMN)
        elif "classified" in updates:  # the registration counted its columns as declared: count them again
            touched.update(Node.objects.filter(dataset=dataset, kind=NodeKind.COLUMN).values_list("pk", flat=True))
    elif dataset is None:
        dataset = dataset_discover(store=store, name=name, description=ref.description or "")
        new_ids.add(dataset.pk)
        fold.dataset_rows[qualified_name] = dataset
    fold.datasets[ref.key] = dataset
    if ref.schema is not None:
        fold.schemas_seen.add(schema_key)
    return dataset


def _run_record(principal, event: ParsedEvent, job, fold: FoldState) -> Run | None:
    if event.run_id is None:
        return None
    if event.run_id in fold.runs:
        run = fold.runs[event.run_id]  # locked by fold_prefetch
    else:
        run = Run.objects.select_for_update().filter(run_id=event.run_id).first()
    state = event.event_type or RunState.OTHER
    if run is None:
        run = Run(run_id=event.run_id, job=job, state=state, last_event_time=event.event_time,
                  sent_by=principal if getattr(principal, "pk", None) else None)
    elif not policies.can_send_lineage_for(principal, run.sent_by_id):
        raise PermissionDenied(f"Run {event.run_id} was started by another account's events; only that account "
                               "sends events for it.")
    elif run.sent_by_id is None and getattr(principal, "pk", None):
        run.sent_by = principal  # a run from before senders were kept: its next sender keeps it
    elif run.state in TERMINAL_RUN_STATES and state not in TERMINAL_RUN_STATES:
        pass  # a late START or RUNNING does not reopen a finished run
    elif event.event_time >= run.last_event_time or state in TERMINAL_RUN_STATES:
        run.state = state
    run.last_event_time = max(run.last_event_time, event.event_time)
    if state == RunState.START and (run.started_at is None or event.event_time < run.started_at):
        run.started_at = event.event_time
    if state in TERMINAL_RUN_STATES:
        run.ended_at = event.event_time
    if event.error_message:
        run.error_message = event.error_message
    run.save()
    fold.runs[event.run_id] = run
    return run


# Run facets that may carry credentials (environment variables, spark properties) are not kept.
UNKEPT_RUN_FACETS = {"environmentVariables", "environment-properties", "spark_properties", "spark.logicalPlan"}


def kept_payload(payload: dict) -> dict:
    """The event as stored: without run facets that may carry credentials."""
    run = payload.get("run")
    if not isinstance(run, dict) or not isinstance(run.get("facets"), dict):
        return payload
    facets = {key: value for key, value in run["facets"].items() if key not in UNKEPT_RUN_FACETS}
    return {**payload, "run": {**run, "facets": facets}}


def _job_for(principal, event: ParsedEvent, fold: FoldState):
    """The event's job; ``PermissionDenied`` when another account's events made it (the batch's
    cache is shared by the events of every sender, so the check is made for each event)."""
    key = (*event.job, event.job_description)
    if key not in fold.jobs:
        known = {"existing": fold.job_rows[event.job]} if event.job in fold.job_rows else {}
        fold.jobs[key] = job_ensure(principal=principal, namespace=event.job[0], name=event.job[1],
                                    description=event.job_description, **known)
        fold.job_rows[event.job] = fold.jobs[key]
    job = fold.jobs[key]
    if not policies.can_send_lineage_for(principal, job.sent_by_id):
        raise PermissionDenied(f"Job {event.job[0]}/{event.job[1]} is sent by another account; only that account "
                               "sends events for it.")
    return job


def _dataset_nodes(datasets, fold: FoldState) -> dict:
    missing = [dataset for dataset in datasets if dataset.pk not in fold.dataset_nodes]
    if missing:
        fold.dataset_nodes.update(dataset_nodes_ensure(missing))
    return fold.dataset_nodes


def _column_nodes(dataset: Dataset, names: set[str], fold: FoldState) -> dict:
    known = fold.column_nodes.get(dataset.pk, {})
    if any(name.lower() not in known for name in names):
        known = {**known, **column_nodes_ensure(dataset, names)}
        fold.column_nodes[dataset.pk] = known
    return known


@dataclass
class AppliedEvent:
    job_id: int | None
    run_id: int | None
    edges: list[EdgeSpec]
    touched: set[int]
    run: Run | None = None


def openlineage_apply(*, principal, event: ParsedEvent, fold: FoldState) -> AppliedEvent:
    """Write what one event says: its job and run, the datasets it names (discovering unknown
    ones), and return the dataset and column edges it gives (the fold writes every edge of a
    batch at once, then refreshes sensitivity once).

    The principal's right to send lineage is checked again (it may have been taken away since
    the event was accepted), and the registration checks it for each dataset it changes.
    Raises ``PermissionDenied`` or ``ValidationError``; the caller rolls the event back.
    """
    if not policies.can_emit_lineage(principal):
        raise PermissionDenied("The sender may no longer send lineage (it needs a registrar role).")
    touched: set[int] = set()
    job = _job_for(principal, event, fold) if event.job else None
    run = _run_record(principal, event, job, fold) if job else None
    # [facets] jobType and sql kept on the job, the run nested under its parent, untyped column
    # edges typed from the SQL (lineage.facets).
    if job:
        lineage_facets.job_facets_apply(job=job, job_type=event.job_type, sql=event.job_sql, event_time=event.event_time)
    if run:
        # Runs naming this one as their parent are adopted once per batch (ingestion._fold).
        lineage_facets.run_parent_link(run=run, parent=event.parent, adopt=False)
    lineage_facets.event_column_kinds_apply(event=event, job=job)

    new_ids: set[int] = set()  # datasets this event brings into the catalog
    inputs = [_dataset_for(principal, ref, fold, touched, new_ids) for ref in event.inputs]
    outputs = [_dataset_for(principal, ref, fold, touched, new_ids) for ref in event.outputs]
    # [facets] owners for the datasets this event discovered; any other owners proposed for review.
    lineage_facets.dataset_owners_apply(principal=principal, run=run, new_dataset_ids=new_ids,
                                        owners_by_dataset=lineage_facets.event_owners(
                                            event=event, inputs=inputs, outputs=outputs))
    named = {dataset.pk: dataset for dataset in [*inputs, *outputs]}
    wanted_columns: dict[int, set[str]] = {}
    sources: dict[tuple[str, str], Dataset] = {}
    for ref, dataset in zip(event.outputs, outputs):
        for field_name, field_inputs in ref.column_lineage.items():
            wanted_columns.setdefault(dataset.pk, set()).add(field_name)
            for item in field_inputs:
                key = (item.namespace, item.name)
                if key not in sources:
                    sources[key] = fold.datasets.get(key) or _dataset_for(
                        principal, DatasetRef(item.namespace, item.name, ref.path), fold, touched, new_ids
                    )
                named[sources[key].pk] = sources[key]
                wanted_columns.setdefault(sources[key].pk, set()).add(item.field)
    dataset_nodes = _dataset_nodes(named.values(), fold)
    column_nodes = {pk: _column_nodes(named[pk], names, fold) for pk, names in wanted_columns.items()}

    job_id = job.pk if job else None
    specs = []
    for source in inputs:
        for target in outputs:
            specs.append(EdgeSpec(dataset_nodes[source.pk].pk, dataset_nodes[target.pk].pk, EdgeLevel.DATASET, EdgeKind.JOB, job_id=job_id))
    for ref, target in zip(event.outputs, outputs):
        for field_name, field_inputs in ref.column_lineage.items():
            target_node = column_nodes[target.pk][field_name.lower()]
            for item in field_inputs:
                source = sources[(item.namespace, item.name)]
                specs.append(EdgeSpec(
                    column_nodes[source.pk][item.field.lower()].pk, target_node.pk, EdgeLevel.COLUMN, item.kind,
                    direct=item.direct, masking=item.masking, description=item.description, job_id=job_id,
                ))
                specs.append(EdgeSpec(dataset_nodes[source.pk].pk, dataset_nodes[target.pk].pk, EdgeLevel.DATASET, EdgeKind.JOB, job_id=job_id))
    return AppliedEvent(job_id=job_id, run_id=run.pk if run else None, edges=specs, touched=touched, run=run)


def fold_prefetch(events, fold: FoldState) -> None:
    """Read what a batch of events names in a few queries instead of a few per event: the stores
    of their namespaces, the datasets they name, those datasets' lineage nodes, their jobs and
    their runs (locked, as the events would lock them one by one). Only fills ``fold``'s caches:
    the events are applied as they would be without it."""
    refs = []
    for event in events:
        refs += event.inputs + event.outputs
        for ref in event.outputs:
            refs += [DatasetRef(item.namespace, item.name, ref.path) for items in ref.column_lineage.values()
                     for item in items]
    namespaces = {ref.namespace for ref in refs}
    if namespaces:
        stores = list(DataStore.objects.filter(Q(lineage_namespace__in=namespaces) | Q(name__in=namespaces)))
        by_namespace = {store.lineage_namespace: store for store in stores if store.lineage_namespace}
        by_name = {store.name: store for store in stores}
        for namespace in namespaces:
            store = by_namespace.get(namespace) or by_name.get(namespace)
            if store is not None:
                fold.stores.setdefault(namespace, store)
    names = {f"{fold.stores[ref.namespace].name}.{_registration_name(ref.name)}" for ref in refs
             if ref.namespace in fold.stores}
    if names:
        fold.dataset_rows.update(dict.fromkeys(names))
        fold.dataset_rows.update(
            (dataset.qualified_name, dataset)
            for dataset in Dataset.objects.filter(qualified_name__in=names).select_related("current_version"))
    datasets = {dataset.pk: dataset for dataset in fold.dataset_rows.values() if dataset is not None}
    if datasets:
        _nodes_prefetch(datasets, fold)
    jobs = {event.job for event in events if event.job}
    if jobs:
        fold.job_rows.update(dict.fromkeys(jobs))
        found = Job.objects.filter(namespace__in={namespace for namespace, _ in jobs}, name__in={name for _, name in jobs})
        fold.job_rows.update(((job.namespace, job.name), job) for job in found if (job.namespace, job.name) in jobs)
    runs = {event.run_id for event in events if event.job and event.run_id is not None}
    if runs:
        fold.runs.update(dict.fromkeys(runs))
        # In id order, as concurrent drains lock them, so two batches never wait on each other in a cycle.
        fold.runs.update((run.run_id, run) for run in Run.objects.select_for_update().filter(run_id__in=runs).order_by("pk"))


def _nodes_prefetch(datasets: dict, fold: FoldState) -> None:
    """The lineage nodes of the batch's datasets: dataset nodes, and column nodes where each is
    linked to the column of its name as ``column_nodes_ensure`` would leave it (a dataset whose
    nodes need relinking is left to it)."""
    nodes = Node.objects.filter(dataset_id__in=datasets, kind__in=[NodeKind.DATASET, NodeKind.COLUMN])
    columns = {}
    for dataset_id, name, pk in Column.objects.filter(dataset_id__in=datasets).values_list("dataset_id", "name", "pk"):
        columns.setdefault(dataset_id, {})[name.lower()] = pk
    by_dataset: dict[int, dict] = {}
    for node in nodes:
        if node.kind == NodeKind.DATASET:
            fold.dataset_nodes.setdefault(node.dataset_id, node)
        else:
            by_dataset.setdefault(node.dataset_id, {})[node.name.lower()] = node
    for dataset_id, named in by_dataset.items():
        own = columns.get(dataset_id, {})
        if all(node.column_id == own.get(key) for key, node in named.items()):
            fold.column_nodes.setdefault(dataset_id, named)
