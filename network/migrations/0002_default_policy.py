"""The Ministry of Health's default: each central doctor mentors four provincial, four
district and two commune-level clinicians."""

from django.db import migrations

DEFAULT_QUOTAS = {(1, 2): 4, (1, 3): 4, (1, 4): 2}


def create_default(apps, schema_editor):
    MentoringPolicy = apps.get_model("network", "MentoringPolicy")
    PolicyQuota = apps.get_model("network", "PolicyQuota")
    if MentoringPolicy.objects.exists():
        return
    policy = MentoringPolicy.objects.create(
        name="Bộ Y tế: 4 tỉnh + 4 huyện + 2 xã",
        is_active=True,
        max_distance_km=800,
        note="Mặc định theo yêu cầu của Bộ Y tế",
    )
    PolicyQuota.objects.bulk_create(
        PolicyQuota(policy=policy, mentor_level=a, mentee_level=b, quota=q)
        for (a, b), q in DEFAULT_QUOTAS.items()
    )


def remove_default(apps, schema_editor):
    MentoringPolicy = apps.get_model("network", "MentoringPolicy")
    MentoringPolicy.objects.filter(name="Bộ Y tế: 4 tỉnh + 4 huyện + 2 xã", created_by=None).delete()


class Migration(migrations.Migration):
    dependencies = [("network", "0001_initial")]

    operations = [migrations.RunPython(create_default, remove_default)]
