import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from access.policies import SYSTEM
from catalog.connections import connection_save
from catalog.models import DataStore, Platform, StoreKind
from catalog.services import store_save


class Command(BaseCommand):
    help = (
        "Create or change a store's warehouse connection (creating the store if missing). "
        "The password is read from a prompt with --ask-password, never from the command line history."
    )

    def add_arguments(self, parser):
        parser.add_argument("store")
        parser.add_argument("--platform", choices=Platform.values)
        parser.add_argument("--kind", choices=StoreKind.values, default=StoreKind.ANALYTICAL)
        parser.add_argument("--host", default="")
        parser.add_argument("--port", type=int)
        parser.add_argument("--database", default="")
        parser.add_argument("--username", default="")
        parser.add_argument("--ask-password", action="store_true", help="Prompt for the password.")
        parser.add_argument("--include", action="append", default=[], help="Schema pattern to include (repeatable).")
        parser.add_argument("--exclude", action="append", default=[], help="Schema pattern to leave out (repeatable).")
        parser.add_argument("--sampling", action="store_true", help="Sample values to suggest classifications.")
        parser.add_argument("--schedule", default="", help="Cron expression, e.g. '0 2 * * *'.")

    def handle(self, *args, store, **options):
        try:
            found = DataStore.objects.filter(name=store).first()
            if found is None:
                if not options["platform"]:
                    raise CommandError("The store does not exist yet: give --platform to create it.")
                found = store_save(principal=SYSTEM, name=store, kind=options["kind"], platform=options["platform"])
            elif options["platform"] and options["platform"] != found.platform:
                found = store_save(principal=SYSTEM, store=found, platform=options["platform"])
            password = getpass.getpass("Password: ") if options["ask_password"] else None
            connection_save(
                principal=SYSTEM, store=found, password=password, host=options["host"], port=options["port"],
                database=options["database"], username=options["username"], include_schemas=options["include"],
                exclude_schemas=options["exclude"], sampling_enabled=options["sampling"], schedule=options["schedule"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(f"Connection of store '{store}' saved.")
