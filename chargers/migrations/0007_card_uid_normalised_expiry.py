"""Card UIDs stored in their one normal form (upper case, no white space, colon or dash), unique
per community on that form, and an optional expiry date.

Existing rows are normalised. Rows that turn out to be the same card (`DEMO-CARD-01` and
`DEMOCARD01`) are merged into one: the active one with a holder is kept (else the oldest), the
sessions of the others point to it (each session keeps its own holder), and each merge is
written to the community's audit log (`card.merge`) and printed, so a manager can check it."""

import re
from collections import defaultdict

from django.conf import settings
from django.db import migrations, models


_SEPARATORS = re.compile(r"[\s:\-]+")


def normalise_cards(apps, schema_editor):
    ChargeCard = apps.get_model("chargers", "ChargeCard")
    ChargingSession = apps.get_model("chargers", "ChargingSession")
    AuditEvent = apps.get_model("communities", "AuditEvent")
    groups = defaultdict(list)
    for card in ChargeCard.objects.order_by("pk"):
        groups[(card.community_id, _SEPARATORS.sub("", card.uid).upper())].append(card)
    for (community_id, uid), cards in groups.items():
        cards.sort(key=lambda c: (not c.active, c.holder_id is None, c.created_at, c.pk))
        keeper, others = cards[0], cards[1:]
        merged = [{"id": o.pk, "uid": o.uid, "holder_id": o.holder_id} for o in others]
        for other in others:
            ChargingSession.objects.filter(card_id=other.pk).update(card_id=keeper.pk)
            other.delete()
        if others:
            AuditEvent.objects.create(
                community_id=community_id,
                action="card.merge",
                target=uid,
                data={"card_id": keeper.pk, "merged": merged},
            )
            print(
                f"\n  community {community_id}: cards {[o.uid for o in others]} merged into {uid}"
            )
        if keeper.uid != uid:
            keeper.uid = uid
            keeper.save(update_fields=["uid"])


class Migration(migrations.Migration):
    dependencies = [
        ("chargers", "0006_transaction_start"),
        ("communities", "0002_installers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="chargecard",
            name="expires_on",
            field=models.DateField(blank=True, null=True, verbose_name="expires on"),
        ),
        migrations.RunPython(normalise_cards, migrations.RunPython.noop),
    ]
