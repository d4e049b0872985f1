"""Rebuild the lineage that registrations imply: column nodes, edges from originating
sources, placeholders, and effective sensitivity (of columns, and of datasets). Safe to run again; OpenLineage edges are
kept. Useful after an upgrade that added lineage to a catalog with datasets in it, and after
changing ``CATALOG_UNCLASSIFIED_TIER``."""

from django.core.management.base import BaseCommand
from django.db import transaction

from catalog.models import Dataset
from lineage.models import Node, NodeKind
from lineage.sensitivity import dataset_nodes_effective_fill, sensitivity_refresh
from lineage.services import lineage_dataset_registered


class Command(BaseCommand):
    help = "Rebuild edges from originating sources and effective sensitivity for every registered dataset."

    def handle(self, *args, **options):
        # Datasets nobody has classified first: their columns count as CATALOG_UNCLASSIFIED_TIER,
        # which may have changed since their values were stored (everything downstream follows).
        unclassified = list(
            Node.objects.filter(kind=NodeKind.COLUMN, dataset__classified=False).order_by("pk").values_list("pk", flat=True)
        )
        for start in range(0, len(unclassified), 1000):
            with transaction.atomic():
                sensitivity_refresh(node_ids=unclassified[start:start + 1000])
        datasets = Dataset.objects.filter(current_version__isnull=False).select_related("store").order_by("pk")
        total = datasets.count()
        for done, dataset in enumerate(datasets.iterator(chunk_size=500), start=1):
            with transaction.atomic():
                lineage_dataset_registered(dataset=dataset)
            if done % 500 == 0 or done == total:
                self.stdout.write(f"{done}/{total} datasets")
        # Every dataset node, also of datasets no version registered (discovered by lineage).
        dataset_nodes_effective_fill()
        self.stdout.write(self.style.SUCCESS(f"Lineage rebuilt for {total} datasets."))
