"""On PostgreSQL the database itself refuses UPDATE and DELETE on the audit trail.

The model refuses them too, but a trigger also stops raw SQL, a shell, or a
future bug. SQLite (development) relies on the model and the hash chain.
TRUNCATE is left to the table owner (test databases are flushed with it);
the application's role in production should not own the table.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION grading_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'grading_auditevent is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER grading_auditevent_no_update_delete
    BEFORE UPDATE OR DELETE ON grading_auditevent
    FOR EACH ROW EXECUTE FUNCTION grading_auditevent_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS grading_auditevent_no_update_delete ON grading_auditevent;
DROP FUNCTION IF EXISTS grading_auditevent_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("grading", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
