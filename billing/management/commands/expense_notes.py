"""`python manage.py expense_notes --month YYYY-MM [--community SLUG] [--send]`: issue the
month's expense notes (new notes, new versions of changed ones) for one community or all,
render the PDFs not stored yet, and with --send e-mail what was not sent yet. Safe to run
again: nothing is issued, rendered or sent twice (workers doing the same at the same time
included)."""

import re

from django.core.management.base import BaseCommand, CommandError
from django_scopes import scope

from billing import dispatch, issuing, rendering
from billing.services import BillingError
from communities.models import Community


class Command(BaseCommand):
    help = "Issue (and with --send, e-mail) the expense notes of a month."

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="YYYY-MM, in each community's time zone")
        parser.add_argument("--community", help="community short name (slug); default: all")
        parser.add_argument("--send", action="store_true", help="e-mail what was not sent yet")

    def handle(self, *args, month, community=None, send=False, **options):
        m = re.fullmatch(r"(\d{4})-(\d{2})", month or "")
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise CommandError(f"Invalid month {month!r}: expected YYYY-MM, e.g. 2025-03.")
        year, month_number = int(m.group(1)), int(m.group(2))
        communities = Community.objects.order_by("slug")
        if community:
            communities = communities.filter(slug=community)
            if not communities.exists():
                raise CommandError(f"Unknown community {community!r}.")
        failed = False
        for c in communities:
            with scope(community=c):
                try:
                    generated = issuing.generate_month(community=c, year=year, month=month_number)
                except BillingError as e:
                    raise CommandError(e.message)
                rendering.render_missing(c, year, month_number)
                line = (
                    f"{c.slug} {month}: {len(generated.created)} new, "
                    f"{len(generated.versioned)} new versions, {generated.unchanged} unchanged"
                )
                if send:
                    sent = dispatch.send_month(community=c, year=year, month=month_number)
                    line += f"; sent to finance {sent.finance_sent}, to drivers {sent.driver_sent}"
                    if sent.not_sent_reason:
                        line += f"; not sent to finance: {sent.not_sent_reason}"
                    if sent.failed:
                        failed = True
                        line += f"; FAILED: {sent.failed[0]}"
            self.stdout.write(line)
        if failed:
            raise CommandError("Some e-mails could not be sent; run again to retry them.")
