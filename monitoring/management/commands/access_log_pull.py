"""Start, stop or run the pull of a store's warehouse audit log (docs/monitoring.md, "Pull").

    manage.py access_log_pull STORE --enable [--from-start] [--file PATH]   # MariaDB: the server_audit file
    manage.py access_log_pull STORE --disable
    manage.py access_log_pull STORE                                        # pull once now, print the counts
"""

import json

from django.core.management.base import BaseCommand, CommandError

from catalog.errors import ApplicationError
from catalog.models import DataStore
from monitoring.models import LogPosition
from monitoring.pull import access_log_pull, access_log_pull_enable


class Command(BaseCommand):
    help = "Start (--enable), stop (--disable) or run once the pull of a store's audit log."

    def add_arguments(self, parser):
        parser.add_argument("store", help="The store's name.")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--enable", action="store_true", help="Start pulling (from the log's end now).")
        action.add_argument("--disable", action="store_true", help="Stop pulling; the position is kept.")
        parser.add_argument("--from-start", action="store_true",
                            help="With --enable: from the oldest log PostgreSQL keeps (or the file's start).")
        parser.add_argument("--file", default="", help="With --enable, for MariaDB: the server_audit file's path.")

    def handle(self, *args, store, enable, disable, from_start, file, **options):
        found = DataStore.objects.filter(name__iexact=store).select_related("connection").first()
        if found is None:
            raise CommandError(f"No store is named '{store}'.")
        try:
            if enable:
                position = access_log_pull_enable(store=found, file=file, from_now=not from_start)
                self.stdout.write(f"Pulling {found.name}'s {position.get_log_format_display()} log from "
                                  f"{position.file or 'its start'} at byte {position.offset:,}.")
                return
            if disable:
                if not LogPosition.objects.filter(store=found).update(pull_enabled=False):
                    raise CommandError(f"{found.name}'s audit log is not pulled.")
                self.stdout.write(f"Stopped pulling {found.name}'s audit log (its position is kept).")
                return
            if not LogPosition.objects.filter(store=found, pull_enabled=True).exists():
                raise CommandError(f"{found.name}'s audit log is not pulled: start with --enable.")
            self.stdout.write(json.dumps(access_log_pull(store=found).as_dict()))
        except ApplicationError as error:
            raise CommandError(error.message) from None
