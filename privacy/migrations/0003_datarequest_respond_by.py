"""Data requests get a second deadline, respond by (Decree 356/2025): two working
days after receipt. Requests already stored get theirs from when they were received."""

from django.db import migrations, models


def _fill(apps, schema_editor):  # type: ignore[no-untyped-def]
    from privacy.deadlines import respond_by

    DataRequest = apps.get_model("privacy", "DataRequest")
    for row in DataRequest.objects.only("pk", "created_at").iterator():
        DataRequest.objects.filter(pk=row.pk).update(respond_by=respond_by(row.created_at))


class Migration(migrations.Migration):
    dependencies = [
        ("privacy", "0002_consent_append_only"),
    ]

    operations = [
        migrations.AddField(
            model_name="datarequest",
            name="respond_by",
            field=models.DateTimeField(null=True, verbose_name="respond by"),
        ),
        migrations.RunPython(_fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="datarequest",
            name="respond_by",
            field=models.DateTimeField(verbose_name="respond by"),
        ),
        migrations.AlterField(
            model_name="datarequest",
            name="due_at",
            field=models.DateTimeField(verbose_name="complete by"),
        ),
    ]
