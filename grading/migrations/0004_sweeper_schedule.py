"""Schedule the sweeper that re-enqueues answers stuck in "grading"."""

from django.db import migrations

FUNC = "grading.tasks.requeue_stuck"


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        func=FUNC,
        defaults={"name": "Re-enqueue stuck grading", "schedule_type": "I", "minutes": 5},
    )


def backwards(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=FUNC).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("grading", "0003_answer_grading_requeues"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
