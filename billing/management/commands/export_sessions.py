"""`python manage.py export_sessions --community SLUG --month YYYY-MM [--output FILE]`: the
month's sessions as CSV (the same writer as the portal download)."""

import re

from django.core.management.base import BaseCommand, CommandError
from django_scopes import scope

from billing.exports import write_sessions_csv
from communities.models import Community


class Command(BaseCommand):
    help = "Write a community's charging sessions of one month as CSV."

    def add_arguments(self, parser):
        parser.add_argument("--community", required=True, help="community short name (slug)")
        parser.add_argument("--month", required=True, help="YYYY-MM, in the community's time zone")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args, community, month, output=None, **options):
        m = re.fullmatch(r"(\d{4})-(\d{2})", month or "")
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise CommandError(f"Invalid month {month!r}: expected YYYY-MM, e.g. 2025-03.")
        year, month_number = int(m.group(1)), int(m.group(2))
        found = Community.objects.filter(slug=community).first()
        if found is None:
            raise CommandError(f"Unknown community {community!r}.")
        with scope(community=found):  # the community's data, as its portal download reads it
            if output:
                with open(output, "w", encoding="utf-8", newline="") as f:
                    count = write_sessions_csv(f, community=found, year=year, month=month_number)
                self.stderr.write(f"{count} sessions written to {output}")
            else:
                write_sessions_csv(self.stdout, community=found, year=year, month=month_number)
