"""Telling people about what a warehouse sync found (Django's mail backend; console in development)."""

import logging

from django.conf import settings
from django.core.mail import send_mass_mail
from django.template.loader import render_to_string
from django.urls import reverse

from access import policies
from catalog.models import Dataset, SyncRun
from catalog.selectors import dataset_visible

logger = logging.getLogger(__name__)


def breaking_changes_notify(*, run_id: int, dataset_ids: list[int]) -> int:
    """Mail the owners of each dataset with a breaking change, and the owners of the datasets
    downstream of it, one message per dataset and recipient. Returns how many were sent.

    Called after the sync's batch committed; a mail failure is logged, never undoes the sync.
    """
    from lineage.selectors import lineage_breaking_impact  # lineage builds on the catalog

    run = SyncRun.objects.select_related("store").get(pk=run_id)
    changes = []  # (dataset, version, impact, recipients)
    for dataset in Dataset.objects.filter(pk__in=dataset_ids).select_related("current_version", "store").prefetch_related("owners"):
        version = dataset.current_version
        impact = lineage_breaking_impact(user=policies.SYSTEM, dataset=dataset, diff=version.diff)
        recipients = {owner for owner in dataset.owners.all()}
        for entry in impact["datasets"]:
            recipients |= set(entry["owners"])
        changes.append((dataset, version, impact, recipients))
    # Each recipient reads only what they may see: one query per recipient for the whole run.
    mentioned = {pk for dataset, _, impact, _ in changes for pk in (dataset.pk, *(e["dataset"].pk for e in impact["datasets"]))}
    readers = {user for *_, recipients in changes for user in recipients
               if user.email and user.is_active and policies.can_read_metadata(user)}
    visible_to = {
        user.pk: set(dataset_visible(user=user).filter(pk__in=mentioned).values_list("pk", flat=True)) for user in readers
    }
    messages = []
    for dataset, version, impact, recipients in changes:
        for user in sorted(recipients & readers, key=lambda u: u.username):
            # The changed dataset is named to those who may see it; the downstream list keeps
            # their datasets and counts the rest.
            visible = visible_to[user.pk]
            affected = [entry for entry in impact["datasets"] if entry["dataset"].pk in visible]
            body = render_to_string("emails/breaking_change.txt", {
                "run": run, "dataset": dataset, "version": version, "sees_dataset": dataset.pk in visible,
                "affected": affected, "hidden": len(impact["datasets"]) - len(affected),
                "partial": impact["partial"], "base_url": settings.CATALOG_BASE_URL,
                "diff_path": reverse("catalog:dataset-diff", args=[dataset.pk]),
                "run_path": reverse("catalog:sync-run-detail", args=[run.pk]),
            })
            named = dataset.qualified_name if dataset.pk in visible else "a dataset upstream of yours"
            messages.append((f"Breaking change in {named}", body, settings.DEFAULT_FROM_EMAIL, [user.email]))
    if not messages:
        return 0
    try:
        return send_mass_mail(messages, fail_silently=False)
    except Exception:
        logger.exception("Could not send breaking-change mail for sync run %s", run_id)
        return 0
