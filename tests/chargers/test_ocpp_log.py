"""The OCPP log on the charger page: indented JSON, filtered by action, paginated with the
filter kept; the last 24 hours downloaded as streamed JSON lines, audited, redacted for a
limited installer like the page."""

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from communities.models import AuditEvent
from tests import builders
from tests.communities.portal_data import make_message

pytestmark = pytest.mark.community_scope

UID = "04A23B11C2"


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


@pytest.fixture
def installer_limited(community):
    company = builders.make_company()
    builders.make_grant(community, company, "limited")
    return builders.make_installer(company)


def page(client, charger, query=""):
    return client.get(f"/c/tilleuls/chargers/{charger.pk}/{query}").content.decode()


def test_payloads_are_indented_json_not_python(charger, manager_client):
    make_message(charger, "StartTransaction", payload={"connectorId": 1, "idTag": UID})
    html = page(manager_client, charger)
    # One key per line, indented, JSON quotes (PostgreSQL's jsonb orders the keys its way).
    assert "\n  &quot;connectorId&quot;: 1" in html
    assert "\n  &quot;idTag&quot;: &quot;04A23B11C2&quot;" in html
    assert "{&#x27;connectorId&#x27;" not in html  # Python's repr


def test_filter_by_action(charger, manager_client):
    make_message(charger, "Heartbeat", payload={"zzqq": "x"})
    make_message(charger, "StatusNotification", payload={"status": "Charging"})
    html = page(manager_client, charger, "?action=StatusNotification")
    assert "Charging" in html and "zzqq" not in html
    assert 'value="StatusNotification"' in html
    html = page(manager_client, charger, "?action=Nothing")
    assert "No message of this action." in html


def test_a_bad_filter_is_refused_on_the_server(charger, manager_client):
    make_message(charger, "Heartbeat", payload={"zzqq": "x"})
    html = page(manager_client, charger, "?action=%3Cscript%3E")
    assert "Enter an OCPP action name" in html and "zzqq" in html  # unfiltered


def test_pages_by_keyset_keep_the_filter(charger, manager_client):
    now = timezone.now()
    for i in range(55):
        make_message(charger, "MeterValues", at=now - timedelta(seconds=i // 2))  # equal times
    make_message(charger, "Heartbeat")
    html = page(manager_client, charger, "?action=MeterValues")
    assert html.count('<pre class="payload">') == 50 and "Newer" not in html
    older = re.search(r'href="(\?action=MeterValues&amp;before=[^"#]+)#log"', html).group(1)
    html = page(manager_client, charger, older.replace("&amp;", "&"))
    assert html.count('<pre class="payload">') == 5 and "Older" not in html
    newer = re.search(r'href="(\?action=MeterValues&amp;after=[^"#]+)#log"', html).group(1)
    html = page(manager_client, charger, newer.replace("&amp;", "&"))
    assert html.count('<pre class="payload">') == 50 and "Older" in html
    # An unreadable cursor shows the newest frames.
    html = page(manager_client, charger, "?before=yesterday_1")
    assert html.count('<pre class="payload">') == 50


def test_a_page_costs_the_same_queries_whatever_the_log(
    charger, manager_client, django_assert_max_num_queries
):
    make_message(charger, "Heartbeat")
    url = f"/c/tilleuls/chargers/{charger.pk}/"
    with django_assert_max_num_queries(20) as few:
        manager_client.get(url)
    now = timezone.now()
    for i in range(120):
        make_message(charger, "MeterValues", at=now - timedelta(seconds=i))
    with django_assert_max_num_queries(len(few.captured_queries)):
        manager_client.get(url + "?action=MeterValues")


def test_limited_installer_reads_redacted_frames(client, charger, installer_limited):
    make_message(charger, "Authorize", payload={"idTag": UID})
    client.force_login(installer_limited)
    html = page(client, charger)
    assert UID not in html and "[redacted]" in html


def download(client, charger):
    response = client.get(f"/c/tilleuls/chargers/{charger.pk}/log/download/")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert 'filename="CP-TEST-01-ocpp-' in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


def test_download_of_the_last_24_hours(charger, manager_client, manager):
    now = timezone.now()
    make_message(charger, "Heartbeat", at=now - timedelta(hours=25))
    make_message(charger, "Authorize", at=now - timedelta(hours=2), payload={"idTag": UID})
    make_message(
        charger, "Authorize", at=now - timedelta(hours=2), message_type=3, direction="out",
        payload={"idTagInfo": {"status": "Accepted"}},
    )  # fmt: skip
    other = builders.make_charger(charger.community)
    make_message(other, "Heartbeat", at=now)
    lines = download(manager_client, charger)
    assert [(x["action"], x["message_type"]) for x in lines] == [("Authorize", 2), ("Authorize", 3)]
    assert lines[0]["payload"] == {"idTag": UID} and lines[1]["direction"] == "out"
    event = AuditEvent.objects.get(action="charger.log_download")
    assert event.actor == manager and event.data["redacted"] is False


def test_limited_installer_downloads_redacted_frames(client, charger, installer_limited):
    make_message(charger, "Authorize", payload={"idTag": UID})
    client.force_login(installer_limited)
    lines = download(client, charger)
    assert lines[0]["payload"] == {"idTag": "[redacted]"}
    assert AuditEvent.objects.get(action="charger.log_download").data["redacted"] is True


def test_drivers_cannot_download(client, charger, individual):
    client.force_login(individual)
    assert client.get(f"/c/tilleuls/chargers/{charger.pk}/log/download/").status_code == 403
