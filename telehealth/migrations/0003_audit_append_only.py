"""On PostgreSQL the database itself refuses UPDATE and DELETE on the audit log.

The ORM refuses them too (AuditEvent.save/delete, AuditQuerySet); the trigger
also stops a raw SQL session or a bug in a migration. TRUNCATE is left to the
table's owner: the test runner flushes tables with it, and in production the
service's database role is not granted it. SQLite, used only for
the embedded default, relies on the ORM guard.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION telehealth_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'the audit log is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER telehealth_auditevent_append_only
    BEFORE UPDATE OR DELETE ON telehealth_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION telehealth_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS telehealth_auditevent_append_only ON telehealth_auditevent;
DROP FUNCTION IF EXISTS telehealth_audit_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("telehealth", "0002_reference_data")]

    operations = [migrations.RunPython(forwards, backwards)]
