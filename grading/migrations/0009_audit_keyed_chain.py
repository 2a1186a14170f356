"""The keyed audit chain: positions, hash versions, checkpoints.

Existing events keep their unkeyed SHA-256 hashes (hash_version 1): the trail is
append-only, and on PostgreSQL a trigger refuses to rewrite them. New events are
HMAC-keyed (hash_version 2) and numbered. This migration signs a seal over the existing
events into the checkpoint store (settings.AUDIT_CHECKPOINT_DIR), so that they are
verified against it from now on; where the store cannot be written, it says so, and
`manage.py verify_audit --write-checkpoint` seals them later. It also schedules a
checkpoint every five minutes.
"""

import sys

from django.conf import settings
from django.db import migrations, models

FUNC = "grading.audit.audit_checkpoint_write"


def seal_existing_events(apps, schema_editor):
    from grading.audit import audit_checkpoint_write

    AuditEvent = apps.get_model("grading", "AuditEvent")
    alias = schema_editor.connection.alias
    if not AuditEvent._default_manager.using(alias).exists():
        return
    try:
        checkpoint = audit_checkpoint_write(model=AuditEvent, using=alias, seal=True)
    except OSError as exc:
        sys.stdout.write(
            f"\n  Could not write the audit seal ({exc}). Once AUDIT_CHECKPOINT_DIR is "
            "writable, run `manage.py verify_audit --write-checkpoint`.\n"
        )
        return
    if checkpoint is not None:
        sys.stdout.write(
            f"\n  Sealed {checkpoint.legacy_count} audit events from before the audit key "
            f"into {settings.AUDIT_CHECKPOINT_DIR}.\n"
        )


def schedule_checkpoints(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        func=FUNC,
        defaults={"name": "Audit checkpoint", "schedule_type": "I", "minutes": 5},
    )


def unschedule_checkpoints(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=FUNC).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("grading", "0008_submission_hand_in_token"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(
                blank=True, editable=False, null=True, unique=True
            ),
        ),
        # Existing rows: version 1. The column's default then becomes 2 for new ones.
        migrations.AddField(
            model_name="auditevent",
            name="hash_version",
            field=models.PositiveSmallIntegerField(default=1, editable=False),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="hash_version",
            field=models.PositiveSmallIntegerField(default=2, editable=False),
        ),
        migrations.RunPython(seal_existing_events, migrations.RunPython.noop),
        migrations.RunPython(schedule_checkpoints, unschedule_checkpoints),
    ]
