"""python manage.py demo_meter [--kind simulated|mqtt] — give the demo site its grid meter
(scripts/run-demo picks `mqtt` when a broker answers and starts `python -m meters.demo`)."""

from django.core.management.base import BaseCommand
from django_scopes import scopes_disabled

from communities.models import Site
from meters.demo import DEMO_SITE_NAME, ensure_demo_meter


class Command(BaseCommand):
    help = "Create or switch the demo site's grid meter (simulated in-process, or over MQTT)."

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=["simulated", "mqtt"], default="simulated")

    def handle(self, *args, **options):
        with scopes_disabled():
            site = Site.objects.filter(name=DEMO_SITE_NAME).first()
            if site is None:
                self.stdout.write(f"No site named {DEMO_SITE_NAME!r}: run seed_demo first.")
                return
            meter = ensure_demo_meter(site, kind=options["kind"])
        self.stdout.write(f"Demo meter {meter.name!r} ({meter.kind}) on {site.name}.")
