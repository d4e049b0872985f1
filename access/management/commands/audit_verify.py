from django.core.management.base import BaseCommand, CommandError

from access.audit import audit_verify


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's hash chain. Prints 'intact: N events' and exits 0, or names "
        "the first event that was edited, deleted or inserted and exits 1."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=5000, help="Events read per query.")

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        report = audit_verify(batch_size=batch_size)
        if not report.intact:
            # CommandError exits with status 1 when run from the command line.
            raise CommandError(
                f"altered: first bad event #{report.first_bad_id}: {report.problem} "
                f"({report.checked} events verified before it)"
            )
        self.stdout.write(f"intact: {report.checked} events; head #{report.head_id} {report.head_hash}")
