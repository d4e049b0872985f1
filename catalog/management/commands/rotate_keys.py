from collections import Counter

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from catalog.models import Secret
from catalog.secrets import SecretUnavailable, master_key_generate, master_keys_parse, secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-wrap every connection secret's data key (passwords and sealed driver options alike) under "
        "the active (first) master key of "
        "CATALOG_MASTER_KEYS. Runs while the catalog and workers keep running: old keys stay "
        "listed until this has finished. --generate prints a new key entry; --status counts "
        "secrets per key."
    )

    def add_arguments(self, parser):
        parser.add_argument("--generate", nargs="?", const="", metavar="KEY_ID", help="Print a new master key entry.")
        parser.add_argument("--status", action="store_true", help="Count secrets per master key; change nothing.")
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, generate, status, batch_size, **options):
        if generate is not None:
            try:
                self.stdout.write(master_key_generate(generate or None))
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            return
        from django.conf import settings

        try:
            keys = master_keys_parse(settings.CATALOG_MASTER_KEYS)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if not keys:
            raise CommandError("CATALOG_MASTER_KEYS is empty.")
        active = keys[0][0]
        if status:
            counts = Counter(Secret.objects.values_list("key_id", flat=True))
            listed = {key_id for key_id, _ in keys}
            for key_id, count in sorted(counts.items()):
                note = " (active)" if key_id == active else "" if key_id in listed else " (NOT CONFIGURED: cannot be opened)"
                self.stdout.write(f"{key_id}: {count} secret(s){note}")
            if not counts:
                self.stdout.write("No secrets stored.")
            return
        try:
            rotated = secrets_rotate(batch_size=batch_size)
        except SecretUnavailable as exc:
            raise CommandError(str(exc)) from None
        remaining = Secret.objects.exclude(key_id=active).count()
        self.stdout.write(f"Re-wrapped {rotated} secret(s) under key '{active}'; {remaining} left under other keys.")
