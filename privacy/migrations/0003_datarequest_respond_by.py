"""Data requests get a second deadline, respond by (Decree 356/2025): two working
days after receipt. Requests already stored get theirs from when they were received;
their completion deadline (``due_at``, Decree 13's 72 hours) is left as it was.

The working-day rule is written out here, not imported from privacy.deadlines, so
that a later change there cannot change what this migration did."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import migrations, models


def _fill(apps, schema_editor):  # type: ignore[no-untyped-def]
    import holidays

    vietnam = holidays.country_holidays("VN")
    local = ZoneInfo("Asia/Ho_Chi_Minh")

    def respond_by(received: datetime) -> datetime:
        day, counted = received.astimezone(local).date(), 0
        while counted < 2:
            day += timedelta(days=1)
            counted += vietnam.is_working_day(day)
        return datetime.combine(day, time.max, tzinfo=local)

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
