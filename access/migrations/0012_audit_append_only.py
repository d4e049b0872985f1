"""On PostgreSQL the audit trail refuses UPDATE, DELETE and TRUNCATE: a catalog whose database role
could rewrite its own audit would make the audit worthless after a break-in.

Nothing in the catalog updates or deletes audit events (their foreign keys are PROTECT). The one
exception is maintenance by a person: a superuser, or a member of the role
``catalog_audit_maintenance`` if the operator creates it (docs/operations.md). The application's
role must be neither. Test databases are flushed by a superuser, which the trigger lets through.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION access_auditevent_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper)
       OR (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'catalog_audit_maintenance')
           AND pg_has_role(current_user, 'catalog_audit_maintenance', 'MEMBER')) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'The audit trail is append-only: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' is refused for role '
                  || current_user || '.';
END
$$;
CREATE TRIGGER access_auditevent_no_update_delete BEFORE UPDATE OR DELETE ON access_auditevent
    FOR EACH ROW EXECUTE FUNCTION access_auditevent_refuse_change();
CREATE TRIGGER access_auditevent_no_truncate BEFORE TRUNCATE ON access_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION access_auditevent_refuse_change();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS access_auditevent_no_truncate ON access_auditevent;
DROP TRIGGER IF EXISTS access_auditevent_no_update_delete ON access_auditevent;
DROP FUNCTION IF EXISTS access_auditevent_refuse_change();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):

    dependencies = [
        ("access", "0011_dataset_key"),
    ]

    operations = [migrations.RunPython(forward, backward)]
