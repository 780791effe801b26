"""The site's old "grid limit (kW)" (a field nothing used) becomes the grid connection of the
new electrical model: three phases at 230 V, limit per phase = kW × 1000 / (230 × 3), floored to
0.1 A. No mode is switched on: nothing was controlled before the upgrade, and sending charging
profiles is a decision for the site's manager or installer (the Power page)."""

from decimal import ROUND_FLOOR, Decimal

from django.db import migrations


def forwards(apps, schema_editor):
    Site = apps.get_model("communities", "Site")
    SitePower = apps.get_model("power", "SitePower")
    for site in Site.objects.filter(grid_limit_kw__isnull=False).iterator():
        if SitePower.objects.filter(site_id=site.pk).exists():
            continue
        limit_a = (site.grid_limit_kw * 1000 / Decimal(230 * 3)).quantize(
            Decimal("0.1"), rounding=ROUND_FLOOR
        )
        SitePower.objects.create(
            community_id=site.community_id,
            site_id=site.pk,
            phases=3,
            voltage_v=230,
            limit_a=max(limit_a, Decimal("1")),
        )


def backwards(apps, schema_editor):
    Site = apps.get_model("communities", "Site")
    SitePower = apps.get_model("power", "SitePower")
    for power in SitePower.objects.all().iterator():
        kw = (power.limit_a * power.voltage_v * power.phases / 1000).quantize(Decimal("0.1"))
        Site.objects.filter(pk=power.site_id).update(grid_limit_kw=kw)


class Migration(migrations.Migration):
    dependencies = [
        ("power", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
