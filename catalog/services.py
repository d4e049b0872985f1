"""Every write to the catalog goes through these functions (API, browser form and demo alike)."""

import re

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from access import policies
from catalog.diffs import schema_diff
from catalog.models import Column, Dataset, DatasetStatus, DatasetVersion, DataStore
from catalog.registration import ColumnSpec, Registration, registration_parse
from catalog.vocabulary import Sensitivity, parse_mode, parse_protection, parse_sensitivity


def _resolve_owners(usernames: list[str] | None):
    if usernames is None:
        return None
    users = list(get_user_model().objects.filter(username__in=usernames, is_active=True))
    missing = sorted(set(usernames) - {user.username for user in users})
    if missing:
        raise ValidationError({"owners": [f"Unknown user(s): {', '.join(missing)}."]})
    return users


# Platforms whose tables always live in a schema (an unqualified name is the search path's choice).
SCHEMA_PLATFORMS = ("postgresql", "redshift")

_SENSITIVITY_BY_LABEL = {label: value for value, label in Sensitivity.choices}

COLUMN_FIELDS = [
    "position", "description", "mode", "type", "originating_source_kind", "originating_source_name",
    "sensitivity", "protection",
]


def _sync_columns(dataset: Dataset, registration: Registration, *, new: bool = False) -> list[Column]:
    """Make the dataset's Column rows match the registration, in a constant number of queries;
    return them. ``new``: the dataset was created in this transaction (it has no columns yet).

    Columns keep their id when their name stays, so lineage can point at them.
    """
    existing = {} if new else {column.name: column for column in dataset.columns.all()}
    wanted = {spec.name for spec in registration.columns}
    removed_ids = [column.pk for name, column in existing.items() if name not in wanted]
    if removed_ids:
        columns_delete(removed_ids)
    to_create, to_update, current = [], [], []
    for position, spec in enumerate(registration.columns, start=1):
        column = existing.get(spec.name) or Column(dataset=dataset, name=spec.name)
        current.append(column)
        wanted_values = {
            "position": position,
            "description": spec.description,
            "mode": spec.mode,
            "type": spec.type,
            "originating_source_kind": spec.originating_source_kind,
            "originating_source_name": spec.originating_source_name,
            "sensitivity": spec.sensitivity,
            "protection": spec.protection,
        }
        if column.pk and all(getattr(column, key) == value for key, value in wanted_values.items()):
            continue  # unchanged: rewriting it would only cost time
        for key, value in wanted_values.items():
            setattr(column, key, value)
        (to_update if column.pk else to_create).append(column)
    if to_update:
        Column.objects.bulk_update(to_update, COLUMN_FIELDS)
    if to_create:
        Column.objects.bulk_create(to_create)
    return current


def columns_delete(column_ids) -> None:
    """Delete dropped columns: their suggestions go, their lineage nodes stay (unlinked)."""
    from catalog.models import ColumnSuggestion
    from lineage.models import Node  # a dropped column's lineage node outlives it

    Node.objects.filter(column_id__in=column_ids).update(column=None)
    ColumnSuggestion.objects.filter(column_id__in=column_ids).delete()
    Column.objects.filter(pk__in=column_ids).delete()


def dataset_register(*, principal, payload, remote_addr: str = "") -> tuple[Dataset, bool]:
    """Register a dataset, or a new version of it, from the registration JSON.

    Returns ``(dataset, created)`` where ``created`` says whether a new version was made
    (a new dataset or a changed schema). Sending the same schema again changes nothing
    but the dataset's own description, owners and tags, if they were given.

    Changes to what the access decision reads are guarded (``access.proposals``): a lowered
    sensitivity, a removed or changed protection, other owners and an added matrix tag are left
    out of what is written and proposed instead (``dataset.pending_proposal``); the rest of the
    version lands. Raising sensitivity, adding protection and removing a matrix tag apply at once.
    Every change of classification, owners and tags is audited.
    Raises ``ValidationError`` (per field) or ``PermissionDenied``; on either, nothing is written.
    """
    registration = registration_parse(payload)
    store = DataStore.objects.filter(name=registration.store).first()
    if store is None:
        raise ValidationError({"store": [f"Unknown store '{registration.store}'."]})
    if store.platform in SCHEMA_PLATFORMS and not registration.schema:
        # Else "users" and "public.users" would be two datasets, with two classifications, of one table.
        raise ValidationError({"name": [
            f"Tables in {store.get_platform_display()} live in a schema: name it as <schema>.<table>, "
            f"e.g. public.{registration.name}."]})
    owners = _resolve_owners(registration.owners)
    qualified_name = Dataset.build_qualified_name(store.name, registration.schema, registration.name)
    try:
        with transaction.atomic():
            return _dataset_register_locked(principal, registration, store, owners, qualified_name, remote_addr=remote_addr)
    except IntegrityError:
        # Another registration of the same new dataset won the race: do it again as an update.
        with transaction.atomic():
            return _dataset_register_locked(principal, registration, store, owners, qualified_name, remote_addr=remote_addr)


