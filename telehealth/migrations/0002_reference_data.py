"""Load the 34 provinces, the 63→34 mapping, the 3,321 communes and the specialties.

Idempotent (update_or_create by code), so re-running it after the data package
moves forward corrects names and coordinates without touching facilities.
"""

from django.db import migrations


def load(apps, schema_editor):
    from telehealth import geodata
    from telehealth.reference import SPECIALTIES

    Province = apps.get_model("telehealth", "Province")
    LegacyProvince = apps.get_model("telehealth", "LegacyProvince")
    Commune = apps.get_model("telehealth", "Commune")
    Specialty = apps.get_model("telehealth", "Specialty")

    existing = set(Province.objects.values_list("code", flat=True))
    Province.objects.bulk_create(
        [
            Province(
                code=row.code,
                name=row.name,
                short_name=row.short_name,
                is_city=row.is_city,
                latitude=row.latitude,
                longitude=row.longitude,
            )
            for row in geodata.provinces()
            if row.code not in existing
        ]
    )
    by_code = {p.code: p for p in Province.objects.all()}

    existing = set(LegacyProvince.objects.values_list("code", flat=True))
    LegacyProvince.objects.bulk_create(
        [
            LegacyProvince(
                code=row.code,
                name=row.name,
                short_name=row.short_name,
                province=by_code[row.province_code],
            )
            for row in geodata.legacy_provinces()
            if row.code not in existing
        ]
    )

    existing = set(Commune.objects.values_list("code", flat=True))
    Commune.objects.bulk_create(
        [
            Commune(
                code=row.code,
                name=row.name,
                kind=row.kind,
                province=by_code[row.province_code],
                latitude=row.latitude,
                longitude=row.longitude,
                area_km2=row.area_km2,
            )
            for row in geodata.communes()
            if row.code not in existing
        ],
        batch_size=1000,
    )

    for code, name_vi, name_en in SPECIALTIES:
        Specialty.objects.update_or_create(
            code=code, defaults={"name_vi": name_vi, "name_en": name_en}
        )


class Migration(migrations.Migration):
    dependencies = [("telehealth", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
