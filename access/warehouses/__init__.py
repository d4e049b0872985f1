"""Enforcement in the stores themselves, one module per store kind behind one interface.

Each module ``access/warehouses/<kind>.py`` offers ``dataset_plan(dataset, **options) -> Plan`` (what
it would do for one dataset: protected view or masking policies, grants table, standing privileges)
and ``store_plan(store) -> Plan`` (the same for every dataset of the store). What a column looks like
to a reader without raw access comes from ``access.masking`` alone. Kinds that can run here
(PostgreSQL, MariaDB/MySQL) also apply their plans and grants; Snowflake and BigQuery plans are
produced and shown, and applied only where their client library and credentials are present.
"""

import importlib

from catalog.models import Platform

# store.platform -> module under access/warehouses/
KINDS = {
    Platform.POSTGRESQL: "postgresql",
    Platform.MYSQL: "mariadb",
    Platform.SNOWFLAKE: "snowflake",
    Platform.BIGQUERY: "bigquery",
}


def kind_module(platform: str):
    """The module enforcing stores of ``platform``, or None (a platform without enforcement, or one
    whose module is not installed in this build)."""
    name = KINDS.get(platform)
    if name is None:
        return None
    try:
        return importlib.import_module(f"access.warehouses.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"access.warehouses.{name}":
            return None
        raise


def dataset_plan(dataset):
    """What enforcement would do for ``dataset`` in its store (a ``masking.Plan``), or None."""
    module = kind_module(dataset.store.platform)
    if module is None or not hasattr(module, "dataset_plan"):
        return None
    return module.dataset_plan(dataset)


def store_plan(store):
    """What enforcement would do for every dataset of ``store``, or None."""
    module = kind_module(store.platform)
    if module is None or not hasattr(module, "store_plan"):
        return None
    return module.store_plan(store)


def views_regenerate(store, dataset_ids) -> dict:
    """After a sync changed these datasets' schemas: make their protected views again in the same
    run, in whatever kind of store enforces them. Never raises; returns ``{qualified name: why}`` of
    the views that could not be made (the reconciler reports and retries them)."""
    module = kind_module(store.platform)
    if module is None or not hasattr(module, "views_regenerate") or not dataset_ids:
        return {}
    return module.views_regenerate(store, dataset_ids)


def standing_readers(dataset) -> list[str]:
    """Warehouse roles (user names) of active people whose standing permissions in the role matrix
    read ``dataset`` (one query; the same rule as ``decisions.standing_level``)."""
    from django.db.models import Q

    from access import decisions
    from access.models import AccessLevel, User, warehouse_role_reserved

    cells = Q(groups__company_role__permissions__environment=dataset.store.environment,
              groups__company_role__permissions__sensitivity=decisions.dataset_tier(dataset),
              groups__company_role__permissions__standing__gte=AccessLevel.READ)
    if not decisions.is_aggregated(dataset):
        cells &= Q(groups__company_role__permissions__aggregated_only=False)
    roles = (User.objects.filter(cells, is_active=True).exclude(warehouse_role="")
             .values_list("warehouse_role", flat=True).distinct().order_by("warehouse_role"))
    return [role for role in roles if not warehouse_role_reserved(role)]


def enforcement_plan_get(*, user, dataset) -> dict:
    """The dataset's enforcement plan as shown on its page and by the API, for those who manage its
    enforcement (``PermissionDenied`` otherwise; the caller checked that the user sees the dataset).
    Secret statements are redacted; a platform without enforcement has ``enforced: False``."""
    from django.core.exceptions import PermissionDenied

    from access import policies
    from access.enforcement import store_is_managed

    if not policies.can_manage_enforcement(user, dataset):
        raise PermissionDenied("Only security engineers, admins and the dataset's owners see its enforcement plan.")
    plan = dataset_plan(dataset)
    shown = plan.as_dict() if plan is not None else {"platform": dataset.store.platform, "statements": [], "notes": []}
    return {
        "dataset": dataset.pk,
        "qualifiedName": dataset.qualified_name,
        "enforced": plan is not None,
        "appliedHere": plan is not None and store_is_managed(dataset.store),
        **shown,
    }