def _dataset_register_locked(principal, registration, store, owners, qualified_name, keep_status=False,
                             remote_addr="", approved_changes=False, lowers=False):
    from access import proposals  # access builds on the catalog
    from access.audit import audit_record
    from access.decisions import dataset_tier

    dataset = (
        Dataset.objects.select_for_update(of=("self",))
        .select_related("store", "current_version")
        .filter(qualified_name=qualified_name)
        .first()
    )
    if dataset is None:
        if not policies.can_register_datasets(principal):
            raise PermissionDenied("Registering datasets needs a registrar role (e.g. data engineer).")
        dataset = Dataset(store=store, schema=registration.schema, name=registration.name)
    elif not approved_changes and not policies.can_edit_dataset(principal, dataset):
        # (``approved_changes``: the caller checked who may make them: a suggestion's decider, a proposal's approvers.)
        raise PermissionDenied("Only the dataset's owners or a registrar may change it.")

    previous = dataset.current_version
    # An existing dataset (registered, or discovered by lineage and counted as the default tier)
    # changes what the decision reads only through proposals; a new one is declared as it is sent.
    guarded = dataset.pk is not None and not approved_changes
    was_discovered = dataset.pk is not None and not dataset.classified
    decisions_tier = dataset_tier(dataset) if was_discovered else dataset.sensitivity
    held, tightened, audited, floor = {}, [], {}, None
    if guarded:
        registration, held_columns, tightened, floor = proposals.registration_hold_back(
            dataset=dataset, registration=registration)
        if held_columns:
            held["columns"] = held_columns
        if floor is not None:
            held["dataset"] = floor[1]
        if owners is None and previous is None and getattr(principal, "pk", None) and not principal.is_service_account:
            owners = [principal]  # a discovered dataset's registrant would become its owner: proposed
        if owners is not None:
            change = proposals.owners_change(principal=principal, dataset=dataset, owners=owners)
            if change is not None:
                held["owners"] = change
            owners = None
    if registration.description is not None:
        dataset.description = registration.description
    if registration.tags is not None:
        tags = registration.tags
        if guarded:
            tags, held_tags, removed = proposals.tags_split(dataset=dataset, tags=tags)
            if held_tags:
                held["tags"] = held_tags
            if set(tags) != set(dataset.tags or []):
                audited["tags"] = _change_of(dataset.tags or [], tags)
        dataset.tags = tags
    dataset.pending_proposal = None

    def finish(created: bool):
        if tightened:
            audit_record(actor=principal, action="dataset.classification_changed", obj=dataset, dataset=dataset,
                         remote_addr=remote_addr, details={"columns": tightened, "version": dataset.current_version.number})
        if audited.get("tags"):
            audit_record(actor=principal, action="dataset.tags_changed", obj=dataset, dataset=dataset,
                         remote_addr=remote_addr, details=audited["tags"])
        if created and was_discovered:  # its first classification: what the decision read until now was a default
            audit_record(actor=principal, action="dataset.classified", obj=dataset, dataset=dataset,
                         remote_addr=remote_addr, details={
                             "sensitivity": Sensitivity(dataset.sensitivity).label, "discovered": was_discovered,
                             "owners": sorted(user.username for user in dataset.owners.all()),
                             "tags": dataset.tags, "version": dataset.current_version.number,
                             "columns": {spec.name: spec.snapshot()["sensitivity"] for spec in registration.columns
                                         if spec.sensitivity >= Sensitivity.SENSITIVE},
                         })
        if held:
            reason = f"Registered by {getattr(principal, 'username', '') or 'a pipeline'}" + (
                f" as {registration.registered_by}" if registration.registered_by else "")
            if was_discovered:
                reason += (". First classification of a dataset nobody had classified: it counted as "
                           f"{Sensitivity(decisions_tier).label} until now.")
            dataset.pending_proposal = proposals.proposal_create(
                principal=principal, dataset=dataset, changes=held, remote_addr=remote_addr, reason=reason,
            )
        return dataset, created

    if previous is not None and previous.fingerprint == registration.fingerprint:
        dataset.save(update_fields=["description", "tags", "updated_at"])
        if owners is not None:
            dataset.owners.set(owners)
        return finish(False)

    dataset.sensitivity = max((spec.sensitivity for spec in registration.columns), default=Sensitivity.PUBLIC)
    if floor is not None:  # columns dropped: the dataset stays at its tier until a reviewer lowers it
        dataset.sensitivity = max(dataset.sensitivity, floor[0])
    elif previous is not None and not lowers:  # a raise (a suggestion) never lowers a tier held up
        dataset.sensitivity = max(dataset.sensitivity, decisions_tier)
    elif previous is not None:  # an approved lowering of columns: a tier held up for dropped columns stays
        reached = max((_SENSITIVITY_BY_LABEL[column["sensitivity"]] for column in previous.columns),
                      default=Sensitivity.PUBLIC)
        if decisions_tier > reached:
            dataset.sensitivity = max(dataset.sensitivity, decisions_tier)
    dataset.classified = True  # someone declared every column's sensitivity
    dataset.qualified_name = qualified_name
    if not keep_status:  # a pipeline registering a new schema says the dataset is alive
        dataset.status, dataset.deprecated_by_sync = DatasetStatus.ACTIVE, False
    new = dataset.pk is None
    if new:
        # The lookup above (under lock) found no dataset of this name, and a racing registration
        # of it fails on the unique constraint and is retried as an update; the store was just
        # read. So neither the uniqueness nor the store's existence needs a query of its own.
        dataset.full_clean(exclude=["current_version", "store"], validate_unique=False)
    else:
        dataset.full_clean(exclude=["current_version"])
    dataset.save()
    version = DatasetVersion(
        dataset=dataset,
        number=previous.number + 1 if previous else 1,
        declared_version=registration.declared_version,
        columns=registration.snapshots,
        fingerprint=registration.fingerprint,
        diff=schema_diff(previous.columns if previous else [], registration.snapshots),
        registered_by=registration.registered_by,
        registered_by_user=principal if getattr(principal, "pk", None) else None,
        registration_time=registration.registration_time,
    )
    version.is_breaking = bool(previous) and version.diff["breaking"]
    version.save()
    columns = _sync_columns(dataset, registration, new=new)
    dataset.current_version = version
    dataset.save(update_fields=["current_version", "updated_at"])
    from lineage.services import lineage_dataset_registered  # lineage builds on the catalog

    lineage_dataset_registered(dataset=dataset, columns=columns, new=new)
    if previous is not None:
        from access.grants import grants_end_outgrown_after_commit  # access builds on the catalog

        grants_end_outgrown_after_commit([dataset.pk])  # grants approved for less sensitive data end
    if owners is not None:
        dataset.owners.set(owners)
    elif not guarded and previous is None and getattr(principal, "pk", None) and not principal.is_service_account:
        dataset.owners.add(principal)
    return finish(True)


