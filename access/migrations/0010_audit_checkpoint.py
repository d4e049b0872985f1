# Verified points of the audit chain, for incremental checks (access/audit.py).

from django.db import migrations, models

APPEND_ONLY = """
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON access_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION access_audit_append_only();
"""
DROP_APPEND_ONLY = "DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON access_auditcheckpoint;"


def append_only(apps, schema_editor):
    """Checkpoints are append-only like the events (the function comes from 0002)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_ONLY)


def append_only_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_ONLY)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0009_service_token_lifecycle"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField()),
                ("event_id", models.BigIntegerField(help_text="The last event verified.")),
                ("event_hash", models.CharField(help_text="Its hash as verified.", max_length=64)),
                ("checked", models.BigIntegerField(help_text="Events checked by the run that recorded it.")),
                ("full", models.BooleanField(help_text="Recorded by a full check (else incremental).")),
                ("previous_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64, unique=True)),
            ],
            options={"ordering": ["-id"]},
        ),
        migrations.RunPython(append_only, append_only_drop),
    ]
