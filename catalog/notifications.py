"""Telling people about what a warehouse sync found (Django's mail backend; console in development)."""

import logging

from django.conf import settings
from django.core.mail import send_mass_mail
from django.template.loader import render_to_string
from django.urls import reverse

from access import policies
from catalog.models import Dataset, SyncRun

logger = logging.getLogger(__name__)


def breaking_changes_notify(*, run_id: int, dataset_ids: list[int]) -> int:
    """Mail the owners of each dataset with a breaking change, and the owners of the datasets
    downstream of it, one message per dataset and recipient. Returns how many were sent.

    Called after the sync's batch committed; a mail failure is logged, never undoes the sync.
    """
    from lineage.selectors import lineage_breaking_impact  # lineage builds on the catalog

    run = SyncRun.objects.select_related("store").get(pk=run_id)
    messages = []
    for dataset in Dataset.objects.filter(pk__in=dataset_ids).select_related("current_version", "store").prefetch_related("owners"):
        version = dataset.current_version
        impact = lineage_breaking_impact(user=policies.SYSTEM, dataset=dataset, diff=version.diff)
        recipients = {owner for owner in dataset.owners.all()}
        for entry in impact["datasets"]:
            recipients |= set(entry["owners"])
        addresses = sorted({u.email for u in recipients if u.email and u.is_active and policies.can_read_metadata(u)})
        if not addresses:
            continue
        body = render_to_string("emails/breaking_change.txt", {
            "run": run, "dataset": dataset, "version": version, "affected": impact["datasets"],
            "partial": impact["partial"], "base_url": settings.CATALOG_BASE_URL,
            "diff_path": reverse("catalog:dataset-diff", args=[dataset.pk]),
            "run_path": reverse("catalog:sync-run-detail", args=[run.pk]),
        })
        subject = f"Breaking change in {dataset.qualified_name}"
        messages += [(subject, body, settings.DEFAULT_FROM_EMAIL, [address]) for address in addresses]
    if not messages:
        return 0
    try:
        return send_mass_mail(messages, fail_silently=False)
    except Exception:
        logger.exception("Could not send breaking-change mail for sync run %s", run_id)
        return 0
