# The grid limit moved to power.SitePower (power/migrations/0002 copies it first).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('communities', '0002_installers'),
        ('power', '0002_from_site_grid_limit'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='site',
            name='grid_limit_kw',
        ),
    ]
