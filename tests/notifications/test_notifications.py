"""Notifications: facts → rows (per kind, preference, channel), messages in the recipient's
language, idempotency, the throttle that bounds a flood, SMS limits, offline outages."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from django_scopes import scope

from accounts import sms
from accounts.models import User
from chargers import events as ev
from chargers.models import Charger, ChargingSession
from communities.models import AccessRequest, Role
from notifications import collect, sending
from notifications.models import Channel, CommunityNotifications, Kind, Notification, Preference
from notifications.preferences import save_choices
from notifications.tasks import collect as collect_task
from notifications.tasks import dispatch
from rules.models import Reason, RuleEvent
from tests import builders
from tests.chargers.test_events import T0, at, tx

# Test bodies read tenant rows inside the community's scope, as a request or a community task does.
pytestmark = [pytest.mark.django_db, pytest.mark.community_scope]

State = Notification.State


@pytest.fixture(autouse=True)
def _memory_sms(settings):
    settings.SMS_BACKEND = "memory"
    settings.SMS_ALLOWED_COUNTRIES = ["FR"]
    sms.outbox.clear()
    yield
    sms.outbox.clear()


@pytest.fixture
def people(community):
    boss = builders.make_member(community, Role.MANAGER).user
    boss.email, boss.language = "boss@example.org", User.Language.ENGLISH
    boss.save()
    chef = builders.make_member(community, Role.OWNER).user
    chef.email, chef.language = "chef@example.org", User.Language.FRENCH
    chef.save()
    driver = builders.make_member(community, Role.INDIVIDUAL).user
    driver.email, driver.language = "driver@example.org", User.Language.FRENCH
    driver.save()
    return {"boss": boss, "chef": chef, "driver": driver}


def run_collect():
    """The beat task as the worker runs it: rows, then the sends queued after the commit."""
    collect_task.delay()


def inbox(address):
    return [m for m in mail.outbox if m.to == [address]]


def refusal(community, charger, reason=Reason.OUTSIDE_HOURS, holder=None, **kw):
    return RuleEvent.objects.create(
        community=community,
        kind=kw.pop("kind", RuleEvent.Kind.REFUSED),
        reason=reason,
        action="Authorize",
        charger=charger,
        evse_id=1,
        uid="04A23B11",
        holder=holder,
        **kw,
    )


def test_access_request_tells_managers_in_their_language(
    community, people, django_capture_on_commit_callbacks
):
    asker = builders.make_user(first_name="Zoé", last_name="Martin", email="zoe@example.org")
    AccessRequest.objects.create(community=community, user=asker, message="Place 12")
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
    boss = inbox("boss@example.org")
    chef = inbox("chef@example.org")
    assert len(boss) == 1 and len(chef) == 1
    assert boss[0].subject == "Résidence Les Tilleuls: Zoé Martin asks for access"
    assert "Place 12" in boss[0].body
    assert "/c/tilleuls/access-requests/" in boss[0].body
    assert "Zoé Martin" in chef[0].body  # in French once the catalogue has it (lead)
    # Neither the driver (no permission) nor the asker is told; e-mail only by default.
    assert not inbox("driver@example.org") and not inbox("zoe@example.org")
    assert sms.outbox == []


def test_an_access_request_is_told_as_soon_as_it_is_committed_once(
    community, people, django_capture_on_commit_callbacks
):
    """Not at the next scan: the service's commit queues the notice; the scans that follow
    tell nothing again."""
    from communities.services import request_access

    asker = builders.make_user(first_name="Zoé", last_name="Martin", email="zoe@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        request = request_access(user=asker, slug="tilleuls", message="Place 12")
    (boss,) = inbox("boss@example.org")
    assert "Zoé Martin asks for access" in boss.subject and "Place 12" in boss.body
    assert len(inbox("chef@example.org")) == 1
    with scope(community=community):
        rows = Notification.objects.filter(kind=Kind.ACCESS_REQUEST)
        assert {n.key for n in rows} == {f"access_request:{request.pk}"}
        assert set(rows.values_list("state", flat=True)) == {State.SENT}
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
        dispatch.delay()
    assert len(inbox("boss@example.org")) == 1 and len(inbox("chef@example.org")) == 1


def test_an_access_request_refused_by_the_service_tells_nobody(
    community, people, django_capture_on_commit_callbacks
):
    from communities.services import CommunityError, request_access

    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(CommunityError):
            request_access(user=people["driver"], slug="tilleuls")  # already a member
    assert mail.outbox == []


def test_a_fact_is_told_once_whatever_the_scans(
    community, people, charger, django_capture_on_commit_callbacks
):
    refusal(community, charger, holder=people["driver"])
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
        run_collect()
        dispatch.delay()
    (boss,) = inbox("boss@example.org")
    (chef,) = inbox("chef@example.org")
    # Each in their language: the reason, the date format.
    assert "outside charging hours" in boss.body and "en dehors des heures de recharge" in chef.body
    assert "Résidence Les Tilleuls" in boss.subject and "CP-TEST-01, outlet 1" in boss.body
    with scope(community=community):
        assert Notification.objects.filter(kind=Kind.REFUSED).count() == 2  # boss, chef
        assert set(Notification.objects.values_list("state", flat=True)) == {State.SENT}


def test_refusals_of_an_unknown_card_or_older_than_the_maximum_age_are_not_told(
    community, people, charger
):
    refusal(community, charger, reason=Reason.UNKNOWN_CARD)
    refusal(community, charger, at=timezone.now() - timedelta(hours=2))
    assert collect.collect() == set()


def test_a_flood_of_refusals_makes_one_message_then_one_digest(
    community, people, charger, django_capture_on_commit_callbacks, settings
):
    settings.NOTIFY_THROTTLE_MINUTES = 15
    refusal(community, charger, holder=people["driver"])
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
    assert len(inbox("boss@example.org")) == 1
    for _ in range(40):
        refusal(community, charger, reason=Reason.NOT_ALLOWED)
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
        dispatch.delay()
    assert len(inbox("boss@example.org")) == 1  # the rest waits for the throttle
    with scope(community=community):
        waiting = Notification.objects.filter(recipient=people["boss"], state=State.PENDING)
        assert waiting.count() == 40
        assert all(n.send_after > timezone.now() + timedelta(minutes=14) for n in waiting)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        with django_capture_on_commit_callbacks(execute=True):
            dispatch.delay()
    boss = inbox("boss@example.org")
    assert len(boss) == 2
    assert boss[1].subject == "Résidence Les Tilleuls: 40 charges refused by your rules"
    assert "not allowed on this outlet" in boss[1].body
    assert "… and 30 more." in boss[1].body  # ten listed
    with scope(community=community):
        assert not Notification.objects.exclude(state=State.SENT).exists()


def test_preferences_choose_the_channels(
    community, people, charger, django_capture_on_commit_callbacks
):
    save_choices(user=people["boss"], choices={Kind.REFUSED: {"email": False, "sms": True}})
    save_choices(user=people["chef"], choices={Kind.REFUSED: {"email": False, "sms": False}})
    refusal(community, charger)
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
    assert mail.outbox == []
    assert len(sms.outbox) == 1
    assert sms.outbox[0].to == str(people["boss"].phone)
    assert "charge refused at CP-TEST-01 (outside charging hours)" in sms.outbox[0].body


def test_an_sms_refused_by_the_limits_is_kept_and_logged_never_raised(
    community, people, charger, django_capture_on_commit_callbacks, settings, caplog
):
    settings.SMS_ALLOWED_COUNTRIES = ["BE"]  # the French numbers of the builders are refused
    save_choices(user=people["boss"], choices={Kind.REFUSED: {"email": True, "sms": True}})
    refusal(community, charger)
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
    assert sms.outbox == []
    assert len(inbox("boss@example.org")) == 1  # the e-mail is not affected
    with scope(community=community):
        row = Notification.objects.get(recipient=people["boss"], channel=Channel.SMS)
    assert row.state == State.REFUSED and "(+33)" in row.error
    assert "refused by the SMS limits" in caplog.text


def test_a_delivery_error_is_retried_later_then_given_up(community, people, charger, monkeypatch):
    refusal(community, charger)
    collect.collect()

    def broken(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(sending, "deliver", broken)
    boss = people["boss"]
    with scope(community=community):
        args = {"community": community, "recipient_id": boss.pk, "kind": Kind.REFUSED}
        assert sending.send_group(**args, channel=Channel.EMAIL) == "retry"
        row = Notification.objects.get(recipient=boss)
        assert row.state == State.PENDING and row.attempts == 1 and "refused" in row.error
        assert sending.send_group(**args, channel=Channel.EMAIL) == "nothing"  # backoff
        later = timezone.now()
        for _ in range(sending.MAX_ATTEMPTS - 1):
            later += timedelta(hours=1)
            sending.send_group(**args, channel=Channel.EMAIL, now=later)
        row.refresh_from_db()
        assert row.state == State.FAILED and row.attempts == sending.MAX_ATTEMPTS


def test_a_session_stopped_by_a_limit_tells_its_driver(
    community, people, charger, django_capture_on_commit_callbacks
):
    refusal(
        community,
        charger,
        reason=Reason.MONTHLY_LIMIT,
        holder=people["driver"],
        kind=RuleEvent.Kind.STOPPED,
    )
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
    driver = inbox("driver@example.org")
    assert len(driver) == 1
    assert "limite mensuelle atteinte" in driver[0].subject  # the driver's language
    assert "/c/tilleuls/my-sessions/" in driver[0].body
    assert not inbox("boss@example.org")  # a stop is the driver's news


def test_a_charger_offline_is_told_once_per_outage_and_back_online(
    community, people, charger, django_capture_on_commit_callbacks
):
    now = timezone.now()
    Charger.objects.filter(pk=charger.pk).update(
        connected=False, connection_changed_at=now - timedelta(minutes=10)
    )
    assert collect.collect() == set()  # 10 < 15 minutes (the default)
    Charger.objects.filter(pk=charger.pk).update(connection_changed_at=now - timedelta(minutes=20))
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
        run_collect()
    boss = inbox("boss@example.org")
    assert len(boss) == 1
    assert boss[0].subject == "Résidence Les Tilleuls: CP-TEST-01 is offline"
    assert "more than 15 minutes" in boss[0].body
    assert f"/c/tilleuls/chargers/{charger.pk}/" in boss[0].body
    # Back: told to the same people once the throttle allows it.
    Charger.objects.filter(pk=charger.pk).update(connected=True, connection_changed_at=now)
    with time_machine.travel(now + timedelta(minutes=16)):
        with django_capture_on_commit_callbacks(execute=True):
            run_collect()
            run_collect()
    boss = inbox("boss@example.org")
    assert len(boss) == 2 and boss[1].subject.endswith("CP-TEST-01 is back online")
    assert len(inbox("chef@example.org")) == 2
    assert not inbox("driver@example.org")


def test_the_offline_delay_is_the_installations_and_zero_means_never(community, people, charger):
    CommunityNotifications.objects.create(community=community, offline_minutes=60)
    Charger.objects.filter(pk=charger.pk).update(
        connected=False, connection_changed_at=timezone.now() - timedelta(minutes=30)
    )
    assert collect.collect() == set()
    CommunityNotifications.objects.filter(community=community).update(offline_minutes=0)
    Charger.objects.filter(pk=charger.pk).update(
        connection_changed_at=timezone.now() - timedelta(hours=3)
    )
    assert collect.collect() == set()


def test_a_session_ended_in_a_worker_batch_tells_its_driver_in_french(
    community, people, charger, django_capture_on_commit_callbacks
):
    card = builders.make_card(community, holder=people["driver"], uid="04A23B11")
    with time_machine.travel(T0 + timedelta(minutes=31), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            ev.process_events(
                [
                    tx(charger, "started", minutes=0, id_tag=card.uid, meter_wh=12000),
                    tx(charger, "ended", minutes=30, meter_wh=19404, reason="Local"),
                ]
            )
        # Applied again (a redelivered batch): no second notice.
        with django_capture_on_commit_callbacks(execute=True):
            ev.process_events([tx(charger, "ended", minutes=30, meter_wh=19404, reason="Local")])
    with scope(community=community):
        session = ChargingSession.objects.get(charger=charger)
    assert session.energy_wh == Decimal("7404")
    driver = inbox("driver@example.org")
    assert len(driver) == 1
    # French numbers and times (the wording follows once the lead compiles the catalogue).
    assert "7,404 kWh" in driver[0].body and "1,86\xa0€" in driver[0].body  # 7.404 × 0.2516 €
    assert "10/03/2025 09:00" in driver[0].body  # Paris time
    assert not inbox("boss@example.org")


def test_a_session_that_ended_long_before_it_was_heard_of_is_not_told(
    community, people, charger, django_capture_on_commit_callbacks
):
    card = builders.make_card(community, holder=people["driver"], uid="04A23B11")
    with time_machine.travel(T0 + timedelta(hours=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            ev.process_events(
                [
                    tx(charger, "started", minutes=0, id_tag=card.uid, meter_wh=12000),
                    tx(charger, "ended", minutes=30, meter_wh=19404, reason="Local"),
                ]
            )
    assert mail.outbox == []
    assert at(0)  # T0-based events


def test_account_page_shows_the_choices_a_person_has_and_saves_them(client, community, people):
    client.force_login(people["driver"])
    page = client.get("/accounts/me/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="notifications"' in page
    assert "My charging session ended" in page and "A driver asks for access" not in page
    client.force_login(people["boss"])
    page = client.get("/accounts/me/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "A driver asks for access" in page and "A charger is offline" in page
    response = client.post(
        "/accounts/me/notifications/",
        {"access_request__sms": "on", "refused__email": "on", "session_ended__email": "on"},
    )
    assert response.status_code == 302 and response["Location"].endswith("#notifications")
    prefs = {p.kind: (p.email, p.sms) for p in Preference.objects.filter(user=people["boss"])}
    assert prefs[Kind.ACCESS_REQUEST] == (False, True)
    assert prefs[Kind.REFUSED] == (True, False)
    assert prefs[Kind.CHARGER_OFFLINE] == (False, False)
    assert prefs[Kind.SESSION_STOPPED] == (False, False)


def test_community_offline_delay_is_set_by_managers_validated_and_audited(
    client, community, people
):
    url = "/c/tilleuls/notifications/settings/"
    client.force_login(people["driver"])
    assert client.post(url, {"offline_minutes": "5"}).status_code == 403
    client.force_login(people["boss"])
    page = client.get("/c/tilleuls/settings/").content.decode()
    assert 'id="notification-settings"' in page and 'value="15"' in page
    response = client.post(url, {"offline_minutes": "abc"}, follow=True, HTTP_ACCEPT_LANGUAGE="en")
    assert "Charger offline delay" in response.content.decode()
    assert not CommunityNotifications.objects.exists()
    client.post(url, {"offline_minutes": "45"})
    assert CommunityNotifications.objects.get(community=community).offline_minutes == 45
    with scope(community=community):
        from communities.models import AuditEvent

        assert AuditEvent.objects.filter(action="notifications.offline_minutes").count() == 1


def test_a_charge_started_offline_with_an_unknown_card_is_told_to_the_managers(
    community, people, charger, django_capture_on_commit_callbacks
):
    refusal(community, charger, reason=Reason.UNKNOWN_CARD, kind=RuleEvent.Kind.OFFLINE)
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
    (boss,) = inbox("boss@example.org")
    assert "started while the charger was offline" in boss.body and "unknown card" in boss.body


def test_old_rows_are_purged_and_an_erased_account_takes_its_notices_along(
    community, people, charger
):
    from accounts.privacy import delete_account
    from notifications.tasks import purge

    refusal(community, charger, holder=people["driver"])
    AccessRequest.objects.create(community=community, user=builders.make_user())
    collect.collect()
    assert Notification.objects.count() == 4  # two facts × two managers
    delete_account(user=people["driver"])  # named by the refusal
    assert Notification.objects.count() == 2
    delete_account(user=people["boss"])  # a recipient
    assert Notification.objects.count() == 1
    assert not Preference.objects.filter(user=people["boss"]).exists()
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        assert purge.delay().get() == 1
    assert not Notification.objects.exists()


def test_chargers_going_offline_together_make_one_message(
    community, people, site, django_capture_on_commit_callbacks
):
    chargers = [builders.make_charger(community, site=site) for _ in range(3)]
    Charger.objects.filter(pk__in=[c.pk for c in chargers]).update(
        connected=False, connection_changed_at=timezone.now() - timedelta(minutes=30)
    )
    with django_capture_on_commit_callbacks(execute=True):
        run_collect()
    (boss,) = inbox("boss@example.org")
    assert boss.subject == "Résidence Les Tilleuls: 3 chargers offline"
    assert all(c.identity in boss.body for c in chargers)
    assert "/c/tilleuls/outlets/" in boss.body


def test_a_deactivated_recipient_is_not_sent_anything(community, people, charger):
    refusal(community, charger)
    collect.collect()
    User.objects.filter(pk=people["boss"].pk).update(is_active=False)
    result = sending.send_group(
        community=community, recipient_id=people["boss"].pk, kind=Kind.REFUSED, channel="email"
    )
    assert result == "failed" and mail.outbox == []


def test_staff_see_the_notifications_in_the_admin(client, community, people, charger):
    refusal(community, charger)
    collect.collect()
    staff = builders.make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    page = client.get("/admin/notifications/notification/?state=pending", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200 and page.content.decode().count("A charge was refused") >= 2
