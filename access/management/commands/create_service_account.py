from django.core.management.base import BaseCommand, CommandError

from access.services import role_ensure_defaults, service_account_create
from catalog.errors import ApplicationError


class Command(BaseCommand):
    help = "Create a service account with a company role and print its API token (shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--role", required=True, help="Role slug, e.g. data_engineer.")

    def handle(self, *args, name, role, **options):
        role_ensure_defaults()
        try:
            _, key = service_account_create(name=name, role_slug=role)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(f"Created service account '{name}' with role '{role}'. The key is shown only once:")
        self.stdout.write(key)
