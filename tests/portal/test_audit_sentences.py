"""The audit log reads as sentences in the person's language, not as codes."""

import re

from communities.models import AuditEvent
from sparklin.templatetags.audit import SENTENCES


def test_every_recorded_action_has_a_sentence():
    """Every `action="…"` a service records is in SENTENCES (a new one fails here)."""
    from pathlib import Path

    from django.conf import settings

    found = set()
    for app in ("accounts", "billing", "chargers", "communities"):
        for path in (Path(settings.BASE_DIR) / app).rglob("*.py"):
            found |= set(re.findall(r'action="([a-z_]+\.[a-z_]+)"', path.read_text()))
    found |= {"invitation.handover", "invitation.transfer"}  # built with an f-string
    missing = found - set(SENTENCES)
    assert not missing, missing


def test_audit_page_shows_sentences(manager_client, community, manager):
    AuditEvent.objects.create(
        community=community, actor=manager, action="member.add", target="Léa Martin"
    )
    page = manager_client.get("/c/tilleuls/audit/").content.decode()
    assert "added Léa Martin" in page or "a ajouté Léa Martin" in page
    assert ">member.add<" not in page
