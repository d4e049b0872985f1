from django.core.management.base import BaseCommand

from django.conf import settings

from catalog.demo import DEMO_PASSWORD, DEMO_USERS, demo_load, demo_warehouse_load


class Command(BaseCommand):
    help = "Load the restaurant-review demo (stores, datasets, one user per company role). Idempotent."

    def handle(self, *args, **options):
        counts = demo_load()
        demo_warehouse_load(settings.VAR_DIR)
        self.stdout.write(f"Demo loaded: {counts['stores']} stores, {counts['datasets']} datasets.")
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        self.stdout.write(f"  {'admin':<8} administrator")
        for username, _, role in DEMO_USERS:
            self.stdout.write(f"  {username:<8} {role.replace('_', ' ')}")
