"""Jobs and runs keep the account whose events made them (access.policies.can_send_lineage_for):
another pipeline may no longer rewrite a job's SQL or type, end or fail a run, or nest its runs
under one. Existing jobs and runs get the sender of their earliest event. Jobs keep the tables
their SQL names, parsed once when the SQL arrives rather than at every view of the job page."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def senders_from_events(apps, schema_editor):
    Job = apps.get_model("lineage", "Job")
    Run = apps.get_model("lineage", "Run")
    LineageEvent = apps.get_model("lineage", "LineageEvent")
    first = LineageEvent.objects.filter(received_by__isnull=False).order_by("received_at", "id")
    for model, key in ((Job, "job_id"), (Run, "run_id")):
        ids = model.objects.filter(sent_by__isnull=True).values_list("pk", flat=True)
        for pk in ids.iterator():
            sender = first.filter(**{key: pk}).values_list("received_by_id", flat=True).first()
            if sender is not None:
                model.objects.filter(pk=pk).update(sent_by_id=sender)


class Migration(migrations.Migration):

    dependencies = [
        ("lineage", "0003_event_queue"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="sent_by",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name="run",
            name="sent_by",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="+", to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name="job",
            name="sql_tables",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.RunPython(senders_from_events, migrations.RunPython.noop),
    ]
