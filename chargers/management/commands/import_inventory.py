"""`python manage.py import_inventory FILE`: load the charger inventory from a CSV file with a
header line `serial,pin,vendor,model` (vendor: spark1, zaptec, volttime or other)."""

from django.core.management.base import BaseCommand, CommandError

from chargers.inventory import InventoryError, import_inventory_csv


class Command(BaseCommand):
    help = "Import chargers (serial, PIN, vendor, model) into the inventory from a CSV file."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            with open(file, encoding="utf-8") as f:
                counts = import_inventory_csv(f.read())
        except (OSError, InventoryError) as e:
            raise CommandError(str(e))
        self.stdout.write(
            f"{counts['created']} created, {counts['updated']} updated, "
            f"{counts['skipped']} already claimed (unchanged)"
        )
