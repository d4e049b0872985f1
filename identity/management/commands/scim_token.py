from django.core.management.base import BaseCommand, CommandError

from catalog.errors import ApplicationError
from identity.scim_tokens import scim_token_create, scim_token_revoke


class Command(BaseCommand):
    help = "Create a SCIM provisioning client's bearer token and print it (shown only once), or --revoke it."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The provisioning client, e.g. okta.")
        parser.add_argument("--revoke", action="store_true", help="Revoke the live token of this name.")

    def handle(self, *args, name, revoke, **options):
        try:
            if revoke:
                scim_token_revoke(name=name)
                self.stderr.write(f"Revoked the SCIM token '{name}'.")
                return
            _, key = scim_token_create(name=name)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(f"Created the SCIM token '{name}'. It is shown only once:")
        self.stdout.write(key)
