"""Load the 34 provinces, the 63->34 mapping, the 3,321 communes and the specialties.

Idempotent: rows that exist are left alone (see telehealth.reference).
"""

from django.db import migrations


def load(apps, schema_editor):
    from telehealth.reference import reference_data_load

    reference_data_load(
        Province=apps.get_model("telehealth", "Province"),
        LegacyProvince=apps.get_model("telehealth", "LegacyProvince"),
        Commune=apps.get_model("telehealth", "Commune"),
        Specialty=apps.get_model("telehealth", "Specialty"),
    )


class Migration(migrations.Migration):
    dependencies = [("telehealth", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
