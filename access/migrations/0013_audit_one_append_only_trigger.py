"""One trigger per refusal on the audit table, not two doing the same.

0002 made ``audit_append_only`` (every UPDATE and DELETE refused, for every role) and 0012 added
``access_auditevent_no_update_delete`` for the same rows with a maintenance exemption that could
never take effect (0002's trigger refuses first). This drops 0012's row trigger and leaves:

- ``audit_append_only`` (0002): UPDATE and DELETE of an audit event are refused for every role;
  a change by hand means disabling it as the table's owner, which is itself visible;
- ``access_auditevent_no_truncate`` (0012): TRUNCATE refused except for a superuser or a member of
  ``catalog_audit_maintenance`` (test runs and restores need it).
"""

from django.db import migrations

FORWARD = "DROP TRIGGER IF EXISTS access_auditevent_no_update_delete ON access_auditevent;"

BACKWARD = """
CREATE TRIGGER access_auditevent_no_update_delete BEFORE UPDATE OR DELETE ON access_auditevent
    FOR EACH ROW EXECUTE FUNCTION access_auditevent_refuse_change();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):

    dependencies = [
        ("access", "0012_audit_append_only"),
    ]

    operations = [migrations.RunPython(forward, backward)]
