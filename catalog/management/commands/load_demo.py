from django.conf import settings
from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from catalog.demo import DEMO_PASSWORD, demo_counts, demo_load, demo_logins, demo_warehouse_load


class Command(BaseCommand):
    help = "Load the restaurant-review demo (stores, datasets, one user per company role). Idempotent."

    def handle(self, *args, **options):
        demo_load()
        demo_warehouse_load(settings.VAR_DIR)
        counts = demo_counts()  # after the warehouse sync, which adds a store and its datasets
        self.stdout.write(
            f"Demo loaded: {counts['stores']} store{pluralize(counts['stores'])}, "
            f"{counts['datasets']} dataset{pluralize(counts['datasets'])}."
        )
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        logins = demo_logins()
        width = max(len(username) for username, _, _ in logins)
        for username, role, hint in logins:
            self.stdout.write(f"  {username:<{width}}  {role}: {hint}")
