"""Default routing policy: the level rules and the service level of each priority."""

from django.db import migrations


def load(apps, schema_editor):
    from scheduler.policy import policy_defaults_load

    policy_defaults_load(
        LevelRule=apps.get_model("scheduler", "LevelRule"),
        ServiceLevel=apps.get_model("scheduler", "ServiceLevel"),
    )


def unload(apps, schema_editor):
    apps.get_model("scheduler", "LevelRule").objects.all().delete()
    apps.get_model("scheduler", "ServiceLevel").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0001_initial")]

    operations = [migrations.RunPython(load, unload)]
