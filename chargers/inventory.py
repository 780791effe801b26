"""The charger inventory: what platform staff import (CSV: serial, PIN, vendor, model) and how an
installer claims a charger by the serial and PIN of its sticker. PINs are stored hashed; wrong
PINs are throttled per person and per serial (accounts' TokenBucket); a claim is final."""

import csv
import io

from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import TokenBucket, salted_digest
from communities.services import audit

from .models import Charger, InventoryCharger, UnknownCharger, Vendor
from .services import ChargerError, _identity_taken

# Claim attempts (right or wrong) per person and per serial number, per 15 minutes.
CLAIMS_PER_USER = 10
CLAIMS_PER_SERIAL = 5
CLAIM_WINDOW_SECONDS = 900

_VENDORS = {v.value: v.value for v in Vendor} | {v.label.lower(): v.value for v in Vendor}


class InventoryError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


def _digest(value: str) -> str:
    return salted_digest(value)


def import_inventory(rows) -> dict:
    """Add or update inventory chargers from dict rows with serial, pin, vendor, model. An
    already claimed serial is left alone. Returns counts {"created", "updated", "skipped"}."""
    counts = {"created": 0, "updated": 0, "skipped": 0}
    with transaction.atomic():
        for n, row in enumerate(rows, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            serial, pin = row.get("serial", ""), row.get("pin", "")
            vendor = _VENDORS.get(row.get("vendor", "").lower())
            if not serial or not pin or vendor is None:
                raise InventoryError(f"line {n}: serial, pin and a known vendor are required")
            existing = InventoryCharger.objects.filter(serial=serial).first()
            if existing and existing.claimed_at:
                counts["skipped"] += 1
                continue
            fields = {
                "pin_hash": make_password(pin),
                "vendor": vendor,
                "model": row.get("model", ""),
            }
            if existing:
                for k, v in fields.items():
                    setattr(existing, k, v)
                existing.save()
                counts["updated"] += 1
            else:
                InventoryCharger.objects.create(serial=serial, **fields)
                counts["created"] += 1
    return counts


def import_inventory_csv(text: str) -> dict:
    """`import_inventory` over CSV text with a header line serial,pin,vendor,model."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = {"serial", "pin", "vendor"} - {f.strip().lower() for f in reader.fieldnames or []}
    if missing:
        raise InventoryError(f"missing columns: {', '.join(sorted(missing))}")
    return import_inventory(reader)


def claim_charger(*, site, actor, serial: str, pin: str, name: str = "", company=None) -> Charger:
    """Register the inventory charger `serial` on `site` when `pin` matches its sticker. Refused
    with a clear message for an unknown serial, a wrong PIN, a charger claimed already, or too
    many attempts (throttled per person and per serial). The attempt is counted outside the
    claim's transaction, so a refused claim still spends its token."""
    serial = serial.strip()
    buckets = [
        (f"claim-user:{actor.pk}", CLAIMS_PER_USER),
        (f"claim-serial:{_digest(serial.upper())}", CLAIMS_PER_SERIAL),
    ]
    user_ok = TokenBucket.authorize(buckets[0][0], CLAIMS_PER_USER, CLAIM_WINDOW_SECONDS)
    serial_ok = TokenBucket.authorize(buckets[1][0], CLAIMS_PER_SERIAL, CLAIM_WINDOW_SECONDS)
    if not (user_ok and serial_ok):
        raise ChargerError(
            _("Too many attempts to claim a charger. Please wait 15 minutes and try again.")
        )
    try:
        with transaction.atomic():
            return _claim(
                site=site, actor=actor, serial=serial, pin=pin, name=name, company=company
            )
    except WrongPin:
        left = _attempts_left(buckets)
        if left <= 0:
            message = _(
                "Wrong PIN for this serial number. No attempt left: wait 15 minutes before "
                "trying again."
            )
        else:
            message = ngettext(
                "Wrong PIN for this serial number. Check the sticker on the charger: "
                "%(left)d attempt left before a 15-minute pause.",
                "Wrong PIN for this serial number. Check the sticker on the charger: "
                "%(left)d attempts left before a 15-minute pause.",
                left,
            ) % {"left": left}
        raise ChargerError(message) from None


class WrongPin(ChargerError):
    pass


def _attempts_left(buckets) -> int:
    """Whole attempts still in the fullest-used of the claim buckets (each token is
    1/capacity of a bucket)."""
    left = []
    for key, capacity in buckets:
        bucket = TokenBucket.objects.filter(value=key).first()
        tokens = bucket.tokens if bucket is not None else 1.0
        left.append(int(tokens * capacity + 1e-9))
    return min(left)


def _claim(*, site, actor, serial, pin, name, company) -> Charger:
    item = InventoryCharger.objects.select_for_update().filter(serial__iexact=serial).first()
    if item is None:
        raise ChargerError(
            _(
                "This serial number is not in the Sparklin inventory. Check it on the sticker, "
                "or register the charger by its serial number only."
            )
        )
    if not check_password(pin.strip(), item.pin_hash):
        raise WrongPin(_("Wrong PIN for this serial number. Check the sticker on the charger."))
    if item.claimed_at is not None or _identity_taken(item.serial):
        raise ChargerError(_("This charger has already been claimed in another installation."))
    charger = Charger.objects.create(
        community=site.community,
        site=site,
        identity=item.serial,
        vendor=item.vendor,
        model=item.model,
        name=name,
        installer=company,
        from_inventory=True,
    )
    item.claimed_at, item.claimed_by, item.charger = timezone.now(), actor, charger
    item.save(update_fields=["claimed_at", "claimed_by", "charger"])
    UnknownCharger.objects.filter(
        identity=item.serial, reason=UnknownCharger.Reason.UNKNOWN
    ).delete()
    audit(
        community=site.community,
        actor=actor,
        action="charger.claim",
        target=item.serial,
        charger_id=charger.pk,
        site_id=site.pk,
        company_id=company.pk if company else None,
    )
    return charger
