from django.core.management.base import BaseCommand, CommandError

from access.audit import audit_checkpoint_record, audit_verify


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's hash chain: by default the events since the latest checkpoint "
        "(all of them when there is none), with --full every event and every checkpoint. Prints what "
        "was checked, records a new checkpoint and exits 0, or names the first event (or checkpoint) "
        "that was edited, deleted or inserted and exits 1."
    )

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true",
                            help="Check every event from the first, and every checkpoint.")
        parser.add_argument("--batch-size", type=int, default=10_000, help="Events fetched at a time.")
        parser.add_argument("--no-checkpoint", action="store_true",
                            help="Do not record a checkpoint (the next check starts where this one did).")

    def handle(self, *args, full, batch_size, no_checkpoint, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        report = audit_verify(full=full, batch_size=batch_size)
        scope = (
            "full check" if report.full
            else f"incremental check from checkpoint #{report.checkpoint_id}"
        )
        if not report.intact:
            where = f"first bad event #{report.first_bad_id}: " if report.first_bad_id is not None else ""
            # CommandError exits with status 1 when run from the command line.
            raise CommandError(
                f"altered ({scope}): {where}{report.problem} ({report.checked} events verified before it)"
            )
        span = f"#{report.from_id}-#{report.head_id}" if report.checked else "no new events"
        self.stdout.write(
            f"intact: {report.checked} events ({scope}, {span}); head #{report.head_id} {report.head_hash}"
        )
        if not no_checkpoint:
            checkpoint = audit_checkpoint_record(report)
            self.stdout.write(f"checkpoint #{checkpoint.pk} through event #{checkpoint.event_id}: {checkpoint.hash}")
