import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from access.policies import SYSTEM
from catalog.models import DataStore, SyncTrigger
from catalog.sync import sync_run_execute, sync_run_request


class Command(BaseCommand):
    help = "Sync a store's warehouse now, in this process (no worker needed); prints a JSON summary."
    requires_system_checks = []  # like a worker: the checks belong to deploys, not to each sync

    def add_arguments(self, parser):
        parser.add_argument("store", help="Store name")

    def handle(self, *args, store, **options):
        found = DataStore.objects.filter(name=store).first()
        if found is None:
            raise CommandError(f"No store named '{store}'.")
        try:
            run, created = sync_run_request(principal=SYSTEM, store=found, trigger=SyncTrigger.MANUAL, enqueue=False)
        except ValidationError as exc:
            raise CommandError("; ".join(m for messages in exc.message_dict.values() for m in messages)) from None
        if not created:
            raise CommandError(f"Sync run #{run.pk} of '{store}' is already {run.status}.")
        run = sync_run_execute(run.pk)
        summary = {
            "run": run.pk, "status": run.status, "message": run.message,
            "counts": {
                "new": run.new_count, "changed": run.changed_count, "deprecated": run.deprecated_count,
                "reactivated": run.reactivated_count, "unchanged": run.unchanged_count, "failed": run.failed_count,
                "suggestions": run.suggestion_count,
            },
            "objects": run.objects_total, "timings": run.timings, "seconds": run.duration_seconds,
        }
        self.stdout.write(json.dumps(summary))
        if run.status == "failed":
            raise CommandError(run.message)
