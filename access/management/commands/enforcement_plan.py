"""Preview (dry run) or apply the enforcement of a dataset, a store or a grant.

    manage.py enforcement_plan --dataset 12            # the statements, keys redacted; nothing runs
    manage.py enforcement_plan --store shop            # every dataset of the store
    manage.py enforcement_plan --grant 40              # what applying the grant would run
    manage.py enforcement_plan --dataset 12 --apply    # MariaDB/MySQL: make the view now (audited)
"""

from django.core.management.base import BaseCommand, CommandError

from access.enforcement import EnforcementError
from access.models import Grant
from access.warehouses import dataset_plan, kind_module, store_plan
from catalog.models import Dataset, DataStore, Platform


class Command(BaseCommand):
    help = "Show the statements enforcement would run for a dataset, a store or a grant (a dry run), or apply a dataset's."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--dataset", type=int, help="Dataset id")
        target.add_argument("--store", help="Store name")
        target.add_argument("--grant", type=int, help="Grant id")
        parser.add_argument("--apply", action="store_true", help="Apply a dataset's plan (MariaDB/MySQL stores).")

    def handle(self, *args, dataset=None, store=None, grant=None, apply=False, **options):
        if dataset is not None:
            found = Dataset.objects.select_related("store").filter(pk=dataset).first()
            if found is None:
                raise CommandError(f"No dataset {dataset}.")
            if apply:
                return self._apply(found)
            plan = dataset_plan(found)
        elif store is not None:
            found = DataStore.objects.filter(name=store).first()
            if found is None:
                raise CommandError(f"No store named {store}.")
            plan = store_plan(found)
        else:
            found = Grant.objects.select_related("dataset__store", "user").filter(pk=grant).first()
            if found is None:
                raise CommandError(f"No grant {grant}.")
            module = kind_module(found.dataset.store.platform)
            if module is None or not hasattr(module, "grant_plan"):
                raise CommandError(f"Grants on {found.dataset.store.platform} stores have no plan here.")
            plan = module.grant_plan(found, found.user.warehouse_role or "<no warehouse role>")
        if apply:
            raise CommandError("--apply applies a dataset's plan only (--dataset).")
        if plan is None:
            raise CommandError("Stores of this platform have no enforcement.")
        for number, statement in enumerate(plan.statements, start=1):
            self.stdout.write(f"-- {number}. {statement.purpose} [{statement.dialect}]")
            self.stdout.write(statement.shown() + ("" if statement.dialect == "json" else ";") + "\n")
        for note in plan.notes:
            self.stdout.write(f"-- note: {note}")

    def _apply(self, dataset):
        if dataset.store.platform != Platform.MYSQL:
            raise CommandError("--apply runs here for MariaDB/MySQL stores only; the others are applied by their "
                               "own enforcement (PostgreSQL) or by hand (Snowflake, BigQuery).")
        from access.warehouses import mariadb

        try:
            plan = mariadb.dataset_apply(dataset)
        except EnforcementError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Applied {len(plan.statements)} statements to {dataset.store.name} (audited).")