def _change_of(before, after) -> dict:
    return {"from": before, "to": after}


def dataset_update_status(*, principal, dataset: Dataset, status: str) -> Dataset:
    """Mark a dataset active or deprecated."""
    if not policies.can_edit_dataset(principal, dataset):
        raise PermissionDenied("Only the dataset's owners or a registrar may change it.")
    if status not in DatasetStatus.values:
        raise ValidationError({"status": [f"Unknown status '{status}'. Use one of: {', '.join(DatasetStatus.values)}."]})
    dataset.status = status
    dataset.deprecated_by_sync = False  # a person's decision: a sync no longer undoes it
    dataset.save(update_fields=["status", "deprecated_by_sync", "updated_at"])
    return dataset


def dataset_discover(*, store: DataStore, name: str, description: str = "") -> Dataset:
    """A dataset that lineage names before anyone registered it: no version yet, flagged for review,
    and unclassified (nobody declared its sensitivity): decided as the operator's default tier, never
    Public, until a version is registered.

    Callers check their own permission (the lineage endpoint does).
    """
    from catalog.vocabulary import unclassified_tier

    schema, _, short = name.rpartition(".")
    dataset = Dataset(
        store=store, schema=schema, name=short, description=description, needs_review=True,
        classified=False, sensitivity=unclassified_tier(),
    )
    dataset.full_clean(exclude=["current_version", "qualified_name"])
    dataset.save()
    return dataset


