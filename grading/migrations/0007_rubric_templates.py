"""Install the rubric templates every school starts with."""

from django.db import migrations


def install(apps, schema_editor):
    from grading.rubric_templates import TEMPLATES, rubric_install

    for spec in TEMPLATES:
        rubric_install(
            spec,
            rubric_model=apps.get_model("grading", "Rubric"),
            criterion_model=apps.get_model("grading", "Criterion"),
            level_model=apps.get_model("grading", "Level"),
        )


class Migration(migrations.Migration):
    dependencies = [("grading", "0006_regrade_requests")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
