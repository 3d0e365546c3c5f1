"""On PostgreSQL the database itself refuses UPDATE and DELETE on consent records.

The ORM refuses them too (ConsentRecord.save/delete, AppendOnlyQuerySet): a
withdrawal is a new record, and the history is the evidence of what the patient
agreed to and when. As for the audit log, TRUNCATE is left to the table's owner
(the test runner flushes tables with it). SQLite relies on the ORM guard.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION privacy_consent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'consent records are append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER privacy_consentrecord_append_only
    BEFORE UPDATE OR DELETE ON privacy_consentrecord
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_consent_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS privacy_consentrecord_append_only ON privacy_consentrecord;
DROP FUNCTION IF EXISTS privacy_consent_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("privacy", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