def store_discover(*, namespace: str, kind: str, platform: str) -> DataStore:
    """A store for an OpenLineage namespace nobody has mapped yet, flagged for review."""
    base = re.sub(r"[^a-z0-9_-]+", "-", namespace.lower()).strip("-_")[:56] or "discovered"
    name, suffix = base, 1
    while DataStore.objects.filter(name=name).exists():
        suffix += 1
        name = f"{base}-{suffix}"
    store = DataStore(
        name=name, kind=kind, platform=platform, lineage_namespace=namespace, needs_review=True,
        description=f"Discovered from OpenLineage namespace {namespace}.",
    )
    store.full_clean()
    store.save()
    return store


STORE_FIELDS = (
    "name", "kind", "platform", "description", "environment", "residency", "line_of_business", "customer",
    "lineage_namespace",
)


def store_save(*, principal, store: DataStore | None = None, remote_addr: str = "", **fields) -> DataStore:
    """Create a store, or change an existing one, after checking the principal may manage stores.

    A store's environment, residency and kind place its data, and the access decision reads the
    environment: changing them on an existing store is proposed (``store.pending_proposal``), for a
    security engineer to approve; the other fields apply at once. Both are audited.
    """
    from access import proposals  # access builds on the catalog
    from access.audit import audit_record

    if not policies.can_manage_stores(principal):
        raise PermissionDenied("Managing stores needs the platform engineer role or an admin.")
    unknown = set(fields) - set(STORE_FIELDS)
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    creating = store is None or store.pk is None
    store = store or DataStore()
    with transaction.atomic():
        if not creating:
            store = DataStore.objects.select_for_update().get(pk=store.pk)
        if not creating and "name" in fields and fields["name"] != store.name and store.datasets.exists():
            raise ValidationError({"name": ["A store with datasets cannot be renamed: qualified names depend on it."]})
        proposed = {}
        if not creating:
            fields, proposed = proposals.store_change_split(store=store, fields=fields)
        before = {name: getattr(store, name) for name in STORE_FIELDS}
        for name, value in fields.items():
            setattr(store, name, value)
        store.full_clean()
        store.save()
        after = {name: getattr(store, name) for name in STORE_FIELDS}
        changed = {name: {"from": before[name], "to": after[name]} for name in STORE_FIELDS if before[name] != after[name]}
        if creating:
            audit_record(actor=principal, action="store.created", obj=store, remote_addr=remote_addr,
                         details={"store": store.name, **{name: after[name] for name in STORE_FIELDS}})
        elif changed:
            audit_record(actor=principal, action="store.changed", obj=store, remote_addr=remote_addr,
                         details={"store": store.name, "changes": changed})
        store.pending_proposal = proposals.proposal_create(
            principal=principal, store=store, changes=proposed, remote_addr=remote_addr,
        ) if proposed else None
    return store


