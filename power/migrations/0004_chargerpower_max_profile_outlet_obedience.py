"""The charger's own maximum sent as a max profile (what was sent, and when), and obedience
judged per outlet: a charger flagged as a whole before keeps its verdict on the outlets it had
limits for (its first outlet when it had one limit), so nobody gets a fresh grace period."""

from django.db import migrations, models


def forwards(apps, schema_editor):
    ChargerPower = apps.get_model("power", "ChargerPower")
    for state in ChargerPower.objects.filter(over_since__isnull=False).iterator():
        entry = {"over": state.over_since.isoformat()}
        if state.non_compliant_since is not None:
            entry["since"] = state.non_compliant_since.isoformat()
        if state.draw_a is not None:
            entry["draw"] = round(state.draw_a, 1)
        outlets = list(state.outlet_limits or {}) or ["1"]
        state.outlet_obedience = {outlet: dict(entry) for outlet in outlets}
        state.save(update_fields=["outlet_obedience"])


class Migration(migrations.Migration):
    dependencies = [
        ("power", "0003_chargerpower_outlet_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="chargerpower",
            name="max_profile_a",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="chargerpower",
            name="max_profile_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="chargerpower",
            name="outlet_obedience",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