def suggestion_decide(*, principal, suggestion, accept: bool):
    """Accept or reject a classification suggestion.

    Accepting raises the column's sensitivity to the suggested tier through the registration
    path, so it makes a new version and refreshes lineage like any schema change. A decided
    suggestion cannot be decided again. Returns the suggestion.
    """
    from catalog.models import ColumnSuggestion, SuggestionStatus

    with transaction.atomic():
        # The dataset first, as every schema writer (registration, sync) locks it: the same
        # order everywhere means no deadlock, and the current version read under it is current.
        dataset_id = ColumnSuggestion.objects.filter(pk=suggestion.pk).values_list("dataset_id", flat=True).first()
        dataset = (
            Dataset.objects.select_for_update(of=("self",)).select_related("store", "current_version")
            .filter(pk=dataset_id).first()
        )
        suggestion = ColumnSuggestion.objects.select_for_update(of=("self",)).select_related("column").filter(
            pk=suggestion.pk
        ).first()
        if dataset is None or suggestion is None:
            raise ValidationError({"suggestion": ["This suggestion no longer exists (its column was dropped)."]})
        suggestion.dataset = dataset
        if not policies.can_edit_dataset(principal, dataset):
            raise PermissionDenied("Only the dataset's owners or a registrar may classify its columns.")
        if suggestion.status != SuggestionStatus.PENDING:
            raise ValidationError({"status": [f"This suggestion was already {suggestion.status}."]})
        suggestion.status = SuggestionStatus.ACCEPTED if accept else SuggestionStatus.REJECTED
        suggestion.decided_by = principal if getattr(principal, "pk", None) else None
        suggestion.decided_at = timezone.now()
        suggestion.save(update_fields=["status", "decided_by", "decided_at"])
        if accept and suggestion.sensitivity > suggestion.column.sensitivity:
            _column_sensitivity_raise(principal, dataset, suggestion.column, suggestion.sensitivity)
    return suggestion


def _column_sensitivity_raise(principal, dataset: Dataset, column: Column, sensitivity: int) -> None:
    dataset_columns_reclassify(principal=principal, dataset=dataset,
                               changes={column.name: {"sensitivity": Sensitivity(sensitivity).label}},
                               registered_by=getattr(principal, "username", "") or "steward")


def dataset_columns_reclassify(*, principal, dataset: Dataset, changes: dict[str, dict], registered_by: str,
                               remote_addr: str = "", proposal=None) -> Dataset:
    """A new version of a locked dataset with some columns' sensitivity or protection changed
    (``{"email": {"sensitivity": "Public", "protection": "None"}}``), the rest as it is.

    Raising is the safe direction and is what classification suggestions do; lowering comes here
    only from an approved proposal (``proposal``), so nothing is held back again. Audited.
    """
    from access.audit import audit_record

    current = dataset.current_version
    specs, audited = [], []
    for snapshot in current.columns:
        kind, _, source = snapshot["originatingSource"].partition(":")
        change = changes.get(snapshot["name"], {})
        sensitivity, protection = change.get("sensitivity", snapshot["sensitivity"]), change.get("protection", snapshot["protection"])
        moved = {key: {"from": snapshot[key], "to": value} for key, value in
                 (("sensitivity", sensitivity), ("protection", protection)) if value != snapshot[key]}
        if moved:
            audited.append({"name": snapshot["name"], **moved})
        specs.append(ColumnSpec(
            name=snapshot["name"], type=snapshot["type"], description=snapshot["description"],
            mode=parse_mode(snapshot["mode"]), protection=parse_protection(protection),
            sensitivity=parse_sensitivity(sensitivity),
            originating_source_kind=kind, originating_source_name=source,
        ))
    registration = Registration(
        store=dataset.store.name, schema=dataset.schema, name=dataset.name, columns=specs,
        registered_by=registered_by, registration_time=timezone.now(), declared_version=current.declared_version,
        snapshots=[spec.snapshot() for spec in specs],
    )
    # A classification is not a sign of life: a deprecated dataset stays deprecated.
    dataset, _ = _dataset_register_locked(principal, registration, dataset.store, None, dataset.qualified_name,
                                          keep_status=True, remote_addr=remote_addr, approved_changes=True,
                                          lowers=proposal is not None)
    if audited:
        details = {"columns": audited, "version": dataset.current_version.number}
        if proposal is not None:
            details["proposal"] = proposal.pk
        audit_record(actor=principal, action="dataset.classification_changed", obj=dataset, dataset=dataset,
                     remote_addr=remote_addr, details=details)
    return dataset
